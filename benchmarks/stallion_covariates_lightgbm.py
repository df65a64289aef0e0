"""Stallion: the lightgbm family with and without covariates (known in advance vs observed), MAE on the last months.

Data: ``../shared/data/stallion_covariates/stallion.parquet`` (350 agency x SKU series, monthly 2013-01 ..
2017-12). The last ``--horizon`` months are the test part; the family is fitted on the months before them.
Known in advance (their test-month values are given as ``future_covariates``, as a user's plan would be): the
regular and actual prices, the discount in percent and the special-day dummies. Observed (used at the forecast
origin only): industry volume, soda volume, average maximum temperature. A third variant keeps only the scale-free known covariates (discount share, dummies): the
covariates enter the trees unscaled, and a price level is mostly a series' identity. Scores: mean over series of MAE, and
the overall MAE / mean volume (WAPE-like), ``ts_kedro.evaluation.metrics.mae``.

    .venv/bin/python benchmarks/stallion_covariates_lightgbm.py              # horizon 6
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ts_kedro.evaluation.metrics import mae
from ts_kedro.forecasters import build_forecaster
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import profile_for_panel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stallion_covariates" / "stallion.parquet"
KNOWN = ["price_regular", "price_actual", "discount_in_percent", "easter_day", "good_friday", "new_year",
         "christmas", "labor_day", "independence_day", "revolution_day_memorial", "regional_games",
         "fifa_u_17_world_cup", "football_gold_cup", "beer_capital", "music_fest"]
OBSERVED = ["industry_volume", "soda_volume", "avg_max_temp"]


def load() -> pd.DataFrame:
    raw = pd.read_parquet(DATA)
    panel = raw.assign(**{SERIES_ID: raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                          TIMESTAMP: pd.to_datetime(raw["date"]), VALUE: raw["volume"].astype(float)})
    panel = panel[[SERIES_ID, TIMESTAMP, VALUE, *KNOWN, *OBSERVED]]
    panel[KNOWN + OBSERVED] = panel[KNOWN + OBSERVED].astype(float)
    return panel.sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=6)
    args = parser.parse_args()
    panel = load()
    rank = panel.groupby(SERIES_ID).cumcount(ascending=False)
    train, test = panel[rank >= args.horizon].reset_index(drop=True), panel[rank < args.horizon].reset_index(drop=True)
    profile = profile_for_panel(train, {"freq": "MS", "horizon": args.horizon, "levels": [80, 95]})
    scale_free = [c for c in KNOWN if not c.startswith("price_")]  # discount share and special-day dummies
    variants = {"no covariates": {}, "known in advance": {"known_covariates": KNOWN},
                "known, scale-free only": {"known_covariates": scale_free},
                "known + observed": {"known_covariates": KNOWN, "observed_covariates": OBSERVED}}
    rows = []
    for name, hyper in variants.items():
        started = time.perf_counter()
        model = build_forecaster({"class": "lightgbm", "hyperparameters": hyper}, freq="MS",
                                 season_length=profile.season_length, profile_defaults=profile.forecaster_defaults())
        model.fit(train)
        if hyper.get("known_covariates"):
            model.set_future_covariates(test[[SERIES_ID, TIMESTAMP, *hyper["known_covariates"]]])
        forecast = model.predict(args.horizon, [80])
        merged = test.merge(forecast, on=[SERIES_ID, TIMESTAMP], validate="one_to_one")
        per_series = merged.groupby(SERIES_ID).apply(lambda g: mae(g[VALUE], g["mean"]), include_groups=False)
        rows.append({"variant": name, "mean MAE": per_series.mean(),
                     "MAE / mean volume": float(np.abs(merged[VALUE] - merged["mean"]).sum() / merged[VALUE].sum()),
                     "served_by lightgbm": sum(v == "lightgbm" for v in model.served_by_.values()),
                     "seconds": time.perf_counter() - started})
    print(f"Stallion: {panel[SERIES_ID].nunique()} series, test = last {args.horizon} months")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
