"""The verdict's views: MLflow metrics and the snapshots tagged for the Evidently workspace."""
from __future__ import annotations

import copy

import pytest

from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
from ts_kedro.pipelines.monitoring.verdict import drift_report_for_tracking, monitoring_metrics, snapshots_for_workspace


def test_monitoring_metrics_for_mlflow():
    summary = {"drift": True, "drift_share": 0.75, "feature_drift_share": 0.5, "performance_ratio": None,
               "performance": {"available": False}}
    metrics = monitoring_metrics(summary, {"n_accepted": 2, "n_quarantined": 1, "rows_accepted": 96,
                                           "duplicate_rows_ignored": 0})
    assert metrics["drift"] == {"value": 1.0, "step": 0}
    assert metrics["drift_share"]["value"] == 0.75 and metrics["batches_quarantined"]["value"] == 1.0
    assert "performance_ratio" not in metrics and "realized_error" not in metrics  # not measured this run
    assert metrics["peak_rss_mb"]["value"] > 0


def test_snapshots_are_tagged_with_their_name_and_the_verdict_without_changing_the_input():
    snapshots = {"series_drift": {"name": "series_drift", "tags": ["manual"]}, "panel_drift": {"name": "panel_drift"}}
    before = copy.deepcopy(snapshots)
    drifted = snapshots_for_workspace(snapshots, {"drift": True})
    assert drifted["series_drift"]["tags"] == ["drift", "manual", "series_drift"]
    assert drifted["panel_drift"] == {"name": "panel_drift", "tags": ["drift", "panel_drift"]}
    assert snapshots_for_workspace(snapshots, {"drift": False})["panel_drift"]["tags"] == ["no_drift", "panel_drift"]
    assert snapshots == before


@pytest.mark.parametrize(("mode", "drift", "full"), [
    ("on_drift", True, True), ("on_drift", False, False), ("always", False, True), ("never", True, False)])
def test_the_full_drift_report_goes_to_mlflow_only_when_asked(mode, drift, full):
    report = "<html>" + "x" * 10_000 + "</html>"
    summary = {"drift": drift, "drift_share": 0.25, "checked_at": "2026-12-05T08:00:00+00:00"}
    tracked = drift_report_for_tracking(report, summary, {"tracking": {"drift_report": mode}})
    if full:
        assert tracked == report
    else:
        assert len(tracked) < 1_000 and "not logged" in tracked and f"drift_report: {mode}" in tracked
        assert ("<b>drift</b>" if drift else "<b>no drift</b>") in tracked and "0.25" in tracked


def test_the_drift_report_default_is_on_drift_and_a_bad_mode_is_refused():
    summary = {"drift": False, "drift_share": 0.0}
    assert "not logged" in drift_report_for_tracking("<html></html>", summary, {})
    with pytest.raises(MonitoringConfigError, match="monitoring.tracking.drift_report must be one of"):
        drift_report_for_tracking("<html></html>", summary, {"tracking": {"drift_report": "sometimes"}})
