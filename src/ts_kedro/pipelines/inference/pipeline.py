"""inference: history_primary_panel + champion -> champion_forecasts (versioned), latency metrics, alerts."""
from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families
from ts_kedro.pipelines.inference.nodes import evaluate_inference_alerts, forecast_with_champion, inference_metrics
from ts_kedro.pipelines.monitoring.alert_rules import alerts_for_delivery


def create_pipeline(**kwargs) -> Pipeline:
    """With a family that uses covariates enabled (``supports_covariates``: arima, prophet, lightgbm), the new
    horizon's known covariates are checked and passed on."""
    from ts_kedro.pipelines.training.pipeline import future_covariates_node, uses_covariates

    covariate_nodes, covariate_inputs = [], []
    if any(uses_covariates(family) for family in enabled_families()):
        covariate_nodes = [future_covariates_node("history_primary_panel", "history_future_covariates")]
        covariate_inputs = ["history_future_covariates"]
    return Pipeline(
        [
            *covariate_nodes,
            Node(forecast_with_champion,
                 ["history_primary_panel", "params:inference", "params:panel", *covariate_inputs],
                 ["champion_forecasts", "inference_summary"], name="forecast_with_champion_node"),
            Node(inference_metrics, "inference_summary", "inference_metrics", name="inference_metrics_node"),
            Node(evaluate_inference_alerts, ["inference_summary", "params:monitoring"], "inference_alerts",
                 name="evaluate_inference_alerts_node"),
            Node(alerts_for_delivery, "inference_alerts", "inference_alert_deliveries",
                 name="deliver_inference_alerts_node"),
        ]
    )
