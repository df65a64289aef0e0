"""monitoring: history_primary_panel + last champion forecasts -> drift_summary (verdict), reports, alerts."""
from kedro.pipeline import Node, Pipeline

from ts_kedro.pipelines.monitoring.nodes import (
    add_to_evidently_workspace,
    build_drift_windows,
    deliver_alerts,
    detect_data_drift,
    evaluate_monitoring_alerts,
    measure_performance_drift,
    monitoring_metrics,
    select_previous_forecasts,
    drift_summary_for_tracking,
    summarise_drift,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(build_drift_windows, ["history_primary_panel", "params:monitoring", "params:panel"],
                 ["drift_reference", "drift_current"], name="build_drift_windows_node"),
            Node(detect_data_drift, ["drift_reference", "drift_current", "params:monitoring"],
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
            Node(monitoring_metrics, ["drift_summary", "ingestion_report"], "monitoring_metrics",
                 name="monitoring_metrics_node"),
            Node(add_to_evidently_workspace, ["drift_snapshots", "drift_summary", "params:monitoring"],
                 "evidently_workspace_runs", name="add_to_evidently_workspace_node"),
            Node(evaluate_monitoring_alerts, ["drift_summary", "ingestion_report", "params:monitoring"], "alerts",
                 name="evaluate_alert_rules_node"),
            Node(deliver_alerts, ["alerts", "params:monitoring.alert_delivery"], "alert_deliveries",
                 name="deliver_alerts_node"),
        ]
    )
