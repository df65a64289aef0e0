"""Coverage of every family's and the selected model's intervals on a panel's test part, from a finished run.

Reads a Day-0 run folder written by ``benchmarks/matrix.py`` (``data/benchmarks/<dataset>[_<tag>]``: its
``test.csv``, the families' ``07_model_output/<family>/forecasts.parquet``, ``candidate_backtests``, the pickled
``panel_model`` and ``model_selection.json``) and prints, per family and for the selected model, the 80 % and 95 %
coverage and MSIS on the test part (``selection_replay.score``, as the matrix scores), and the raw
(uncalibrated) coverage on the backtest from the run's own ``candidate_scores``. Nothing is refitted.

``--rebuild`` also rebuilds the panel model with the current ``build_panel_model`` from the run's own fitted
families and candidate backtests, so a change to how the served model forms its intervals (the ensemble's own
conformal adjustment) is measured on the same forecasts it would have served:

    .venv/bin/python benchmarks/interval_coverage.py data/benchmarks/m3_monthly --rebuild

``--raw`` also scores every family's intervals *before* calibration on the test part: each fitted family
(``06_models/<family>/model.pkl``) predicts again with its conformal adjustment removed
(``interval_calibration_`` cleared, on the family and on its fallback chain), so the same fitted parameters
give the raw and the calibrated intervals and the difference is the calibration's alone.

``--per-window arima,ets`` prints each named family's raw 80 % coverage, absolute error and width per backtest window
and for the served fit on the test part (is one window harder than the others?).

``--recalibrate auto,cqr`` calibrates every fitted family again with the current ``Forecaster.calibrate_intervals``
on its own backtest rows of the run (raw intervals) and the run's primary panel, once per
``backtest.calibration_method`` named, scores each family so calibrated and the panel model rebuilt from them (the
run's selection, the ensemble's own adjustment included), and says which rule ``auto`` kept per family:

    .venv/bin/python benchmarks/interval_coverage.py data/benchmarks/m4_hourly_all414 --recalibrate cqr,auto
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from selection_replay import score  # noqa: E402  (the matrix's scoring: coverage and M4's MSIS per series)

LEVELS = [80, 95]


def _latest(path: Path) -> Path:
    """A versioned Kedro dataset's newest file (or the path itself when not versioned)."""
    if path.is_dir():
        return sorted(p / path.name for p in path.iterdir() if (p / path.name).exists())[-1]
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a matrix.py run folder (data/benchmarks/<dataset>...)")
    parser.add_argument("--rebuild", action="store_true", help="also serve from a panel model rebuilt by the current code")
    parser.add_argument("--raw", action="store_true", help="also score every family's uncalibrated intervals")
    parser.add_argument("--per-window", default="", help="families (comma-separated) whose raw 80 %% coverage, "
                        "absolute error and width are printed per backtest window and for the served fit's test part")
    parser.add_argument("--recalibrate", default="", help="calibration methods to recalibrate every family with "
                                                         "(comma-separated: auto, cqr, cqr_fit_level)")
    parser.add_argument("--keep-anomalies", action="store_true", help="with --recalibrate: keep the backtest points "
                        "whose actual is flagged (backtest.calibration_excludes_anomalies: false)")
    args = parser.parse_args()
    data = args.run_dir / "data"
    test = pd.read_csv(args.run_dir / "test.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    history = pd.read_parquet(data / "03_primary" / "primary_panel.parquet")
    profile = json.loads((data / "08_reporting" / "frequency_profile.json").read_text())
    season = int(profile["season_length"])
    rows = {}
    backtests = pd.read_parquet(_latest(data / "07_model_output" / "candidate_backtests.parquet"))
    for family_dir in sorted(p for p in (data / "07_model_output").iterdir() if (p / "forecasts.parquet").exists()):
        forecast = pd.read_parquet(_latest(family_dir / "forecasts.parquet"))
        rows[family_dir.name] = score(forecast, test, history, season, LEVELS)
    # the run's own backtest scores (model_selection's score_candidates: per series, raw intervals)
    candidate_scores = pd.read_parquet(data / "08_reporting" / "candidate_scores.parquet")
    for model, frame in candidate_scores.groupby("model"):
        rows.setdefault(model, {}).update(
            {f"backtest_raw_coverage-{lv}": float(frame[f"coverage-{lv}"].mean()) for lv in LEVELS})
    if args.raw:
        for model_dir in sorted(p for p in (data / "06_models").iterdir() if (p / "model.pkl").exists()):
            model = _uncalibrated(pickle.loads(_latest(model_dir / "model.pkl").read_bytes()))
            raw = score(model.predict(int(profile["horizon"]), LEVELS), test, history, season, LEVELS)
            rows.setdefault(model_dir.name, {}).update({f"raw_{key}": raw[key] for key in raw
                                                        if key.startswith(("coverage-", "msis-"))})
    panel_model = pickle.loads(_latest(data / "06_models" / "panel_model.pkl").read_bytes())
    rows["selected (as served by the run)"] = score(panel_model.predict(), test, history, season, LEVELS)
    if args.rebuild:
        from ts_kedro.pipelines.model_selection.nodes import build_panel_model

        selection = json.loads((data / "08_reporting" / "model_selection.json").read_text())
        params = {"levels": list(panel_model.levels), "horizon": int(panel_model.max_horizon)}
        rebuilt = build_panel_model(selection, params, history, backtests, {"calibrate_intervals": True},
                                    **panel_model.family_models)
        rows["selected (rebuilt by the current code)"] = score(rebuilt.predict(), test, history, season, LEVELS)
    if args.recalibrate:
        rows.update(_recalibrated(args.recalibrate.split(","), data, backtests, history, test, season,
                                  panel_model, int(profile["horizon"]), exclude_anomalies=not args.keep_anomalies))
    if args.per_window:
        print(per_window(args.per_window.split(","), data, backtests, history, test, season, int(profile["horizon"])))
    print(f"{args.run_dir.name}: overall {panel_model.metadata.get('overall_model')}, members "
          f"{panel_model.ensemble_members}, season length {season}")
    header = "| model | coverage-80 | coverage-95 | MSIS-80 | MSIS-95 | backtest raw coverage-80 / 95 |"
    if args.raw:
        header += " test raw coverage-80 / 95 | test raw MSIS-80 / 95 |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, row in rows.items():
        test_part = (f"{row['coverage-80']:.3f} | {row['coverage-95']:.3f} | {row['msis-80']:.2f} | {row['msis-95']:.2f}"
                     if "coverage-80" in row else "– | – | – | –")
        raw = (f"{row['backtest_raw_coverage-80']:.3f} / {row['backtest_raw_coverage-95']:.3f}"
               if "backtest_raw_coverage-80" in row else "–")
        line = f"| {name} | {test_part} | {raw} |"
        if args.raw:
            line += (f" {row['raw_coverage-80']:.3f} / {row['raw_coverage-95']:.3f} | {row['raw_msis-80']:.2f} / "
                     f"{row['raw_msis-95']:.2f} |" if "raw_coverage-80" in row else " – | – |")
        print(line)


def _recalibrated(methods: list[str], data: Path, backtests: pd.DataFrame, history: pd.DataFrame, test: pd.DataFrame,
                  season: int, panel_model, horizon: int, exclude_anomalies: bool = True) -> dict[str, dict]:
    """Every family calibrated again on its own backtest rows with each method, and the panel model rebuilt;
    ``exclude_anomalies``: ``backtest.calibration_excludes_anomalies`` for both."""
    from ts_kedro.pipelines.model_selection.nodes import build_panel_model

    rows = {}
    selection = json.loads((data / "08_reporting" / "model_selection.json").read_text())
    for method in methods:
        families = {}
        for model_dir in sorted(p for p in (data / "06_models").iterdir() if (p / "model.pkl").exists()):
            family = model_dir.name
            model = _uncalibrated(pickle.loads(_latest(model_dir / "model.pkl").read_bytes()))
            model.calibrate_intervals(backtests[backtests["model"] == family], history, method=method,
                                      exclude_anomalies=exclude_anomalies)
            row = score(model.predict(horizon, LEVELS), test, history, season, LEVELS)
            calibration = model.interval_calibration_
            held = calibration.get("held_out_msis")
            kept = calibration["method"] + (f" (newest window MSIS {held['cqr']:.2f} vs {held['cqr_fit_level']:.2f})"
                                            if held else "")
            rows[f"{family}, {method}: {kept}"] = row
            families[family] = model
        params = {"levels": list(panel_model.levels), "horizon": int(panel_model.max_horizon)}
        rebuilt = build_panel_model(selection, params, history, backtests,
                                    {"calibrate_intervals": True, "calibration_excludes_anomalies": exclude_anomalies},
                                    **{name: families[name] for name in panel_model.family_models})
        rows[f"selected, {method}"] = score(rebuilt.predict(), test, history, season, LEVELS)
    return rows


def per_window(families: list[str], data: Path, backtests: pd.DataFrame, history: pd.DataFrame, test: pd.DataFrame,
               season: int, horizon: int) -> str:
    """Each family's raw (uncalibrated) 80 % interval per backtest window and on the test part (the served fit):
    coverage, mean absolute error and mean width, both in the series' seasonal-naive scale (``evaluation.conformal``'s
    ``series_scales`` of the training part). Says whether a window was harder than the others, or the served fit's
    intervals unlike the backtest fits'."""
    from ts_kedro.evaluation.conformal import series_scales

    scales = series_scales(history, season)
    lines = ["| family | part | raw coverage-80 | mean absolute error / scale | mean 80 % width / scale |",
             "|---|---|---|---|---|"]
    for family in families:
        model = _uncalibrated(pickle.loads(_latest(data / "06_models" / family / "model.pkl").read_bytes()))
        served = model.predict(horizon, LEVELS).merge(test, on=["series_id", "timestamp"])
        parts = [(f"backtest window {int(w)}", rows, "actual")
                 for w, rows in backtests[backtests["model"] == family].groupby("window")]
        for name, rows, actual in [*parts, ("test part (served fit)", served, "value")]:
            rows = rows.dropna(subset=[actual])
            scale = rows["series_id"].astype(str).map(scales).to_numpy(float)
            inside = (rows[actual] >= rows["lo-80"]) & (rows[actual] <= rows["hi-80"])
            error = (rows[actual] - rows["mean"]).abs().to_numpy(float) / scale
            width = (rows["hi-80"] - rows["lo-80"]).to_numpy(float) / scale
            lines.append(f"| {family} | {name} | {inside.mean():.3f} | {error.mean():.3f} | {width.mean():.2f} |")
    return "\n".join(lines)


def _uncalibrated(model):
    """The fitted family with its conformal interval adjustment removed (itself and its fallback chain)."""
    node = model
    while node is not None:
        if hasattr(node, "interval_calibration_"):
            node.interval_calibration_ = None
        node = getattr(node, "fallback_model_", None)
    return model


if __name__ == "__main__":
    sys.exit(main())
