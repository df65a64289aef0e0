"""build_drift_windows on real M4 Hourly series."""
from __future__ import annotations

import pytest

from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
from ts_kedro.pipelines.monitoring.windows import build_drift_windows

from .conftest import PANEL


def test_windows_are_cut_per_series_and_feature(real_history, monitoring_params):
    reference, current = build_drift_windows(real_history, monitoring_params, PANEL)
    assert reference.shape == (336, 8) and current.shape == (48, 8)
    h1 = real_history[real_history["series_id"] == "H1"]["value"]
    assert current["H1|value"].tolist() == h1.iloc[-48:].tolist()
    assert current["H1|seasonal_diff"].iloc[0] == h1.iloc[-48] - h1.iloc[-72]
    with pytest.raises(MonitoringConfigError, match="shorten the windows"):
        build_drift_windows(real_history, {**monitoring_params, "reference_window_steps": 5000}, PANEL)
