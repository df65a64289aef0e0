"""build_drift_windows on real M4 Hourly series: windows and seasonal lag from the frequency profile."""
from __future__ import annotations

import pytest

from ts_kedro.frequency import profile_for_panel
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
from ts_kedro.pipelines.monitoring.windows import build_drift_windows

from .conftest import PANEL


def test_windows_are_cut_per_series_and_feature(real_history, monitoring_params):
    reference, current = build_drift_windows(real_history, monitoring_params, PANEL)
    windows = profile_for_panel(real_history, PANEL, monitoring_params=monitoring_params).monitoring
    recent, lag = windows["recent_window_steps"], windows["seasonal_lag_steps"]
    # hourly, 748 hours: two horizons of reference, the seasonal difference a week back (past the recent window)
    assert (recent, windows["reference_window_steps"], lag) == (PANEL["horizon"], 2 * PANEL["horizon"], 7 * 24)
    # four series x (value, seasonal difference, short difference at one season)
    assert reference.shape == (2 * recent, 12) and current.shape == (recent, 12)
    h1 = real_history[real_history["series_id"] == "H1"]["value"]
    assert current["H1|value"].tolist() == h1.iloc[-recent:].tolist()
    assert current["H1|seasonal_diff"].iloc[0] == h1.iloc[-recent] - h1.iloc[-recent - lag]
    assert current["H1|seasonal_diff"].iloc[-1] == h1.iloc[-1] - h1.iloc[-1 - lag]
    assert current["H1|short_diff"].iloc[-1] == h1.iloc[-1] - h1.iloc[-1 - 24]



def test_a_history_too_short_for_the_windows_is_not_checked_and_the_cycle_goes_on(real_history, monitoring_params,
                                                                                  caplog):
    """No series longer than the windows (a young panel, or windows set too long): empty windows and a warning, so
    Day N still reaches inference; the drift node then reports the check as not run, with no drift."""
    from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
    from ts_kedro.pipelines.monitoring.verdict import summarise_drift

    too_long = {**monitoring_params, "reference_window_steps": 5000}
    with caplog.at_level("WARNING"):
        reference, current = build_drift_windows(real_history, too_long, PANEL)
    assert reference.empty and current.empty
    assert "data drift not checked" in caplog.text and "shorten the windows" in caplog.text
    data_drift, html, snapshots = detect_data_drift(reference, current, {"windows": None}, too_long)
    assert data_drift["n_series"] == 0 and data_drift["drift_share"] == 0.0 and snapshots == {}
    assert "not checked" in data_drift["not_checked"] and "not checked" in html
    verdict = summarise_drift(data_drift, {"available": False}, too_long)
    assert verdict["drift"] is False and "not checked" in verdict["data_drift_not_checked"]
    with pytest.raises(MonitoringConfigError, match=">= 2"):
        build_drift_windows(real_history, {**monitoring_params, "reference_window_steps": 1}, PANEL)


def test_imputed_points_are_not_observations(real_history, monitoring_params):
    history = real_history.copy()
    last = history.index[history["series_id"] == "H1"][-1]
    history.loc[last, "is_imputed"] = True
    reference, current = build_drift_windows(history, monitoring_params, PANEL)
    assert current["H1|value"].isna().tolist()[-1] and current["H1|seasonal_diff"].isna().tolist()[-1]
    assert current["H103|value"].notna().all()


def test_series_ids_holding_the_separator_keep_their_features(real_history, monitoring_params):
    """A composite id such as 'store|item' (the drift columns are '<series_id>|<feature>'): split at the last
    separator, every series keeps its own features and the same verdict as under a plain id."""
    from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
    from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift

    def drift(history):
        reference, current = build_drift_windows(history, monitoring_params, PANEL)
        thresholds = calibrate_drift_thresholds(history, monitoring_params, PANEL)
        return detect_data_drift(reference, current, thresholds, monitoring_params)[0]

    piped = real_history.assign(series_id=real_history["series_id"].map(lambda sid: f"store|{sid}"))
    plain, composite = drift(real_history), drift(piped)
    assert sorted(composite["series"]) == sorted(f"store|{sid}" for sid in plain["series"])
    for sid, features in plain["series"].items():
        assert set(composite["series"][f"store|{sid}"]) == set(features) == {"value", "seasonal_diff", "short_diff"}
        assert {f: e["score"] for f, e in composite["series"][f"store|{sid}"].items()} == pytest.approx(
            {f: e["score"] for f, e in features.items()})
    assert composite["drifted_series"] == [f"store|{sid}" for sid in plain["drifted_series"]]
