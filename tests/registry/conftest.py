"""Fixtures for the registry tests: a real panel model on real M4 series."""
from __future__ import annotations

import pytest

from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.registry import SelectedPanelModel


@pytest.fixture(scope="module")
def naive_panel_model(m4_sample_panel) -> SelectedPanelModel:
    """Three real M4 Hourly series routed to a daily and a weekly seasonal naive and to their median.

    Both families are the real ``SeasonalNaive`` (season 24 and 168), so a fresh serving process can
    unpickle them from the ts_kedro code shipped with the model.
    """
    ids = sorted(m4_sample_panel["series_id"].unique())[:3]
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)].groupby("series_id").tail(24 * 28)
    daily = SeasonalNaive(freq="h", season_length=24).fit(panel)
    weekly = SeasonalNaive(freq="h", season_length=168).fit(panel)
    return SelectedPanelModel(
        {"daily_naive": daily, "weekly_naive": weekly},
        choice={ids[0]: "daily_naive", ids[1]: "weekly_naive", ids[2]: "ensemble"},
        ensemble_members=["daily_naive", "weekly_naive"],
        levels=[80, 95],
        max_horizon=48,
        metadata={"selection_metric": "smape", "data_window_end": str(panel["timestamp"].max())},
    )
