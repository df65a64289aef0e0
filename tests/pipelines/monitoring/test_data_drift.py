"""detect_data_drift + summarise_drift: no drift on the real next 48 hours, drift on a synthetic level shift."""
from __future__ import annotations

from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.verdict import summarise_drift
from ts_kedro.pipelines.monitoring.windows import build_drift_windows

from .conftest import PANEL, SERIES


def test_real_continuation_no_drift_and_injected_level_shift_drifts(real_history, shifted_history, monitoring_params):
    no_performance = {"available": False, "reason": "none"}
    real = summarise_drift(detect_data_drift(*build_drift_windows(real_history, monitoring_params, PANEL),
                                             monitoring_params)[0], no_performance, monitoring_params)
    assert real["drift"] is False and real["drift_share"] <= 0.5, real
    shifted_drift, html, snapshots = detect_data_drift(*build_drift_windows(shifted_history, monitoring_params, PANEL),
                                                       monitoring_params)
    shifted = summarise_drift(shifted_drift, no_performance, monitoring_params)
    assert shifted["drift"] is True and shifted["drifted_series"] == sorted(SERIES)
    assert shifted["reasons"][0].startswith("data drift: 4 of 4 series")
    assert "<html" in html.lower() and set(snapshots) == {"series_drift", "panel_drift"}
