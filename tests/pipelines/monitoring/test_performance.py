"""measure_performance_drift and the interval test on hand-checkable synthetic cases."""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.pipelines.monitoring.performance import (
    interval_exceedance,
    measure_performance_drift,
    select_previous_forecasts,
)
from ts_kedro.pipelines.monitoring.verdict import summarise_drift

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


def _rows(shares_outside: list[float], points: int = 10) -> pd.DataFrame:
    """SYNTHETIC: per series, ``points`` actuals of which the first share lie above an interval [0, 1]."""
    frames = []
    for i, share in enumerate(shares_outside):
        outside = int(round(share * points))
        frames.append(pd.DataFrame({"series_id": f"s{i}", "value": [2.0] * outside + [0.5] * (points - outside),
                                    "lo-80": 0.0, "hi-80": 1.0}))
    return pd.concat(frames, ignore_index=True)


def test_interval_exceedance_is_a_one_sided_test_across_series():
    spread = interval_exceedance(_rows([0.5, 0.6, 0.4, 0.5, 0.7, 0.3]))["80"]
    assert spread["expected"] == pytest.approx(0.2) and spread["rate"] == pytest.approx(0.5)
    assert spread["n_series"] == 6 and spread["p_value"] < 0.01
    assert interval_exceedance(_rows([0.1, 0.2, 0.3, 0.2]))["80"]["p_value"] > 0.4  # as the level allows
    assert interval_exceedance(_rows([0.5, 0.5, 0.5]))["80"]["p_value"] == 0.0  # no spread: the sign decides
    assert interval_exceedance(_rows([0.1, 0.1]))["80"]["p_value"] == 1.0
    assert interval_exceedance(_rows([0.9]))["80"]["p_value"] is None  # one series: no test across series


@pytest.mark.parametrize("thresholds, flagged", [
    ({"interval_p_value": 0.01, "interval_excess": 0.1}, True),
    ({"interval_p_value": None, "interval_excess": 0.1}, False),   # off
    ({"interval_p_value": 0.01, "interval_excess": 0.4}, False),   # 0.5 is not 0.2 + 0.4
    ({"interval_p_value": 1e-9, "interval_excess": 0.1}, False),   # not significant at that size
])
def test_the_verdict_flags_intervals_left_too_often(thresholds, flagged):
    performance = {"available": True, "metric": "mae", "realized": 1.0, "backtest": 1.0, "ratio": 1.0,
                   "interval_exceedance": interval_exceedance(_rows([0.5, 0.6, 0.4, 0.5, 0.7, 0.3]))}
    data_drift = {"drift_share": 0.0, "drifted_series": [], "n_series": 6, "feature_drift_share": {},
                  "panel_level": {}}
    summary = summarise_drift(data_drift, performance,
                              {"thresholds": {"drift_share": 0.5, "performance_ratio": 1.5, **thresholds}})
    assert summary["drift"] is flagged and summary["interval_drift"] is flagged
    assert summary["performance_drift"] is flagged
    if flagged:
        assert "80 % interval at 0.50 of points (expected 0.20" in summary["reasons"][0]
