"""Day 0 on a user's own data of any frequency: `kedro run` given only the columns, panel.freq and panel.horizon.

Small real samples (tests/data/samples/README.md) of yearly, quarterly, monthly, daily and intermittent monthly
panels, each with its shortest real series. Every run must complete with the shipped defaults, forecast every
kept series for the whole horizon and report which families could take each series. The quarterly run trains
every shipped family; the others the local families (seasonal naive, ARIMA, ETS, Theta, intermittent) to keep
the suite inside its budget (the hourly default sample runs all families in test_day0_run.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from .project_copy import make_project_copy

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
LOCAL_FAMILIES = "seasonal_naive,arima,ets,theta,intermittent"
CASES = {  # sample -> (panel.freq, panel.horizon, families: None = the shipped list)
    "m3_quarterly": ("QS", 8, None),
    # time column of step numbers (1, 2, ...), no season: read with timestamp_format steps (see STEPS_PARAMS)
    "m3_other_steps": ("D", 8, LOCAL_FAMILIES),
    "m3_yearly": ("YS", 6, LOCAL_FAMILIES),
    "m3_monthly": ("MS", 18, LOCAL_FAMILIES),
    "nn5_daily": ("D", 56, LOCAL_FAMILIES),
    "carparts_monthly": ("MS", 12, LOCAL_FAMILIES),
}


# what the steps sample needs besides freq and horizon: its time column read as steps, and no season
STEPS_PARAMS = {"data_processing": {"source": {"timestamp_format": "steps"}}, "panel": {"seasonal_periods": 1}}


def _run(root: Path, raw: Path, freq: str, horizon: int, families: str | None, extra: dict | None = None,
         pipeline: str | None = None) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
            patch.delenv(key)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.setenv("TS_KEDRO_CONF_SOURCE", str(root / "conf"))
        if families:
            patch.setenv("TS_KEDRO_FAMILIES", families)
        else:
            patch.delenv("TS_KEDRO_FAMILIES", raising=False)
        patch.chdir(root)
        bootstrap_project(root)
        params = {"raw_panel_path": str(raw), "panel": {"freq": freq, "horizon": horizon}}
        for key, values in (extra or {}).items():
            params[key] = {**params.get(key, {}), **values}
        with KedroSession.create(project_path=root, runtime_params=params) as session:
            session.run(pipeline_name=pipeline)


@pytest.mark.parametrize("sample", list(CASES))
def test_day0_completes_on_every_frequency(sample, tmp_path):
    freq, horizon, families = CASES[sample]
    root = make_project_copy(tmp_path / "project", n_series=1)
    raw = SAMPLES / f"{sample}.csv"
    steps = sample.endswith("_steps")
    _run(root, raw, freq, horizon, families, STEPS_PARAMS if steps else None)

    data = root / "data"
    profile = json.loads((data / "08_reporting" / "frequency_profile.json").read_text())
    assert profile["freq"] == freq and profile["horizon"] == horizon and profile["backtest"]["step"] == horizon
    quality = json.loads((data / "08_reporting" / "data_quality_report.json").read_text())
    kept = {row["series_id"] for row in quality["series"] if row["status"] == "ok"}
    assert kept and all("families" in row for row in quality["series"] if row["status"] == "ok")
    versions = sorted((data / "07_model_output" / "forecasts.csv").iterdir())
    forecasts = pd.read_csv(versions[-1] / "forecasts.csv", dtype={"series_id": str})
    assert set(forecasts["series_id"]) == kept
    assert (forecasts.groupby("series_id").size() == horizon).all()
    assert forecasts["mean"].notna().all() and {"served_by", "validated"} <= set(forecasts.columns)
    raw_frame = pd.read_csv(raw, dtype={"series_id": str})
    if steps:
        # step k is the k-th day from the default origin: each forecast starts the step after the series' last
        origin = pd.Timestamp("2000-01-01")
        first = pd.to_datetime(forecasts.groupby("series_id")["timestamp"].min())
        last_step = raw_frame.groupby("series_id")["timestamp"].max()
        assert (first == origin + pd.to_timedelta(last_step.reindex(first.index) + 1, unit="D")).all()
        assert profile["season_length"] == 1
    raw_ids = set(raw_frame["series_id"])
    assert kept == raw_ids - {row["series_id"] for row in quality["series"] if row["status"] != "ok"}


def test_day0_completes_when_no_series_affords_a_backtest_window(tmp_path):
    """A new business's first year (the m3_monthly sample cut to each series' first 12 months; the cut is ours)
    with an 18-month horizon: no backtest window fits, so nothing can be validated. Day 0 still completes:
    every series is forecast by the median of the families, marked unvalidated, and registered as the first
    champion. The Day-N cycle after it (the next two real months) monitors without a drift check and forecasts."""
    root = make_project_copy(tmp_path / "project", n_series=1)
    sample = pd.read_csv(SAMPLES / "m3_monthly.csv", dtype={"series_id": str})
    raw = tmp_path / "first_year.csv"
    sample[sample.groupby("series_id").cumcount() < 12].to_csv(raw, index=False)
    _run(root, raw, "MS", 18, LOCAL_FAMILIES)

    data = root / "data"
    versions = sorted((data / "07_model_output" / "forecasts.csv").iterdir())
    forecasts = pd.read_csv(versions[-1] / "forecasts.csv", dtype={"series_id": str})
    assert set(forecasts["series_id"]) == set(sample["series_id"]) and not forecasts["validated"].any()
    assert (forecasts.groupby("series_id").size() == 18).all() and forecasts["mean"].notna().all()
    selection = json.loads((data / "08_reporting" / "model_selection.json").read_text())
    assert selection["overall_model"] == "ensemble" and len(selection["unvalidated_series"]) == sample["series_id"].nunique()
    decision_versions = sorted((data / "08_reporting" / "registry_decision.json").iterdir())
    decision = json.loads((decision_versions[-1] / "registry_decision.json").read_text())
    assert decision["promoted"] and decision["champion_version_after"] == decision["challenger_version"]

    # Day N: the next two real months arrive; no series is long enough for the drift windows yet and the champion
    # has no backtest score: the cycle still ingests, monitors (data drift not checked) and forecasts
    batch = sample[sample.groupby("series_id").cumcount().between(12, 13)]
    (data / "01_raw" / "incoming").mkdir(parents=True, exist_ok=True)
    batch.to_csv(data / "01_raw" / "incoming" / "batch_001.csv", index=False)
    _run(root, raw, "MS", 18, LOCAL_FAMILIES, pipeline="day_n")
    summary = json.loads((data / "08_reporting" / "drift_summary_latest.json").read_text())
    assert summary["drift"] is False and "not checked" in summary["data_drift_not_checked"]
    assert summary["performance_ratio"] is None
    _run(root, raw, "MS", 18, LOCAL_FAMILIES, pipeline="inference")
    served = sorted((data / "07_model_output" / "champion_forecasts.parquet").iterdir())
    latest = pd.read_parquet(served[-1] / "champion_forecasts.parquet")
    first = pd.to_datetime(latest.groupby("series_id")["timestamp"].min())
    ends = pd.to_datetime(batch.groupby("series_id")["timestamp"].max())
    assert (first == ends.reindex(first.index) + pd.offsets.MonthBegin(1)).all()


def test_a_one_step_horizon_backtests_a_week_of_origins_with_two_fits_per_family(tmp_path):
    """Daily data forecast one day ahead: two origins would score each series on its last two days only. The
    profile derives a week of origins (one per weekday); each family is fitted at two of them and updated to
    the others, and every series is scored on all seven."""
    root = make_project_copy(tmp_path / "project", n_series=1)
    raw = SAMPLES / "nn5_daily.csv"
    _run(root, raw, "D", 1, LOCAL_FAMILIES)

    data = root / "data"
    profile = json.loads((data / "08_reporting" / "frequency_profile.json").read_text())
    assert profile["backtest"]["n_windows"] == profile["season_length"] == 7
    assert profile["backtest"]["refit_every"] == 4
    for family in LOCAL_FAMILIES.split(","):
        timings = json.loads((data / "08_reporting" / family / "backtest_timings.json").read_text())
        assert timings["refit_windows"] == [0, 4] and timings["updated_windows"] == [1, 2, 3, 5, 6], family
        backtest = pd.read_parquet(data / "07_model_output" / family / "backtest_forecasts.parquet")
        weekdays = pd.to_datetime(backtest["timestamp"]).dt.dayofweek.groupby(backtest["series_id"]).nunique()
        assert (weekdays == 7).all(), family
    versions = sorted((data / "07_model_output" / "forecasts.csv").iterdir())
    forecasts = pd.read_csv(versions[-1] / "forecasts.csv", dtype={"series_id": str})
    assert (forecasts.groupby("series_id").size() == 1).all() and forecasts["validated"].all()
