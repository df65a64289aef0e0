"""Proof that no feature looks ahead: perturbing the values from an origin t0 on changes no feature at t <= t0.

The panel is two whole real M4 Hourly series (960 and 700 hours). The perturbation (x100 from t0 on) is
deliberately huge, so any dependence on values at or after t0 shows up as a difference.
"""
from __future__ import annotations

import numpy as np
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


# -- origin-horizon rows of the global direct models (model_input.origin_rows, the lightgbm family's input) --------
def _origin_spec(scaling="level"):
    from ts_kedro.pipelines.feature_engineering.model_input import OriginFeatureSpec

    # the hourly profile of these series: season 24, weekly period 168, hour/weekday calendar terms
    return OriginFeatureSpec(freq="h", horizon=48, season_length=24, periods=(24, 168),  # calendar fact
                             calendar_features=("hour", "weekday"), scaling=scaling)


@pytest.mark.parametrize("scaling", ["level", "seasonal_diff"])
@pytest.mark.parametrize("t0", [200, 505, 699])
def test_origin_rows_before_t0_do_not_depend_on_values_from_t0_on(long_hourly_panel, t0, scaling):
    """Every feature (and the row's level and scale) of an origin before t0 is unchanged when values from t0 on are
    multiplied by 100; the targets of rows whose target lies at or after t0 do change (the test can fail)."""
    from ts_kedro.pipelines.feature_engineering.model_input import origin_rows, training_pairs

    spec = _origin_spec(scaling)
    perturbed_panel, _ = _perturb_from(long_hourly_panel, t0)
    for (sid, group), (_, changed) in zip(long_hourly_panel.groupby("series_id"), perturbed_panel.groupby("series_id")):
        values, altered = group["value"].to_numpy(float), changed["value"].to_numpy(float)
        stamps = pd.DatetimeIndex(group["timestamp"])
        origins, horizons = training_pairs(values.size, spec, 1.0, np.random.default_rng(0))
        before = origins < t0
        x, level, scale, targets = origin_rows(values, stamps, origins[before], horizons[before], spec)
        x2, level2, scale2, _ = origin_rows(altered, stamps, origins[before], horizons[before], spec)
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(level, level2)
        np.testing.assert_array_equal(scale, scale2)
        late = targets >= t0
        assert late.any() and (altered[targets[late]] != values[targets[late]]).all()
        # and the origin t0 itself does see the perturbation (lag_1 is the origin's value)
        at_t0 = (origins == t0) & (horizons == 1)
        if at_t0.any():
            y0, _, _, _ = origin_rows(values, stamps, origins[at_t0], horizons[at_t0], spec)
            y1, _, _, _ = origin_rows(altered, stamps, origins[at_t0], horizons[at_t0], spec)
            assert not np.allclose(y0, y1, equal_nan=True)


@pytest.mark.parametrize("scaling", ["level", "seasonal_diff"])
def test_origin_rows_are_the_same_from_a_history_cut_after_their_target(long_hourly_panel, scaling):
    """Per-origin scaling: a backtest on a truncated panel sees exactly the rows the whole history gives."""
    from ts_kedro.pipelines.feature_engineering.model_input import origin_rows, training_pairs

    spec = _origin_spec(scaling)
    group = long_hourly_panel[long_hourly_panel["series_id"] == long_hourly_panel["series_id"].iloc[0]]
    values, stamps = group["value"].to_numpy(float), pd.DatetimeIndex(group["timestamp"])
    cut = 600
    origins, horizons = training_pairs(cut, spec, 1.0, np.random.default_rng(0))
    whole = origin_rows(values, stamps, origins, horizons, spec)
    truncated = origin_rows(values[:cut], stamps[:cut], origins, horizons, spec)
    for a, b in zip(whole, truncated):
        np.testing.assert_array_equal(a, b)


def test_the_seasonal_diff_scale_is_the_mean_absolute_seasonal_difference_of_its_window():
    """Hand-checkable: m = 2, horizon 3, so the window holds the last 3 seasonal differences that exist."""
    from ts_kedro.pipelines.feature_engineering.model_input import OriginFeatureSpec, origin_rows

    spec = OriginFeatureSpec(freq="D", horizon=3, season_length=2, periods=(2,), calendar_features=(),
                             scaling="seasonal_diff")
    values = np.array([1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0])
    stamps = pd.date_range("2026-01-01", periods=values.size + 3, freq="D")
    # |y[t] - y[t-2]| for t = 2..7: 3, 6, 4, 0, 0, 0
    _, level, scale, _ = origin_rows(values, stamps, np.array([1, 2, 3, 4, 7]), np.ones(5, int), spec)
    fallback_1 = (1.0 + 2.0) / 2  # origin 1: no difference yet -> mean |y| of the last season
    np.testing.assert_allclose(scale, [fallback_1, 3.0, (3 + 6) / 2, (3 + 6 + 4) / 3, 8.0])  # o=7: zeros -> |y|
    np.testing.assert_allclose(level, [1.5, 3.0, 6.0, 8.0, 8.0])
    assert spec.scale_window == 3 and spec.history_needed == 5
