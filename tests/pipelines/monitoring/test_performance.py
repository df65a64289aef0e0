"""measure_performance_drift and the interval test on hand-checkable synthetic cases."""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.pipelines.monitoring.performance import (
    interval_exceedance,
    measure_performance_drift,
    select_previous_forecasts,
)
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
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
    # a perfect backtest (a constant panel) met by perfect forecasts is no drift; missed, it is
    perfect = forecasts.assign(champion_backtest_score=0.0, mean=[10.0, 10.0, 5.0, 5.0])
    history["is_imputed"] = False
    assert measure_performance_drift(perfect, history, {"performance_drift": {"min_points_per_series": 1}},
                                     PANEL)["ratio"] == 1.0
    assert measure_performance_drift(perfect.assign(mean=11.0), history,
                                     {"performance_drift": {"min_points_per_series": 1}}, PANEL)["ratio"] == float("inf")
    # a champion that was never validated (no series afforded a backtest window: score NaN) has no ratio, and
    # the verdict finds no performance drift in its absence
    unvalidated = measure_performance_drift(forecasts.assign(champion_backtest_score=float("nan")), history,
                                            {"performance_drift": {"min_points_per_series": 1}}, PANEL)
    assert unvalidated["available"] and unvalidated["ratio"] is None and unvalidated["realized"] == 1.0


def _rows(shares_above: list[float], shares_below: list[float] | None = None, points: int = 20) -> pd.DataFrame:
    """SYNTHETIC: per series, ``points`` actuals of which the first shares lie above / below an interval [0, 1]."""
    shares_below = shares_below or [0.0] * len(shares_above)
    frames = []
    for i, (up, down) in enumerate(zip(shares_above, shares_below)):
        above, below = int(round(up * points)), int(round(down * points))
        values = [2.0] * above + [-1.0] * below + [0.5] * (points - above - below)
        frames.append(pd.DataFrame({"series_id": f"s{i}", "value": values, "lo-80": 0.0, "hi-80": 1.0}))
    return pd.concat(frames, ignore_index=True)


def test_interval_exceedance_is_a_one_sided_test_across_series():
    spread = interval_exceedance(_rows([0.5, 0.6, 0.4, 0.5, 0.7, 0.3]))["80"]
    assert spread["expected"] == pytest.approx(0.2) and spread["rate"] == pytest.approx(0.5)
    assert spread["n_series"] == 6 and spread["p_value"] < 0.01
    assert interval_exceedance(_rows([0.1, 0.2, 0.3, 0.2]))["80"]["p_value"] > 0.4  # as the level allows
    assert interval_exceedance(_rows([0.5, 0.5, 0.5]))["80"]["p_value"] == 0.0  # no spread: the sign decides
    assert interval_exceedance(_rows([0.1, 0.1]))["80"]["p_value"] == 1.0
    assert interval_exceedance(_rows([0.9]))["80"]["p_value"] is None  # one series: no test across series


def test_each_tail_is_tested_on_its_own():
    # every series above its interval at 0.25 of points and never below: 0.25 outside is not 0.2 + 0.1 (the
    # two-sided rule cannot flag it), but 0.25 above is 2.5 times the 0.10 the upper tail allows
    tails = interval_exceedance(_rows([0.25, 0.3, 0.2, 0.3, 0.25, 0.3, 0.2, 0.25]))["80"]
    assert tails["rate"] == pytest.approx(0.25625) and tails["p_value"] < 0.01
    assert tails["above"]["expected"] == pytest.approx(0.1) and tails["above"]["rate"] == pytest.approx(0.25625)
    assert tails["above"]["p_value"] < 1e-5 and tails["above"]["n_series"] == 8
    assert tails["below"]["rate"] == 0.0 and tails["below"]["p_value"] == 1.0
    # half the series above, half below: each tail at 0.15 on average, the two-sided share at 0.3
    mixed = interval_exceedance(_rows([0.3, 0.0] * 4, [0.0, 0.3] * 4))["80"]
    assert mixed["rate"] == pytest.approx(0.3) and mixed["above"]["rate"] == pytest.approx(0.15)
    assert mixed["below"]["rate"] == pytest.approx(0.15) and mixed["above"]["p_value"] > 0.1


def _verdict(shares_above: list[float], thresholds: dict, shares_below: list[float] | None = None) -> dict:
    performance = {"available": True, "metric": "mae", "realized": 1.0, "backtest": 1.0, "ratio": 1.0,
                   "interval_exceedance": interval_exceedance(_rows(shares_above, shares_below))}
    data_drift = {"drift_share": 0.0, "drifted_series": [], "n_series": len(shares_above),
                  "feature_drift_share": {}, "panel_level": {}}
    return summarise_drift(data_drift, performance,
                           {"thresholds": {"drift_share": 0.5, "performance_ratio": 1.5, **thresholds}})


@pytest.mark.parametrize("thresholds, flagged", [
    ({"interval_p_value": 0.01, "interval_excess": 0.1, "interval_tails": False}, True),
    ({"interval_p_value": None, "interval_excess": 0.1, "interval_tails": False}, False),   # off
    ({"interval_p_value": 0.01, "interval_excess": 0.4, "interval_tails": False}, False),   # 0.5 is not 0.2 + 0.4
    ({"interval_p_value": 1e-9, "interval_excess": 0.1, "interval_tails": False}, False),   # not significant
])
def test_the_verdict_flags_intervals_left_too_often(thresholds, flagged):
    # half the points of every series outside, on both sides (a variance change): the two-sided rule's case
    summary = _verdict([0.25, 0.3, 0.2, 0.25, 0.35, 0.15], thresholds, [0.25, 0.3, 0.2, 0.25, 0.35, 0.15])
    assert summary["drift"] is flagged and summary["interval_drift"] is flagged
    assert summary["performance_drift"] is flagged
    if flagged:
        assert "left the champion's 80 % interval at 0.50 of points (expected 0.2" in summary["reasons"][0]
        assert "1 tests" in summary["reasons"][0]


def test_the_verdict_flags_a_one_sided_change_only_with_the_tail_tests():
    shares = [0.25, 0.3, 0.2, 0.3, 0.25, 0.3, 0.2, 0.25]
    with_tails = _verdict(shares, {"interval_p_value": 0.01, "interval_excess": 0.1})  # the default: tails on
    assert with_tails["drift"] and with_tails["interval_drift"]
    reason = with_tails["reasons"][0]
    assert "rose above the champion's 80 % interval at 0.26 of points (expected 0.1" in reason and "3 tests" in reason
    assert not _verdict(shares, {"interval_p_value": 0.01, "interval_excess": 0.1, "interval_tails": False})["drift"]
    # a tail test still needs the excess: 0.26 is not 0.1 + 0.2
    assert not _verdict(shares, {"interval_p_value": 0.01, "interval_excess": 0.2})["drift"]
    # calibrated intervals left evenly on both sides as often as allowed: nothing to flag
    assert not _verdict([0.1] * 8, {"interval_p_value": 0.01, "interval_excess": 0.1}, [0.1] * 8)["drift"]
    with pytest.raises(MonitoringConfigError, match="interval_tails"):
        _verdict(shares, {"interval_p_value": 0.01, "interval_excess": 0.1, "interval_tails": "yes"})
