"""Conformal calibration of intervals from backtest residuals, on real M4 Hourly series."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation.backtest import rolling_origin_backtest
from ts_kedro.evaluation.conformal import _conformal_quantile, apply_adjustments, conformal_adjustments
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.8) = 16
    assert _conformal_quantile(scores, 0.8) == 16.0
    assert _conformal_quantile(np.arange(5.0), 0.95) == 4.0  # beyond n: the largest
    assert _conformal_quantile(np.array([]), 0.9) == 0.0


def test_adjustments_widen_by_the_learnt_share_of_the_width():
    forecast = pd.DataFrame({"series_id": ["a"] * 3, "timestamp": pd.date_range("2020", periods=3, freq="h"),
                             "mean": [10.0] * 3, "lo-80": [8.0] * 3, "hi-80": [12.0] * 3})
    out = apply_adjustments(forecast, {"levels": {80: [0.0, 0.25, -0.25]}}, {"a": 1.0})
    np.testing.assert_allclose(out["lo-80"], [8.0, 7.0, 9.0])
    np.testing.assert_allclose(out["hi-80"], [12.0, 13.0, 11.0])


def test_calibrated_model_covers_its_backtest_at_the_nominal_level(small_panel):
    """In sample of the calibration itself, the pooled coverage reaches the level (the conformal guarantee)."""
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 4, 24, [80, 95], min_train=48)
    adjustments = conformal_adjustments(backtest, small_panel, 24, [80, 95])
    assert set(adjustments["levels"]) == {80, 95} and len(adjustments["levels"][80]) == 24
    adjusted = apply_adjustments(backtest, adjustments, {})
    for level in (80, 95):
        inside = (adjusted["actual"] >= adjusted[f"lo-{level}"]) & (adjusted["actual"] <= adjusted[f"hi-{level}"])
        assert inside.mean() >= level / 100 - 0.02


def test_fitted_family_predicts_calibrated_intervals(small_panel):
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 3, 24, [80, 95], min_train=48)
    model = factory().fit(small_panel)
    raw = model.predict(24, [80, 95])
    model.calibrate_intervals(backtest, small_panel)
    calibrated = model.predict(24, [80, 95])
    pd.testing.assert_series_equal(raw["mean"], calibrated["mean"])
    assert not np.allclose(raw["hi-95"], calibrated["hi-95"])
    assert (calibrated["lo-95"] <= calibrated["lo-80"]).all() and (calibrated["lo-80"] <= calibrated["mean"]).all()
    assert (calibrated["lo-95"] >= 0).all()  # M4 Hourly values are positive: bounds kept non-negative
    with pytest.raises(Exception, match="fit"):
        factory().calibrate_intervals(backtest, small_panel)
