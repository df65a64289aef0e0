"""Interval calibration variants on a finished matrix run: the shipped width-scaled CQR against residual conformal.

Reads a ``benchmarks/matrix.py`` working directory (``train.csv``, ``test.csv``, the families' backtests in
``data/07_model_output/candidate_backtests.parquet`` with their raw intervals, and each family's served forecasts
``data/07_model_output/<family>/forecasts.parquet``, calibrated as shipped) and prints per family:

- ``shipped``: the served intervals (``evaluation.conformal``: the excess over the model's own interval in units
  of its width, per step, pooled over series and windows) on the test part: coverage and MSIS at 80 and 95 %;
- ``cv``: the same rule learnt on one backtest window and checked on the other (mean |coverage - L| over levels
  and windows): how well it transfers from one fit to the next;
- ``residual``: split conformal on the point forecast alone (statsforecast's and mlforecast's
  ``ConformalIntervals``): ``mean +- q s``, ``q`` the conformal quantile of ``|actual - mean| / s`` per step
  (``s``: the series' seasonal-naive MAE), its ``cv`` and its test coverage and MSIS;
- ``signed``: as ``residual`` with the lower and upper quantiles of the signed residual apart (keeps a bias).

    .venv/bin/python benchmarks/conformal_variants.py data/benchmarks/m4_hourly_all414 24

The second argument is the MASE/MSIS season (the profile's ``season_length`` of the run).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LEVELS = (80, 95)


def _scales(train: pd.DataFrame, m: int) -> pd.Series:
    def one(values: np.ndarray) -> float:
        lag = m if len(values) > m else 1
        scale = np.mean(np.abs(values[lag:] - values[:-lag])) if len(values) > lag else 0.0
        return scale if scale > 0 else (float(np.mean(np.abs(values))) or 1.0)
    return train.sort_values("timestamp").groupby("series_id")["value"].apply(lambda v: one(v.to_numpy(float)))


def _quantile(scores: np.ndarray, coverage: float) -> float:
    scores = np.sort(scores[np.isfinite(scores)])
    return float(scores[min(math.ceil((len(scores) + 1) * coverage), len(scores)) - 1]) if len(scores) else 0.0


def _per_step(scores: np.ndarray, steps: np.ndarray, coverage: float) -> dict[int, float]:
    return {int(step): _quantile(scores[steps == step], coverage) for step in np.unique(steps)}


def _scores(frame: pd.DataFrame, level: int, kind: str, scale: np.ndarray) -> np.ndarray:
    if kind == "shipped":
        lo, hi = frame[f"lo-{level}"].to_numpy(float), frame[f"hi-{level}"].to_numpy(float)
        return np.maximum(lo - frame["actual"], frame["actual"] - hi) / np.maximum(hi - lo, 1e-3 * scale)
    return np.abs(frame["actual"] - frame["mean"]).to_numpy(float) / scale


def _bounds(frame: pd.DataFrame, level: int, kind: str, q: np.ndarray, scale: np.ndarray):
    if kind == "shipped":
        lo, hi = frame[f"lo-{level}"].to_numpy(float), frame[f"hi-{level}"].to_numpy(float)
        width = np.maximum(hi - lo, 1e-3 * scale)
        return lo - q * width, hi + q * width
    return frame["mean"].to_numpy(float) - q * scale, frame["mean"].to_numpy(float) + q * scale


def _score(actual, lo, hi, scale, level) -> tuple[float, float]:
    alpha = 1 - level / 100
    msis = ((hi - lo) + 2 / alpha * (np.maximum(lo - actual, 0) + np.maximum(actual - hi, 0))) / scale
    return float(np.mean((actual >= lo) & (actual <= hi))), float(np.mean(msis))


def main(run_dir: str, m: int) -> None:
    root = Path(run_dir)
    train = pd.read_csv(root / "train.csv", parse_dates=["timestamp"], dtype={"series_id": str}).dropna(subset=["value"])
    test = pd.read_csv(root / "test.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    scales = _scales(train, m)
    backtests = pd.read_parquet(root / "data" / "07_model_output" / "candidate_backtests.parquet")
    backtests = backtests.assign(series_id=backtests["series_id"].astype(str)).sort_values(
        ["model", "series_id", "window", "timestamp"])
    backtests["step"] = backtests.groupby(["model", "series_id", "window"]).cumcount()
    for family in sorted(set(backtests["model"]) - {"ensemble"}):
        path = root / "data" / "07_model_output" / family / "forecasts.parquet"
        if not path.exists():
            continue
        bt = backtests[backtests["model"] == family]
        bt_scale = bt["series_id"].map(scales).to_numpy(float)
        served = pd.read_parquet(path).assign(series_id=lambda f: f["series_id"].astype(str)).sort_values(
            ["series_id", "timestamp"])
        served["step"] = served.groupby("series_id").cumcount()
        joined = served.merge(test.rename(columns={"value": "actual"}), on=["series_id", "timestamp"])
        scale = joined["series_id"].map(scales).to_numpy(float)
        parts = []
        for kind in ("shipped", "residual"):
            errors = []
            for level in LEVELS:
                for window in bt["window"].unique() if bt["window"].nunique() > 1 else []:
                    learn, check = bt["window"] != window, bt["window"] == window
                    q = _per_step(_scores(bt[learn], level, kind, bt_scale[learn]), bt["step"][learn].to_numpy(),
                                  level / 100)
                    lo, hi = _bounds(bt[check], level, kind, bt["step"][check].map(q).to_numpy(float), bt_scale[check])
                    errors.append(abs(_score(bt["actual"][check].to_numpy(float), lo, hi, bt_scale[check], level)[0]
                                      - level / 100))
            cells = [f"cv {np.mean(errors):.4f}" if errors else "cv -"]
            for level in LEVELS:
                if kind == "shipped":
                    lo, hi = joined[f"lo-{level}"].to_numpy(float), joined[f"hi-{level}"].to_numpy(float)
                else:
                    q = _per_step(_scores(bt, level, kind, bt_scale), bt["step"].to_numpy(), level / 100)
                    lo, hi = _bounds(joined, level, kind, joined["step"].map(q).to_numpy(float), scale)
                coverage, msis = _score(joined["actual"].to_numpy(float), lo, hi, scale, level)
                cells.append(f"{level}: {coverage:.3f} / {msis:.2f}")
            parts.append(f"{kind}: " + ", ".join(cells))
        residual = (bt["actual"] - bt["mean"]).to_numpy(float) / bt_scale
        cells = []
        for level in LEVELS:
            tail = (1 - level / 100) / 2
            up = _per_step(residual, bt["step"].to_numpy(), 1 - tail)
            down = {k: -v for k, v in _per_step(-residual, bt["step"].to_numpy(), 1 - tail).items()}
            lo = joined["mean"].to_numpy(float) + joined["step"].map(down).to_numpy(float) * scale
            hi = joined["mean"].to_numpy(float) + joined["step"].map(up).to_numpy(float) * scale
            coverage, msis = _score(joined["actual"].to_numpy(float), lo, hi, scale, level)
            cells.append(f"{level}: {coverage:.3f} / {msis:.2f}")
        parts.append("signed: " + ", ".join(cells))
        print(f"{family:15s} " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
