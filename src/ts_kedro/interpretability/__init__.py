"""Interpretability as pure functions: forecast confidence, anomalies on history and new actuals, feature importance."""
from ts_kedro.interpretability.anomalies import actuals_anomalies, history_anomalies, join_actuals, robust_z_scores
from ts_kedro.interpretability.confidence import attach_confidence, confidence_scores
from ts_kedro.interpretability.errors import InterpretabilityError, TooFewWindowsError
from ts_kedro.interpretability.importance import (
    LSTM_IMPORTANCE_COLUMNS,
    arima_coefficients,
    feature_label,
    lightgbm_feature_importance,
    lstm_permutation_importance,
    prophet_component_shares,
)

__all__ = [
    "LSTM_IMPORTANCE_COLUMNS",
    "InterpretabilityError",
    "TooFewWindowsError",
    "actuals_anomalies",
    "arima_coefficients",
    "attach_confidence",
    "confidence_scores",
    "feature_label",
    "history_anomalies",
    "join_actuals",
    "lightgbm_feature_importance",
    "lstm_permutation_importance",
    "prophet_component_shares",
    "robust_z_scores",
]
