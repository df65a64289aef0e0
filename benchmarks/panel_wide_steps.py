"""Time the per-series steps that were rewritten panel-wide, on one SYNTHETIC panel (scale.py's generator:
resampled real M3 yearly series with a level factor and noise).

Steps: data processing's frequency inference, regular grid, imputation, anomaly flags and quality report;
seasonal naive's update (one new point per series) and predict; ingestion's continuity check of that new point;
and, on a smaller panel since the old code was quadratic there, monitoring's performance drift. Run it on the
current code, and on an older commit for the "before" figures:

    .venv/bin/python benchmarks/panel_wide_steps.py --series 20000
    mkdir -p benchmarks/_scale_work && git archive --prefix=before/ 34a4fd1 src conf | tar -x -C benchmarks/_scale_work
    PYTHONPATH=benchmarks/_scale_work/before/src .venv/bin/python benchmarks/panel_wide_steps.py --series 20000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import split_new_steps, synthetic_panel  # noqa: E402

import ts_kedro  # noqa: E402
from ts_kedro.config import enabled_families, project_parameters  # noqa: E402
from ts_kedro.datasets import CSVChunkSourceDataset  # noqa: E402
from ts_kedro.forecasters import get_forecaster_class  # noqa: E402
from ts_kedro.pipelines.data_processing import nodes as dp  # noqa: E402
from ts_kedro.pipelines.ingestion.nodes import _settings, check_continuity  # noqa: E402
from ts_kedro.pipelines.monitoring.performance import measure_performance_drift  # noqa: E402


def timed(label: str, function, *args):
    started = time.perf_counter()
    result = function(*args)
    print(f"{label:28s} {time.perf_counter() - started:8.2f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20000)
    parser.add_argument("--drift-series", type=int, default=5000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"ts_kedro from {Path(ts_kedro.__file__).parent}; {args.series} series (synthetic, from M3 yearly)")
    params = project_parameters()
    panel_params = {**params["panel"], "freq": "YS", "horizon": 6}
    processing = params["data_processing"]
    full = synthetic_panel("m3_yearly", args.series)
    history, new = split_new_steps(full, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "panel.csv"
        history.to_csv(path, index=False)
        validated, summary = dp.validate_schema(CSVChunkSourceDataset(filepath=str(path)).load(), processing)
    frequency = timed("infer_frequency", dp.infer_frequency, validated, panel_params)
    screened, screening = dp.screen_series(validated, frequency, panel_params, processing)
    regular = timed("regularise_index", dp.regularise_index, screened, panel_params)
    imputed = timed("impute_missing", dp.impute_missing, regular, panel_params, processing)
    flagged = timed("flag_anomalies", dp.flag_anomalies, imputed, panel_params, processing)
    families = {family: params[family]["model"] for family in enabled_families()}
    timed("build_quality_report", lambda: dp.build_quality_report(
        validated, frequency, screening, flagged, summary, panel_params, processing, params["backtest"], **families))
    primary = dp.conform_primary_panel(flagged)
    model = get_forecaster_class("seasonal_naive")(freq="YS", season_length=1).fit(primary)
    ordered = new.sort_values(["series_id", "timestamp"], ignore_index=True)
    timed("check_continuity", check_continuity, ordered, primary[["series_id", "timestamp", "value"]], "YS",
          _settings({}, panel_params))
    timed("seasonal_naive update", model.update, ordered)
    timed("seasonal_naive predict", model.predict, 6, [80, 95])

    drift_panel = synthetic_panel("m3_monthly", args.drift_series).sort_values(["series_id", "timestamp"],
                                                                               ignore_index=True)
    drift_panel["is_imputed"] = False
    saved = drift_panel.groupby("series_id").tail(6)[["series_id", "timestamp"]].copy()
    saved["mean"] = drift_panel.loc[saved.index, "value"].to_numpy() * (1 + np.random.default_rng(0).normal(0, .1, len(saved)))
    saved = saved.assign(**{"lo-80": saved["mean"] * 0.9, "hi-80": saved["mean"] * 1.1, "champion_metric": "mase",
                            "champion_backtest_score": 1.0})
    timed(f"performance drift ({args.drift_series})", measure_performance_drift, saved, drift_panel,
          {"performance_drift": {"min_points_per_series": 1}}, {"freq": "MS", "horizon": 18})


if __name__ == "__main__":
    main()
