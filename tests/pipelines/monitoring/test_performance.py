"""measure_performance_drift on a hand-checkable synthetic case."""
from __future__ import annotations

import pandas as pd

from ts_kedro.pipelines.monitoring.performance import measure_performance_drift, select_previous_forecasts

from .conftest import PANEL


def test_performance_ratio_on_a_hand_checkable_case():
    # synthetic: A forecast 11, 13 for actuals 10, 10 (MAE 2); B forecast exactly (MAE 0); mean 1 / backtest 2
    times = pd.date_range("2020-01-02", periods=2, freq="h")
    history = pd.DataFrame({"series_id": ["A"] * 26 + ["B"] * 26,
                            "timestamp": list(pd.date_range("2020-01-01 00:00", periods=26, freq="h")) * 2,
                            "value": [float(i % 3) for i in range(24)] + [10.0, 10.0] + [1.0] * 24 + [5.0, 5.0],
                            "is_imputed": False})
    forecasts = pd.DataFrame({"series_id": ["A", "A", "B", "B"], "timestamp": list(times) * 2,
                              "mean": [11.0, 13.0, 5.0, 5.0], "champion_metric": "mae",
                              "champion_backtest_score": 2.0})
    result = measure_performance_drift(forecasts, history, {"performance_drift": {"min_points_per_series": 1}}, PANEL)
    assert result["per_series"] == {"A": {"n_points": 2, "mae": 2.0}, "B": {"n_points": 2, "mae": 0.0}}
    assert result["realized"] == 1.0 and result["ratio"] == 0.5
    # imputed actuals do not count
    history.loc[history["timestamp"] == times[1], "is_imputed"] = True
    again = measure_performance_drift(forecasts, history, {"performance_drift": {"min_points_per_series": 1}}, PANEL)
    assert again["per_series"]["A"]["mae"] == 1.0
    assert measure_performance_drift(select_previous_forecasts({}), history, {}, PANEL)["available"] is False
