"""Tests of the M4 accuracy measures: hand-checked tiny arrays, and M4's published Hourly benchmark scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.seasonal import seasonal_decompose
from statsmodels.tsa.stattools import acf

from ts_kedro.evaluation import metrics
from ts_kedro.evaluation.metrics import MetricError


# ---- hand-checked values on tiny arrays ------------------------------------------------------------
def test_smape_hand_checked():
    # 200*10/210 = 9.5238095..., 200*20/380 = 10.5263157...
    assert metrics.smape([100, 200], [110, 180]) == pytest.approx((2000 / 210 + 4000 / 380) / 2)


def test_smape_zero_cases():
    assert metrics.smape([0.0, 0.0], [0.0, 0.0]) == 0.0  # 0/0 counts as a perfect step, not NaN
    assert metrics.smape([0.0], [5.0]) == pytest.approx(200.0)  # worst case is bounded at 200
    assert metrics.smape([-10.0], [10.0]) == pytest.approx(200.0)


def test_mape_skips_zero_actuals():
    # step 1 (actual 0) is skipped: (10% + 25%) / 2
    assert metrics.mape([0, 100, 200], [5, 110, 150]) == pytest.approx(17.5)
    assert np.isnan(metrics.mape([0, 0], [1, 2]))


def test_mae_rmse_hand_checked():
    assert metrics.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert metrics.rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(np.sqrt(5 / 3))


def test_perfect_forecast_scores_zero_everywhere():
    y = np.array([3.0, 7.0, 0.0, 2.5])
    insample = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    for fn in (metrics.smape, metrics.mae, metrics.rmse, metrics.mape):
        assert fn(y, y) == 0.0
    assert metrics.mase(y, y, insample, 2) == 0.0


def test_mase_uses_seasonal_scale_of_training_part():
    insample = [1, 2, 3, 4, 5, 6]  # lag-2 differences are all 2
    assert metrics.seasonal_scale(insample, 2) == pytest.approx(2.0)
    assert metrics.mase([7, 8], [8, 10], insample, 2) == pytest.approx(1.5 / 2.0)
    # lag 1: differences are all 1
    assert metrics.mase([7, 8], [8, 10], insample, 1) == pytest.approx(1.5)


def test_mase_undefined_for_constant_training_part():
    assert np.isnan(metrics.mase([1.0, 2.0], [1.0, 1.0], [5.0] * 10, 2))


def test_seasonal_scale_needs_more_than_m_points():
    with pytest.raises(MetricError, match="more than m=24"):
        metrics.seasonal_scale(np.arange(24.0), 24)


def test_coverage_closed_interval():
    # inside; below lo; exactly on lo (closed interval counts it)
    assert metrics.coverage([1, 5, 10], [0, 6, 10], [2, 7, 12]) == pytest.approx(2 / 3)


def test_msis_hand_checked():
    # step 1 inside: width 2; step 2 misses lo by 1: width 1 + (2/0.05)*1 = 41; mean 21.5; scale 2
    assert metrics.msis([1, 5], [0, 6], [2, 7], [1, 2, 3, 4, 5, 6], 2, alpha=0.05) == pytest.approx(10.75)
    # a perfect zero-width interval scores 0
    assert metrics.msis([3, 4], [3, 4], [3, 4], [1, 2, 3, 4, 5, 6], 2) == 0.0


def test_owa_matches_workbook_rounding_example():
    # M4_REFERENCE.md: Hourly sNaive ½·(13.912/18.383 + 1.193/2.395) = 0.627453
    assert metrics.owa(13.912, 1.193, 18.383, 2.395) == pytest.approx(0.627453, abs=1e-6)
    assert metrics.owa(18.383, 2.395, 18.383, 2.395) == 1.0


def test_axis_gives_one_value_per_series():
    y = np.array([[100.0, 200.0], [1.0, 1.0]])
    yhat = np.array([[110.0, 180.0], [1.0, 1.0]])
    per_series = metrics.smape(y, yhat, axis=-1)
    assert per_series.shape == (2,)
    assert per_series[1] == 0.0
    assert metrics.smape(y, yhat) == pytest.approx(per_series.mean())


@pytest.mark.parametrize("fn", [metrics.smape, metrics.mape, metrics.mae, metrics.rmse])
def test_bad_input_raises(fn):
    with pytest.raises(MetricError, match="shape"):
        fn([1, 2, 3], [1, 2])
    with pytest.raises(MetricError, match="NaN"):
        fn([1, np.nan], [1, 2])
    with pytest.raises(MetricError, match="no values"):
        fn([], [])


def test_seasonal_naive_forecast_repeats_last_season():
    np.testing.assert_array_equal(metrics.seasonal_naive_forecast([1, 2, 3, 4, 5, 6], 5, 2), [5, 6, 5, 6, 5])


# ---- Naive2 ---------------------------------------------------------------------------------------
def test_naive2_is_plain_naive_without_enough_history():
    # fewer than 3m observations: M4 skips the seasonality test
    assert np.all(metrics.naive2(np.arange(1.0, 48.0), 5, 24) == 47.0)


def test_naive2_reseasonalises_an_exact_multiplicative_pattern():
    # synthetic edge case: constant level times a fixed 4-period pattern must be continued exactly
    pattern = np.array([1.0, 2.0, 3.0, 0.5])
    series = 10.0 * np.tile(pattern, 10)
    forecast = metrics.naive2(series, 6, 4)
    np.testing.assert_allclose(forecast, 10.0 * np.tile(pattern, 2)[:6])


def test_acf_and_decomposition_agree_with_statsmodels(m4_sample_panel):
    values = m4_sample_panel.loc[m4_sample_panel["series_id"] == "H1", "value"].to_numpy(float)
    np.testing.assert_allclose(metrics._acf(values, 24), acf(values, nlags=24, fft=False)[1:], rtol=1e-10)
    seasonal = seasonal_decompose(values, model="multiplicative", period=24).seasonal
    np.testing.assert_allclose(metrics.multiplicative_seasonal_indices(values, 24), seasonal[:24], rtol=1e-10)


def _m4_hourly(shared_data):
    folder = shared_data / "m4_hourly"
    train = pd.read_csv(folder / "Hourly-train.csv", index_col=0)
    test = pd.read_csv(folder / "Hourly-test.csv", index_col=0)
    return [(train.loc[sid].dropna().to_numpy(float), test.loc[sid].dropna().to_numpy(float)) for sid in train.index]


def test_reproduces_m4_published_hourly_benchmarks(shared_data):
    """All 414 M4 Hourly series: Naive2 18.383 / 2.395 and sNaive 13.912 / 1.193 (M4 workbook)."""
    series = _m4_hourly(shared_data)
    assert len(series) == 414 and all(len(test) == 48 for _, test in series)
    scores = {}
    for name, method in (("naive2", metrics.naive2), ("snaive", metrics.seasonal_naive_forecast)):
        forecasts = [method(train, 48, 24) for train, _ in series]
        scores[name] = (
            np.mean([metrics.smape(test, f) for (_, test), f in zip(series, forecasts)]),
            np.mean([metrics.mase(test, f, train, 24) for (train, test), f in zip(series, forecasts)]),
        )
    assert round(scores["naive2"][0], 3) == 18.383
    assert round(scores["naive2"][1], 3) == 2.395
    assert round(scores["snaive"][0], 3) == 13.912
    assert round(scores["snaive"][1], 3) == 1.193
    owa_snaive = metrics.owa(*scores["snaive"], *scores["naive2"])
    assert round(owa_snaive, 3) == 0.628  # unrounded inputs (workbook shows 0.627 from rounded ones)
