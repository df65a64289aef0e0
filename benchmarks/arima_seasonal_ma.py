"""The seasonal MA's own effect on the ARIMA family, on finished matrix runs (``benchmarks/matrix.py``).

For each run folder: the run's fitted ARIMA family (its hyperparameters and anomaly treatment, from
``06_models/arima``) is refitted on the run's own primary panel twice, with ``seasonal_ma`` off and on (same
code, same data, nothing else changed), forecasts the horizon, and is scored on the run's test part with MASE
(in-sample seasonal naive scale, as the matrix scores). Prints one line per run and setting: test MASE, the
mean per-series fit CPU seconds (``_FittedSeries.fit_seconds``), and how many series took the seasonal
difference and how many kept a seasonal MA.

    .venv/bin/python benchmarks/arima_seasonal_ma.py data/benchmarks/m4_hourly data/benchmarks/etth1
"""
from __future__ import annotations

import argparse
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ts_kedro.forecasters.arima import ArimaForecaster


def score(run: Path, seasonal_ma: bool) -> dict:
    fitted_path = sorted((run / "data" / "06_models" / "arima" / "model.pkl").glob("*/model.pkl"))[-1]
    with open(fitted_path, "rb") as handle:
        fitted = pickle.load(handle)
    panel = pd.read_parquet(run / "data" / "03_primary" / "primary_panel.parquet")
    test = pd.read_csv(run / "test.csv", parse_dates=["timestamp"])
    profile = json.loads((run / "data" / "08_reporting" / "frequency_profile.json").read_text())
    horizon, m = int(profile["horizon"]), int(profile["season_length"])
    hyperparameters = {k: v for k, v in fitted.hyperparameters.items() if k != "known_covariates"}
    hyperparameters["seasonal_ma"] = seasonal_ma
    model = ArimaForecaster(freq=fitted.freq, season_length=fitted.season_length, **hyperparameters)
    model.anomaly_treatment = fitted.anomaly_treatment  # as build_forecaster set it from the run's model block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(panel)
        forecast = model.predict(horizon, [80, 95])
    merged = forecast.merge(test, on=["series_id", "timestamp"])
    mases = []
    for series_id, rows in merged.groupby("series_id"):
        history = panel.loc[panel["series_id"] == series_id, "value"].to_numpy(float)
        scale = np.mean(np.abs(history[m:] - history[:-m]))
        observed = rows["value"].notna()
        mases.append(np.mean(np.abs(rows.loc[observed, "value"] - rows.loc[observed, "mean"])) / scale)
    labels = [state.label for state in model.fitted_.values()]
    return {"mase": round(float(np.mean(mases)), 4),
            "cpu_s_per_series": round(float(np.mean([s.fit_seconds for s in model.fitted_.values()])), 3),
            "seasonal_difference": sum(label.startswith("seasonal_difference") for label in labels),
            "with_seasonal_ma": sum("(0,0,1)" in label for label in labels), "n_series": len(labels)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="matrix.py run folders (data/benchmarks/<dataset>...)")
    args = parser.parse_args(argv)
    for run in args.runs:
        for seasonal_ma in (False, True):
            print(json.dumps({"run": run.name, "seasonal_ma": seasonal_ma, **score(run, seasonal_ma)}), flush=True)


if __name__ == "__main__":
    main()
