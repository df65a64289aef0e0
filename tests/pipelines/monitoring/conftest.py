"""Fixtures of the monitoring tests: four real M4 Hourly series with their real continuation, and a shifted copy."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

PANEL = {"freq": "h", "season_length": 24, "seasonal_periods": [24, 168], "horizon": 48, "levels": [80, 95]}
SERIES = ["H1", "H103", "H120", "H137"]


@pytest.fixture(scope="module")
def monitoring_params(project_root):
    return yaml.safe_load((project_root / "conf" / "base" / "parameters_monitoring.yml").read_text())["monitoring"]


@pytest.fixture(scope="module")
def real_history(m4_sample_panel, shared_data) -> pd.DataFrame:
    """Four real series: training part plus the real next 48 hours, as a canonical primary panel."""
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    panel = pd.concat([m4_sample_panel[m4_sample_panel["series_id"].isin(SERIES)],
                       test[test["series_id"].isin(SERIES)]])
    panel["value"] = panel["value"].astype(float)
    panel = panel.groupby("series_id", group_keys=False).tail(400 + 48)
    return panel.assign(is_imputed=False, is_anomaly=False).sort_values(["series_id", "timestamp"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def shifted_history(real_history) -> pd.DataFrame:
    """SYNTHETIC: the last 48 hours of every series raised by one reference standard deviation."""
    shifted = real_history.copy()
    for _, rows in shifted.groupby("series_id"):
        recent = rows.index[-48:]
        shifted.loc[recent, "value"] += rows["value"].iloc[-48 - 336:-48].std()
    return shifted
