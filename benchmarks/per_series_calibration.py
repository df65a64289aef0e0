"""Per-series interval calibration against the pooled rule, with more backtest windows, on real panels.

``backtest.per_series_calibration`` gives a series with at least ``1 / (1 - L)`` backtest windows of its own (80 %:
5, 95 %: 20) its own shift on top of the pooled conformal rule (``evaluation.conformal``). The shipped
``n_windows: 2`` never reaches that, so this measures what a user who asks for more windows gets. Per dataset and
family: the product's rolling-origin backtest with ``--windows`` windows (step = horizon, ``min_train`` two
seasons as the profile's default), the family fitted on the whole training part, and its intervals served through
the product's own ``Forecaster.calibrate_intervals`` and ``predict`` four ways:

- ``raw``: no calibration;
- ``pooled, 2 windows``: the newest two windows, pooled (what the shipped ``n_windows: 2`` learns from);
- ``pooled, N windows``: every window, pooled (``per_series_calibration: false``);
- ``per series, N windows``: every window, pooled plus each series' own shift (the default with N windows).

Scored on the test part by the matrix's scoring (``selection_replay.score``: mean over series of the coverage and
of M4's MSIS), with the spread (standard deviation) of the per-series 80 % coverage. Gaps in a training part (NN5)
are filled by per-series linear interpolation for this check (the product imputes them in data_processing).

    .venv/bin/python benchmarks/per_series_calibration.py --datasets m4_hourly,nn5_daily \
        --families seasonal_naive,theta --windows 10
    .venv/bin/python benchmarks/per_series_calibration.py --datasets m3_monthly --every 4 \
        --families seasonal_naive,theta --windows 5
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

import matrix  # noqa: E402  (the matrix's loaders and dataset table)
from selection_replay import score  # noqa: E402  (the matrix's scoring)

from ts_kedro.evaluation.backtest import rolling_origin_backtest  # noqa: E402
from ts_kedro.forecasters import get_forecaster_class  # noqa: E402
from ts_kedro.frequency import season_length_for  # noqa: E402

LEVELS = [80, 95]


def _panel(name: str, every: int) -> tuple[pd.DataFrame, pd.DataFrame, str, int]:
    loader, freq, horizon, _ = matrix.DATASETS[name]
    train, test = matrix.subset(*loader(), every, None)
    train = train.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    train["value"] = train.groupby("series_id")["value"].transform(lambda v: v.interpolate(limit_direction="both"))
    return train.dropna(subset=["value"]), test, freq, horizon


def variants(name: str, family: str, windows: int, every: int) -> dict:
    """The four calibrations of one family on one panel, scored on its test part."""
    train, test, freq, horizon = _panel(name, every)
    season = season_length_for(freq)
    cls = get_forecaster_class(family)
    factory = lambda: cls(freq, season)  # noqa: E731
    started = time.perf_counter()
    backtest, _ = rolling_origin_backtest(factory, train, horizon, windows, horizon, LEVELS, min_train=2 * season)
    model = factory().fit(train)
    seconds = time.perf_counter() - started
    newest_two = backtest[backtest["window"] >= backtest["window"].max() - 1]
    served = {"raw": None, "pooled, 2 windows": (newest_two, False),
              f"pooled, {windows} windows": (backtest, False), f"per series, {windows} windows": (backtest, True)}
    rows = {}
    for label, how in served.items():
        model.interval_calibration_ = None
        if how is not None:
            model.calibrate_intervals(how[0], train, "auto", per_series=how[1])
        forecast = model.predict(horizon, LEVELS)
        result = score(forecast, test, train, season, LEVELS)
        joined = test.merge(forecast, on=["series_id", "timestamp"]).dropna(subset=["value"])
        inside = (joined["value"] >= joined["lo-80"]) & (joined["value"] <= joined["hi-80"])
        result["coverage-80_series_sd"] = float(inside.groupby(joined["series_id"]).mean().std())
        if how is not None and how[1]:
            result["series_with_own_shift"] = {str(level): len(shifts) for level, shifts in
                                               (model.interval_calibration_.get("series_shift") or {}).items()}
        rows[label] = result
    return {"dataset": name, "family": family, "windows": windows, "every": every,
            "n_series": int(train["series_id"].nunique()), "backtest_and_fit_s": round(seconds, 1), "variants": rows}


def markdown(result: dict) -> str:
    lines = [f"{result['dataset']} ({result['n_series']} series), {result['family']}, {result['windows']} windows "
             f"({result['backtest_and_fit_s']:.0f} s backtest and fit)",
             "", "| intervals | cov-80 (series sd) | MSIS-80 | cov-95 | MSIS-95 | series with their own shift (80 / 95) |",
             "|---|---|---|---|---|---|"]
    for label, row in result["variants"].items():
        own = row.get("series_with_own_shift")
        own = f"{own.get('80', 0)} / {own.get('95', 0)}" if own is not None else "–"
        lines.append(f"| {label} | {row['coverage-80']:.3f} ({row['coverage-80_series_sd']:.3f}) | {row['msis-80']:.2f} | "
                     f"{row['coverage-95']:.3f} | {row['msis-95']:.2f} | {own} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="m4_hourly,nn5_daily")
    parser.add_argument("--families", default="seasonal_naive,theta")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--every", type=int, default=1, help="every n-th series (the matrix's subset)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "per_series_calibration.jsonl",
                        help="one JSON record per dataset and family is appended here")
    args = parser.parse_args(argv)
    for name in args.datasets.split(","):
        for family in args.families.split(","):
            result = variants(name, family, args.windows, args.every)
            with args.out.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
