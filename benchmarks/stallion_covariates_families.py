"""Stallion: ARIMA and Prophet with and without the covariates known in advance, MAE on the last months.

Data: ``../shared/data/stallion_covariates/stallion.parquet`` (350 agency x SKU series, monthly 2013-01 ..
2017-12). The last ``--horizon`` months are the test part; each family is fitted on the months before them by the
training pipeline's own ``fit_model`` node with the family's block of ``conf/base/parameters_training.yml`` (one
engine: what ``kedro run`` ships, without the backtest and its interval calibration, which do not move the point
forecast). The covariates are declared as ``data_processing.source.covariates`` declares them and the test months'
values of the known ones are the plan, checked by data_processing's ``select_future_covariates`` (as a user's
``future_covariates`` file would be). The observed ones (industry and soda volume, temperature) are in the panel in
every variant; ARIMA and Prophet ignore them. Variants: no covariate declared; the promotion covariates (actual
price and discount in percent); all fifteen known in advance (regular and actual price, discount, the twelve
special-day dummies). Scores as in ``stallion_covariates_lightgbm.py``: mean over series of MAE, and total absolute
error / total volume.

    nice -n 10 .venv/bin/python benchmarks/stallion_covariates_families.py                   # prophet and arima
    nice -n 10 .venv/bin/python benchmarks/stallion_covariates_families.py --families prophet --series 50
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ts_kedro.config import project_parameters
from ts_kedro.evaluation.metrics import mae
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.pipelines.data_processing.nodes import select_future_covariates
from ts_kedro.pipelines.training.nodes import fit_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stallion_covariates" / "stallion.parquet"
PROMOTION = ["price_actual", "discount_in_percent"]
KNOWN = ["price_regular", *PROMOTION, "easter_day", "good_friday", "new_year", "christmas", "labor_day",
         "independence_day", "revolution_day_memorial", "regional_games", "fifa_u_17_world_cup", "football_gold_cup",
         "beer_capital", "music_fest"]
OBSERVED = ["industry_volume", "soda_volume", "avg_max_temp"]
VARIANTS = {"no covariates": [], "promotion (actual price, discount)": PROMOTION, "all known in advance": KNOWN}


def load(n_series: int | None) -> pd.DataFrame:
    raw = pd.read_parquet(DATA)
    panel = raw.assign(**{SERIES_ID: raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                          TIMESTAMP: pd.to_datetime(raw["date"]).astype("datetime64[ns]"),
                          VALUE: raw["volume"].astype(float)})
    panel = panel[[SERIES_ID, TIMESTAMP, VALUE, *KNOWN, *OBSERVED]].astype({c: float for c in KNOWN + OBSERVED})
    if n_series:
        panel = panel[panel[SERIES_ID].isin(sorted(panel[SERIES_ID].unique())[:n_series])]
    return panel.sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--families", nargs="+", default=["prophet", "arima"])
    parser.add_argument("--series", type=int, default=None, help="first N series only (default: all 350)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    panel = load(args.series)
    rank = panel.groupby(SERIES_ID).cumcount(ascending=False)
    train, test = panel[rank >= args.horizon].reset_index(drop=True), panel[rank < args.horizon].reset_index(drop=True)
    panel_params = {"freq": "MS", "horizon": args.horizon, "levels": [80]}
    parameters = project_parameters()
    rows = []
    for family in args.families:
        spec = parameters[family]["model"]
        for variant, known in VARIANTS.items():
            declared = {"source": {"covariates": {**{c: "known_in_advance" for c in known},
                                                  **{c: "observed" for c in OBSERVED}}}}
            plan = select_future_covariates(test[[SERIES_ID, TIMESTAMP, *known]], train, declared, panel_params)
            started = time.perf_counter()
            model, forecast, stats = fit_model(train, spec, panel_params, {"calibrate_intervals": False},
                                               future_covariates=plan, data_processing_params=declared)
            merged = test.merge(forecast, on=[SERIES_ID, TIMESTAMP], validate="one_to_one")
            per_series = merged.groupby(SERIES_ID).apply(lambda g: mae(g[VALUE], g["mean"]), include_groups=False)
            used = getattr(model, "covariates_used_", {})
            rows.append({"family": family, "variant": variant, "mean MAE": per_series.mean(),
                         "MAE / mean volume": float(np.abs(merged[VALUE] - merged["mean"]).sum()
                                                    / merged[VALUE].sum()),
                         "served by the family": stats["served_by"].get(family, 0),
                         "series with covariates": sum(bool(v) for v in used.values()),
                         "seconds": time.perf_counter() - started})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    print(f"\nStallion: {panel[SERIES_ID].nunique()} series, test = last {args.horizon} months")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
