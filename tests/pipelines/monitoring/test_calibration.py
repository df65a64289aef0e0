"""calibrate_drift_thresholds on real M4 Hourly series: the empirical null of each column, recomputed by hand."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ts_kedro.frequency import profile_for_panel
from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError

from .conftest import PANEL


def _wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's "wasserstein": the first Wasserstein distance over the reference's standard deviation."""
    return stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001)


def test_each_threshold_is_the_quantile_of_the_series_own_earlier_windows(real_history, monitoring_params):
    params = copy.deepcopy(monitoring_params)
    params["data_drift"].update({"method": "wasserstein", "threshold": None})
    result = calibrate_drift_thresholds(real_history, params, PANEL)
    windows = profile_for_panel(real_history, PANEL, monitoring_params=params).monitoring
    reference, recent, stride, lag = (windows["reference_window_steps"], windows["recent_window_steps"],
                                      windows["calibration_stride_steps"], windows["seasonal_lag_steps"])
    h1 = real_history[real_history["series_id"] == "H1"]["value"].to_numpy()
    feature = (h1[lag:] - h1[:-lag])[: -recent]  # the seasonal difference before the recent window
    scores, end = [], len(feature)
    while end - recent - reference >= 0 and len(scores) < params["data_drift"]["calibration"]["max_windows"]:
        scores.append(_wasserstein_normed(feature[end - recent - reference:end - recent], feature[end - recent:end]))
        end -= stride
    entry = result["columns"]["H1|seasonal_diff"]
    assert entry["source"] == "series" and entry["windows"] == len(scores) >= 5
    # a deciding feature among k gets 1/k of the false-flag budget 1 - quantile (shipped: seasonal_diff, short_diff)
    deciding = params["data_drift"]["series_feature"]
    k = 1 if isinstance(deciding, str) else len(deciding)
    quantile = 1 - (1 - params["data_drift"]["calibration"]["quantile"]) / k
    assert entry["threshold"] == pytest.approx(np.quantile(scores, quantile))
    assert result["method"] == "wasserstein" and result["fixed_threshold"] == 0.1  # Evidently's default
    assert set(result["columns"]) == {f"{s}|{f}" for s in ("H1", "H103", "H120", "H137")
                                      for f in ("value", "seasonal_diff", "short_diff")}


def test_p_value_methods_take_the_low_quantile_never_above_the_fixed_threshold(real_history, monitoring_params):
    params = copy.deepcopy(monitoring_params)
    params["data_drift"].update({"method": "ks", "threshold": 0.05})
    result = calibrate_drift_thresholds(real_history, params, PANEL)
    assert result["p_value"] is True
    thresholds = [entry["threshold"] for entry in result["columns"].values()]
    assert all(0 <= t <= 0.05 for t in thresholds) and min(thresholds) < 1e-3  # autocorrelated: tiny p-values


def test_short_series_borrow_the_panel_windows_and_too_short_ones_keep_the_fixed_threshold(real_history,
                                                                                           monitoring_params):
    short = real_history[real_history["series_id"] != "H1"]
    short = short.groupby("series_id", group_keys=False).tail(250)  # too short for five windows of their own
    panel = pd.concat([real_history[real_history["series_id"] == "H1"], short])
    params = copy.deepcopy(monitoring_params)
    params["seasonal_lag_steps"] = PANEL["season_length"]  # keep the lag of the long series for all
    result = calibrate_drift_thresholds(panel, params, PANEL)
    assert result["columns"]["H1|value"]["source"] == "series"
    assert result["columns"]["H103|value"]["source"] == "panel"
    assert result["columns"]["H103|value"]["windows"] > result["columns"]["H1|value"]["windows"]
    params["data_drift"]["calibration"]["min_windows"] = 10_000
    assert calibrate_drift_thresholds(panel, params, PANEL)["columns"] == {}  # the fixed threshold for all


def test_no_quantile_means_fixed_thresholds_and_a_bad_one_is_refused(real_history, monitoring_params):
    params = copy.deepcopy(monitoring_params)
    params["data_drift"]["calibration"]["quantile"] = None
    assert calibrate_drift_thresholds(real_history, params, PANEL)["columns"] == {}
    params["data_drift"]["calibration"]["quantile"] = 95
    with pytest.raises(MonitoringConfigError, match="quantile must be in"):
        calibrate_drift_thresholds(real_history, params, PANEL)
