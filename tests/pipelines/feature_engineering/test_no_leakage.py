"""Proof that no feature looks ahead: perturbing the values from an origin t0 on changes no feature at t <= t0.

The panel is two whole real M4 Hourly series (960 and 700 hours). The perturbation (x100 from t0 on) is
deliberately huge, so any dependence on values at or after t0 shows up as a difference.
"""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.pipelines.feature_engineering import nodes

KEYS = ["series_id", "timestamp"]


def _all_features(panel: pd.DataFrame, spec: dict) -> pd.DataFrame:
    frames = [
        nodes.build_calendar_features(panel, spec),
        nodes.build_lag_features(panel, spec),
        nodes.build_rolling_features(panel, spec),
        nodes.build_decomposition_features(panel, spec),
    ]
    return nodes.assemble_feature_panel(panel, *frames).drop(columns=["value", "is_imputed", "is_anomaly"])


def _perturb_from(panel: pd.DataFrame, position: int) -> tuple[pd.DataFrame, pd.Series]:
    """Values at positions >= ``position`` of every series multiplied by 100; mask of rows at t <= t0."""
    step = panel.groupby("series_id").cumcount()
    perturbed = panel.copy()
    perturbed.loc[step >= position, "value"] *= 100.0
    return perturbed, step <= position


@pytest.fixture(scope="module")
def setup(long_hourly_panel, shipped_panel_params, shipped_feature_params):
    params = {**shipped_feature_params, "n_jobs": 1}
    spec = nodes.resolve_feature_spec(long_hourly_panel, shipped_panel_params, params)
    return spec, _all_features(long_hourly_panel, spec)


# 400: inside a refit block; 505: exactly a refit origin (337 + 168); 699: the last hour of the shorter series.
@pytest.mark.parametrize("t0", [400, 505, 699])
def test_no_feature_at_or_before_t0_depends_on_values_from_t0_on(long_hourly_panel, setup, t0):
    spec, original = setup
    perturbed_panel, known = _perturb_from(long_hourly_panel, t0)
    perturbed = _all_features(perturbed_panel, spec)

    pd.testing.assert_frame_equal(perturbed[known], original[known], check_exact=True)

    # The test can fail: the perturbation does reach the features right after t0.
    after = long_hourly_panel.groupby("series_id").cumcount() == t0 + 1
    if after.any():
        for column in ("lag_1", "rolling_mean_24", "rolling_max_168"):
            assert (perturbed.loc[after, column] != original.loc[after, column]).all(), column
        next_origin = long_hourly_panel.groupby("series_id").cumcount() == 337 + 168 * ((t0 - 337) // 168 + 1)
        for column in ("decomp_trend", "decomp_seasonal_24", "decomp_seasonal_168"):
            assert (perturbed.loc[next_origin, column] != original.loc[next_origin, column]).all(), column


def test_the_in_sample_decomposition_does_look_ahead(long_hourly_panel, setup):
    """Negative control: the two-sided series_decomposition changes before t0, which is why no feature uses it."""
    spec, _ = setup
    perturbed_panel, known = _perturb_from(long_hourly_panel, 505)
    original = nodes.decompose_series(long_hourly_panel, spec)
    perturbed = nodes.decompose_series(perturbed_panel, spec)
    changed = (perturbed.loc[known, "trend"] - original.loc[known, "trend"]).abs() > 1e-6
    assert changed.any()
