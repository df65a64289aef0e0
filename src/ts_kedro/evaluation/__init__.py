"""Accuracy measures (M4 definitions), benchmark forecasts and rolling-origin backtesting."""
from ts_kedro.evaluation.backtest import (
    BacktestError,
    PeakMemorySampler,
    evaluate_backtest,
    rolling_origin_backtest,
)
from ts_kedro.evaluation.metrics import (
    MetricError,
    coverage,
    interval_score,
    is_seasonal,
    mae,
    mape,
    mase,
    msis,
    naive2,
    owa,
    rmse,
    seasonal_naive_forecast,
    seasonal_scale,
    smape,
)

__all__ = [
    "BacktestError",
    "MetricError",
    "PeakMemorySampler",
    "coverage",
    "evaluate_backtest",
    "interval_score",
    "is_seasonal",
    "mae",
    "mape",
    "mase",
    "msis",
    "naive2",
    "owa",
    "rmse",
    "rolling_origin_backtest",
    "seasonal_naive_forecast",
    "seasonal_scale",
    "smape",
]
