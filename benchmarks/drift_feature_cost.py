"""What the short difference costs the Day-N data-drift step: windows, calibration and Evidently's tests on real
M4 Hourly series, timed with the shipped monitoring parameters and without the short-difference column.

    .venv/bin/python benchmarks/drift_feature_cost.py [--series 12]

Prints the seconds of ``build_drift_windows`` -> ``calibrate_drift_thresholds`` -> ``detect_data_drift`` (best
of three) and the number of monitored columns for each design.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from ts_kedro.pipelines.monitoring import calibration, windows
from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.windows import build_drift_windows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import matrix  # noqa: E402  (M4 Hourly's frequency and horizon, as the matrix runs it)

_, FREQ, HORIZON, _ = matrix.DATASETS["m4_hourly"]
PANEL = {"freq": FREQ, "horizon": HORIZON, "levels": matrix.LEVELS}


def _timed(history: pd.DataFrame, params: dict) -> tuple[float, int]:
    best, columns = float("inf"), 0
    for _ in range(3):
        started = time.perf_counter()
        reference, current = build_drift_windows(history, params, PANEL)
        detect_data_drift(reference, current, calibrate_drift_thresholds(history, params, PANEL), params)
        best, columns = min(best, time.perf_counter() - started), reference.shape[1]
    return best, columns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=12)
    args = parser.parse_args(argv)
    shipped = yaml.safe_load((ROOT / "conf" / "base" / "parameters_monitoring.yml").read_text())["monitoring"]
    train = pd.read_csv(matrix.SHARED / "m4_hourly" / "Hourly-train-long.csv", parse_dates=["timestamp"])
    every = sorted(train["series_id"].unique())
    ids = every[::max(1, len(every) // args.series)][:args.series]
    history = (train[train["series_id"].isin(ids)].assign(is_imputed=False, is_anomaly=False)
               .sort_values(["series_id", "timestamp"]).reset_index(drop=True))
    seconds, columns = _timed(history, shipped)
    print(f"shipped (seasonal_diff or short_diff decides): {seconds:.2f} s, {columns} columns")
    before = copy.deepcopy(shipped)
    before["data_drift"]["series_feature"] = "seasonal_diff"
    real = windows.series_features

    def without_short(panel, profile):
        for series_id, features in real(panel, profile):
            yield series_id, features.drop(columns=[windows.SHORT_DIFF], errors="ignore")

    windows.series_features = calibration.series_features = without_short
    try:
        seconds, columns = _timed(history, before)
    finally:
        windows.series_features = calibration.series_features = real
    print(f"before (seasonal_diff decides, no short_diff column): {seconds:.2f} s, {columns} columns")


if __name__ == "__main__":
    main()
