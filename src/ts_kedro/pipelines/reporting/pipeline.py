"""Reporting: plots, confidence, anomalies and feature importance of a Day-0 run (files under data/08_reporting)."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families
from ts_kedro.interpretability import attach_confidence

from .lightgbm_importance import lightgbm_importance, plot_lightgbm_importance
from .nodes import (
    arima_coefficient_table,
    build_anomaly_report,
    compute_confidence,
    lstm_importance,
    plot_arima_coefficients,
    plot_confidence,
    plot_drift_history,
    plot_error_analysis,
    plot_feature_correlation,
    plot_lstm_importance,
    plot_model_comparison,
    plot_prediction_vs_actual,
    plot_prophet_components,
    plot_seasonal_decomposition,
    prophet_components,
    select_report_series,
)

# Importance nodes per family: (compute, plot, table dataset, plot dataset, extra inputs of the compute node,
# extra inputs of the plot node).
_IMPORTANCE = {
    "lstm": (lstm_importance, plot_lstm_importance, "lstm_feature_importance", "lstm_feature_importance_plot",
             ["primary_panel"], []),
    "arima": (arima_coefficient_table, plot_arima_coefficients, "arima_coefficients", "arima_coefficients_plot", [],
              ["params:reporting"]),
    "prophet": (prophet_components, plot_prophet_components, "prophet_components", "prophet_components_plot", [], []),
    "lightgbm": (lightgbm_importance, plot_lightgbm_importance, "lightgbm_feature_importance",
                 "lightgbm_feature_importance_plot", ["lightgbm.model_stats"], ["params:reporting"]),
}


def _importance_nodes(family: str) -> list[Node]:
    compute, plot, table, figure, compute_extra, plot_extra = _IMPORTANCE[family]
    return [
        Node(compute, inputs=[f"{family}.model", *compute_extra, "params:reporting"], outputs=table,
             name=f"{table}_node"),
        Node(plot, inputs=[table, *plot_extra], outputs=figure, name=f"{figure}_node"),
    ]


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    """All reporting nodes; importance nodes only for the enabled families that have one (lstm, arima, prophet,
    lightgbm)."""
    families = families or enabled_families()
    nodes = [
        Node(select_report_series, inputs=["primary_panel", "params:reporting"], outputs="report_series",
             name="select_report_series_node"),
        Node(compute_confidence, inputs=["candidate_backtests", "model_selection", "primary_panel", "params:panel"],
             outputs="confidence_scores", name="compute_confidence_node"),
        Node(attach_confidence, inputs=["forecasts", "confidence_scores"], outputs="forecasts_with_confidence",
             name="attach_confidence_node"),
        Node(plot_confidence, inputs=["confidence_scores", "params:reporting"], outputs="confidence_plot",
             name="plot_confidence_node"),
        Node(build_anomaly_report, inputs=["primary_panel", "candidate_backtests", "model_selection",
                                           "params:reporting", "params:panel"],
             outputs=["anomaly_report", "anomaly_summary"], name="build_anomaly_report_node"),
        Node(plot_seasonal_decomposition, inputs=["series_decomposition", "primary_panel", "report_series"],
             outputs="seasonal_decomposition_plot", name="plot_seasonal_decomposition_node"),
        Node(plot_feature_correlation, inputs=["feature_panel", "feature_manifest", "params:reporting"],
             outputs="feature_correlation_plot", name="plot_feature_correlation_node"),
        Node(plot_prediction_vs_actual,
             inputs=["primary_panel", "candidate_backtests", "model_selection", "forecasts", "anomaly_report",
                     "report_series", "params:reporting", "params:panel"],
             outputs="prediction_vs_actual_plot", name="plot_prediction_vs_actual_node"),
        Node(plot_error_analysis, inputs=["candidate_backtests", "model_selection", "params:reporting"],
             outputs="error_analysis_plot",
             name="plot_error_analysis_node"),
        Node(plot_model_comparison, inputs=["candidate_scores", "params:panel"], outputs="model_comparison_plot",
             name="plot_model_comparison_node"),
        Node(plot_drift_history, inputs="drift_summary_history", outputs="drift_history_plot",
             name="plot_drift_history_node"),
    ]
    for family in families:
        if family in _IMPORTANCE:
            nodes += _importance_nodes(family)
    return Pipeline(nodes)
