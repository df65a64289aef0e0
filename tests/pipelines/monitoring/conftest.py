"""Fixtures of the monitoring tests: real M4 Hourly series with their real continuation, and shifted copies."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

PANEL = {"freq": "h", "season_length": 24, "seasonal_periods": [24, 168], "horizon": 48, "levels": [80, 95]}
SERIES = ["H1", "H103", "H120", "H137"]
BATCH = PANEL["horizon"]  # one Day-N batch: a horizon of new observations


@pytest.fixture(scope="module")
def monitoring_params(project_root):
    return yaml.safe_load((project_root / "conf" / "base" / "parameters_monitoring.yml").read_text())["monitoring"]


def canonical(panel: pd.DataFrame) -> pd.DataFrame:
    panel = panel.assign(value=panel["value"].astype(float), is_imputed=False, is_anomaly=False)
    return panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True)


def until_batch(history: pd.DataFrame, batches_back: int) -> pd.DataFrame:
    """Each series up to the end of the batch ``batches_back`` batches before its last one."""
    from_end = history.groupby("series_id").cumcount(ascending=False)
    return history[from_end >= batches_back * BATCH].reset_index(drop=True)


def shift_last_batch(history: pd.DataFrame, sds: float = 1.0) -> pd.DataFrame:
    """SYNTHETIC: the last batch of every series raised by ``sds`` standard deviations of its values before it
    (the level shift of benchmarks/day_n_replay.py)."""
    shifted = history.copy()
    for _, rows in shifted.groupby("series_id"):
        shifted.loc[rows.index[-BATCH:], "value"] += sds * rows["value"].iloc[:-BATCH].std()
    return shifted


@pytest.fixture(scope="module")
def real_m4_panel(m4_sample_panel, shared_data) -> pd.DataFrame:
    """The 24 shipped real series, training part plus their real next 48 hours (the M4 test part)."""
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    ids = set(m4_sample_panel["series_id"])
    return canonical(pd.concat([m4_sample_panel, test[test["series_id"].isin(ids)]]))


@pytest.fixture(scope="module")
def real_history(real_m4_panel) -> pd.DataFrame:
    """Four real series, whole history through their real next 48 hours."""
    return real_m4_panel[real_m4_panel["series_id"].isin(SERIES)].reset_index(drop=True)


@pytest.fixture(scope="module")
def shifted_history(real_history) -> pd.DataFrame:
    """SYNTHETIC: the last 48 hours of every series raised by one standard deviation."""
    return shift_last_batch(real_history)
