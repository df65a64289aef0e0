"""Anomalies on history and on actuals the champion did not expect (real backtests; injected spikes are labelled)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.interpretability import (
    InterpretabilityError,
    actuals_anomalies,
    history_anomalies,
    join_actuals,
    robust_z_scores,
)


def _champion_backtest(day0) -> pd.DataFrame:
    backtests, choice = day0["candidate_backtests"], day0["selection"]["choice"]
    return backtests[backtests["model"] == backtests["series_id"].map(choice)].reset_index(drop=True)


def test_history_anomalies_are_the_flagged_rows(day0):
    panel = day0["panel"]
    panel.loc[[5, 700], "is_anomaly"] = True  # synthetic flags on real rows
    found = history_anomalies(panel)
    assert found[["series_id", "timestamp"]].values.tolist() == panel.loc[[5, 700], ["series_id", "timestamp"]].values.tolist()
    assert (found["source"] == "history").all()


def test_points_outside_the_interval_are_flagged_and_counted_exactly(day0):
    backtest = _champion_backtest(day0)
    scored = actuals_anomalies(backtest, 95, 3.5)
    outside = (backtest["actual"] < backtest["lo-95"]) | (backtest["actual"] > backtest["hi-95"])
    assert scored["outside_interval"].sum() == outside.sum()
    assert (scored.loc[scored["actual"] > scored["hi-95"], "reason"].str.startswith("above hi-95")).all()


def test_an_injected_spike_is_a_residual_outlier_and_outside_the_interval(day0):
    backtest = _champion_backtest(day0)
    spike = backtest.index[(backtest["series_id"] == "H120")][30]
    # synthetic edge case: one real actual multiplied by 3
    backtest.loc[spike, "actual"] *= 3
    scored = actuals_anomalies(backtest, 95, 3.5)
    row = scored.loc[spike]
    assert row["residual_outlier"] and row["outside_interval"] and row["is_anomaly"]
    assert row["reason"] == "above hi-95 and residual |z|>3.5"
    # the other points of that series are not all dragged along: the MAD ignores the spike
    others = scored[(scored["series_id"] == "H120") & (scored.index != spike)]
    assert others["residual_outlier"].mean() < 0.05


def test_robust_z_is_computed_within_each_series():
    # synthetic: two groups with very different spreads; z is relative to each group's own MAD
    residuals = pd.Series([1.0, -1.0, 2.0, -2.0, 0.0, 100.0, -100.0, 200.0, -200.0, 0.0])
    groups = pd.Series(["a"] * 5 + ["b"] * 5)
    z = robust_z_scores(residuals, groups)
    assert z.iloc[:5].to_numpy() == pytest.approx(z.iloc[5:].to_numpy())
    assert z.iloc[2] == pytest.approx(0.6745 * 2 / 1.0)


def test_robust_z_of_a_series_without_spread_is_zero():
    z = robust_z_scores(pd.Series([3.0, 3.0, 3.0]), pd.Series(["a", "a", "a"]))
    assert (z == 0).all()


def test_join_actuals_keeps_only_forecasts_with_an_arrived_actual(day0):
    panel, forecasts = day0["panel"], _champion_backtest(day0).drop(columns="actual")
    arrived = panel[panel["timestamp"] <= forecasts["timestamp"].min() + pd.Timedelta(hours=10)]
    joined = join_actuals(forecasts.assign(timestamp=forecasts["timestamp"].astype(str)), arrived)
    assert len(joined) and joined["actual"].notna().all()
    assert joined["timestamp"].max() <= forecasts["timestamp"].min() + pd.Timedelta(hours=10)


def test_bad_threshold_and_missing_level_are_clear_errors(day0):
    backtest = _champion_backtest(day0)
    with pytest.raises(InterpretabilityError, match="z_threshold must be positive"):
        actuals_anomalies(backtest, 95, 0)
    with pytest.raises(InterpretabilityError, match=r"lacks columns \['lo-99', 'hi-99'\]"):
        actuals_anomalies(backtest, 99, 3.5)
    assert np.isfinite(actuals_anomalies(backtest, 80, 3.5)["robust_z"]).all()
