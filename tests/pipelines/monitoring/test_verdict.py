"""The verdict's views: MLflow metrics and the snapshots tagged for the Evidently workspace."""
from __future__ import annotations

import copy

from ts_kedro.pipelines.monitoring.verdict import monitoring_metrics, snapshots_for_workspace


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
