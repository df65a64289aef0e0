"""Stallion: ARIMA or Prophet with the 15 covariates known in advance, with and without the bound on their joint effect.

Ten real series (the two whose backtest exploded in ``stallion_selected.py``'s run, and every 35th of the sorted
ids): fitted on the months up to 2016-06 (the backtest window that exploded), forecast over the next 6 months with
the recorded covariate values as the plan, and scored by mean absolute error per series, for
``covariate_effect_margin`` null (unbounded linear extrapolation, the behaviour before the bound) and 0 (the
shipped default), and without covariates for reference.

    nice -n 10 .venv/bin/python benchmarks/stallion_covariate_bound.py [--family prophet]
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stallion_covariates_families import KNOWN, load  # noqa: E402

from ts_kedro.forecasters import get_forecaster_class  # noqa: E402
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE  # noqa: E402

EXPLODED = ["Agency_11/SKU_03", "Agency_44/SKU_02"]
CUTOFF = "2016-06-01"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="arima", choices=["arima", "prophet"])
    family = parser.parse_args(argv).family
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    panel = load(None)
    ids = EXPLODED + sorted(panel[SERIES_ID].unique())[::35][:8]
    panel = panel[panel[SERIES_ID].isin(ids)]
    train = panel[panel[TIMESTAMP] <= CUTOFF]
    test = panel[(panel[TIMESTAMP] > CUTOFF) & (panel[TIMESTAMP] <= pd.Timestamp(CUTOFF) + pd.DateOffset(months=6))]
    columns = {}
    for label, known, margin in [("no covariates", [], None), ("15 covariates, unbounded", KNOWN, None),
                                 ("15 covariates, bounded (margin 0)", KNOWN, 0.0)]:
        model = get_forecaster_class(family)(freq="MS", season_length=12, known_covariates=known,
                                             covariate_effect_margin=margin).fit(train)
        if known:
            model.set_future_covariates(test[[SERIES_ID, TIMESTAMP, *known]])
        forecast = model.predict(6, [80]).merge(test[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
        columns[label] = (forecast[VALUE] - forecast["mean"]).abs().groupby(forecast[SERIES_ID]).mean()
    table = pd.DataFrame(columns)
    print(f"{family}: mean absolute error per series, fit to {CUTOFF}, 6 months ahead")
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
