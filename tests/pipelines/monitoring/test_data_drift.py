"""The data-drift verdict on real M4 Hourly batches: clean batches do not drift, an injected level shift does,
and the fixed KS test the verdict used before flags the same clean batches (so the first test can fail)."""
from __future__ import annotations

import copy

import pytest

from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.verdict import summarise_drift
from ts_kedro.pipelines.monitoring.windows import build_drift_windows

from .conftest import PANEL, shift_last_batch, until_batch

NO_PERFORMANCE = {"available": False, "reason": "data drift only"}
CLEAN_BATCHES = (0, 3, 5)  # the real M4 test batch, and two earlier real batches


def _verdict(history, params):
    reference, current = build_drift_windows(history, params, PANEL)
    data_drift, html, snapshots = detect_data_drift(reference, current,
                                                    calibrate_drift_thresholds(history, params, PANEL), params)
    return summarise_drift(data_drift, NO_PERFORMANCE, params), data_drift, html, snapshots


@pytest.fixture(scope="module")
def twelve_series(real_m4_panel):
    ids = sorted(real_m4_panel["series_id"].unique())[::2]
    return real_m4_panel[real_m4_panel["series_id"].isin(ids)].reset_index(drop=True)


@pytest.mark.parametrize("batches_back", CLEAN_BATCHES)
def test_clean_real_batches_do_not_drift(twelve_series, monitoring_params, batches_back):
    summary, data_drift, _, _ = _verdict(until_batch(twelve_series, batches_back), monitoring_params)
    assert summary["drift"] is False, summary["reasons"]
    assert summary["n_series"] == 12 and summary["drift_share"] <= 0.25
    # every column (12 series x value, seasonal and short difference) on its own history
    assert data_drift["calibration"]["columns_by_source"] == {"series": 36}


def test_the_fixed_ks_test_flags_clean_real_batches(twelve_series, monitoring_params):
    """The design before: KS p-value < 0.05 on the target, fixed, reference of two weeks. On the same clean
    batches it says drift (so test_clean_real_batches_do_not_drift is a real check)."""
    before = copy.deepcopy(monitoring_params)
    before["data_drift"].update({"method": "ks", "threshold": 0.05, "series_feature": "value",
                                 "calibration": {"quantile": None}})
    before.update({"reference_window_steps": 2 * 7 * 24, "seasonal_lag_steps": 24})
    summaries = [_verdict(until_batch(twelve_series, back), before)[0] for back in (3, 5)]
    assert [summary["drift"] for summary in summaries] == [True, True]
    # on the target itself a change leaves the windows once the reference window has passed it: no lag to add
    assert summaries[0]["windows"]["reach_steps"] == summaries[0]["windows"]["reference_steps"] == 2 * 7 * 24


def test_an_injected_level_shift_drifts(twelve_series, monitoring_params):
    shifted = shift_last_batch(twelve_series)
    summary, data_drift, html, snapshots = _verdict(shifted, monitoring_params)
    assert summary["drift"] is True and summary["drift_share"] > 0.5
    assert summary["data_drift"] is True and summary["performance_drift"] is False
    # the seasonal difference looks seasonal_lag_steps back: a change stays in the windows that much longer
    geometry = calibrate_drift_thresholds(shifted, monitoring_params, PANEL)["windows"]
    assert summary["windows"] == {
        "reference_steps": geometry["reference_window_steps"], "recent_steps": geometry["recent_window_steps"],
        "seasonal_lag_steps": geometry["seasonal_lag_steps"],
        "reach_steps": geometry["reference_window_steps"] + geometry["seasonal_lag_steps"]}
    assert data_drift["reference_rows"] == geometry["reference_window_steps"]
    assert summary["reasons"][0].startswith(f"data drift: {len(summary['drifted_series'])} of 12 series drifted")
    assert "<html" in html.lower() and set(snapshots) == {"series_drift", "panel_drift"}
    # Evidently's own ValueDrift ran each column against its calibrated threshold, and decided the flags
    calibrated = calibrate_drift_thresholds(shifted, monitoring_params, PANEL)["columns"]
    for series_id, features in data_drift["series"].items():
        for feature, result in features.items():
            assert result["threshold"] == pytest.approx(calibrated[f"{series_id}|{feature}"]["threshold"])
            assert result["drifted"] == (result["score"] >= result["threshold"])
    assert summary["drifted_series"] == sorted(s for s, f in data_drift["series"].items()
                                               if f["seasonal_diff"]["drifted"] or f["short_diff"]["drifted"])
