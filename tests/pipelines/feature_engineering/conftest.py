"""Fixtures of the feature_engineering tests: shipped parameters and canonical panels built from real data."""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

CONF = Path(__file__).resolve().parents[3] / "conf" / "base"


def canonical(panel: pd.DataFrame) -> pd.DataFrame:
    """The canonical primary panel of real values that needed no imputation (both flags False)."""
    panel = panel[["series_id", "timestamp", "value"]].copy()
    panel["value"] = panel["value"].astype(float)
    panel["is_imputed"] = False
    panel["is_anomaly"] = False
    return panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True)


def prophet_example_panel(shared_data: Path, file_name: str, freq: str, series_id: str) -> pd.DataFrame:
    """A Prophet example file (``ds, y``) as a canonical panel on a regular ``freq`` grid.

    Missing days (Peyton Manning has 30 gaps) are filled by linear interpolation and flagged
    ``is_imputed``, which is what data_processing guarantees downstream.
    """
    raw = pd.read_csv(shared_data / "prophet_examples" / file_name, parse_dates=["ds"]).sort_values("ds")
    series = raw.set_index("ds")["y"].astype(float)
    grid = pd.date_range(series.index.min(), series.index.max(), freq=freq)
    regular = series.reindex(grid)
    panel = pd.DataFrame({
        "series_id": series_id,
        "timestamp": grid,
        "value": regular.interpolate().to_numpy(),
        "is_imputed": regular.isna().to_numpy(),
        "is_anomaly": False,
    })
    return panel


@pytest.fixture(scope="session")
def shipped_feature_params() -> dict:
    """``feature_engineering`` parameters exactly as shipped in conf/base."""
    return yaml.safe_load((CONF / "parameters_feature_engineering.yml").read_text())["feature_engineering"]


@pytest.fixture(scope="session")
def shipped_panel_params() -> dict:
    return yaml.safe_load((CONF / "parameters.yml").read_text())["panel"]


@pytest.fixture
def feature_params(shipped_feature_params) -> dict:
    params = copy.deepcopy(shipped_feature_params)
    params["n_jobs"] = 1  # the test machine is shared; parallelism has its own test
    return params


@pytest.fixture
def panel_params(shipped_panel_params) -> dict:
    return copy.deepcopy(shipped_panel_params)


@pytest.fixture(scope="session")
def hourly_panel(small_panel) -> pd.DataFrame:
    """Three real M4 Hourly series, 336 hours each, as a canonical panel."""
    return canonical(small_panel)


@pytest.fixture(scope="session")
def long_hourly_panel(m4_sample_panel) -> pd.DataFrame:
    """Two whole real M4 Hourly series (960 and 700 hours): long enough for weekly decomposition refits."""
    lengths = m4_sample_panel.groupby("series_id").size()
    ids = [lengths[lengths == 960].index[0], lengths[lengths == 700].index[0]]
    return canonical(m4_sample_panel[m4_sample_panel["series_id"].isin(ids)])


@pytest.fixture(scope="session")
def daily_panel(shared_data) -> pd.DataFrame:
    """Peyton Manning log daily page views (2007-12-10 .. 2016-01-20), real, regularised to 'D'."""
    return prophet_example_panel(shared_data, "example_wp_log_peyton_manning.csv", "D", "peyton_manning")


@pytest.fixture(scope="session")
def monthly_panel(shared_data) -> pd.DataFrame:
    """US retail sales (1992-01 .. 2016-05), real, month-start."""
    return prophet_example_panel(shared_data, "example_retail_sales.csv", "MS", "retail_sales")


DAILY_PANEL_PARAMS = {"freq": "D", "season_length": 7, "seasonal_periods": [7], "horizon": 14}
MONTHLY_PANEL_PARAMS = {"freq": "MS", "season_length": 12, "seasonal_periods": [12], "horizon": 12}
