"""monitoring: history_primary_panel + last champion forecasts -> drift_summary (verdict), reports, alerts.

Data drift: ``build_drift_windows`` cuts each series' features, ``calibrate_drift_thresholds`` scores the same
features on the series' own earlier windows, ``detect_data_drift`` runs Evidently with those thresholds.

Nodes are pure; the Evidently workspace (``evidently_workspace_runs``) and alert delivery
(``alert_deliveries``) are datasets whose save does the writing and sending.
"""
from kedro.pipeline import Node, Pipeline

from ts_kedro.pipelines.monitoring.alert_rules import alerts_for_delivery, evaluate_monitoring_alerts
from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.performance import measure_performance_drift, select_previous_forecasts
from ts_kedro.pipelines.monitoring.verdict import (
    drift_report_for_tracking,
    drift_summary_for_tracking,
    monitoring_metrics,
    snapshots_for_workspace,
    summarise_drift,
)
from ts_kedro.pipelines.monitoring.windows import build_drift_windows


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(build_drift_windows, ["history_primary_panel", "params:monitoring", "params:panel"],
                 ["drift_reference", "drift_current"], name="build_drift_windows_node"),
            Node(calibrate_drift_thresholds, ["history_primary_panel", "params:monitoring", "params:panel"],
                 "drift_thresholds", name="calibrate_drift_thresholds_node"),
            Node(detect_data_drift, ["drift_reference", "drift_current", "drift_thresholds", "params:monitoring"],
                 ["data_drift", "drift_report", "drift_snapshots"], name="detect_data_drift_node"),
            Node(select_previous_forecasts, "champion_forecast_versions", "previous_champion_forecasts",
                 name="select_previous_forecasts_node"),
            Node(measure_performance_drift,
                 ["previous_champion_forecasts", "history_primary_panel", "params:monitoring", "params:panel"],
                 "performance_drift", name="measure_performance_drift_node"),
            Node(summarise_drift, ["data_drift", "performance_drift", "params:monitoring"], "drift_summary",
                 name="summarise_drift_node"),
            Node(drift_summary_for_tracking, "drift_summary", "drift_summary_artifact",
                 name="drift_summary_for_tracking_node"),
            Node(drift_report_for_tracking, ["drift_report", "drift_summary", "params:monitoring"],
                 "drift_report_artifact", name="drift_report_for_tracking_node"),
            Node(monitoring_metrics, ["drift_summary", "ingestion_report"], "monitoring_metrics",
                 name="monitoring_metrics_node"),
            Node(snapshots_for_workspace, ["drift_snapshots", "drift_summary"], "evidently_workspace_runs",
                 name="add_to_evidently_workspace_node"),
            Node(evaluate_monitoring_alerts, ["drift_summary", "ingestion_report", "params:monitoring"], "alerts",
                 name="evaluate_alert_rules_node"),
            Node(alerts_for_delivery, "alerts", "alert_deliveries", name="deliver_alerts_node"),
        ]
    )
