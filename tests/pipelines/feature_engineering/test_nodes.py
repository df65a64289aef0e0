"""Unit tests of every feature_engineering node on real M4 Hourly, Peyton Manning (daily) and retail (monthly) data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.seasonal import MSTL

from ts_kedro.pipelines.feature_engineering import nodes
from ts_kedro.pipelines.feature_engineering.calendar import CalendarFeatureError
from ts_kedro.pipelines.feature_engineering.decomposition import fit_components
from ts_kedro.pipelines.feature_engineering.nodes import FeatureEngineeringError

from .conftest import DAILY_PANEL_PARAMS, MONTHLY_PANEL_PARAMS

KEYS = ["series_id", "timestamp"]
EXACT_STL = {"seasonal_jump": 1, "trend_jump": 1, "low_pass_jump": 1}


@pytest.fixture
def hourly_spec(hourly_panel, panel_params, feature_params):
    return nodes.resolve_feature_spec(hourly_panel, panel_params, feature_params)


@pytest.fixture
def long_spec(long_hourly_panel, panel_params, feature_params):
    return nodes.resolve_feature_spec(long_hourly_panel, panel_params, feature_params)


# -- resolve_feature_spec ------------------------------------------------------------------------


def test_spec_defaults_are_derived_from_the_panel_parameters(hourly_spec):
    assert hourly_spec["lags"] == [1, 24, 168]
    assert hourly_spec["rolling"] == {"windows": [24, 168], "stats": ["mean", "std", "min", "max"]}
    assert hourly_spec["decomposition"]["periods"] == [24, 168]
    assert hourly_spec["decomposition"]["min_history"] == 337  # STL needs more than two weekly cycles
    assert hourly_spec["decomposition"]["refit_every"] == 168
    json.dumps(hourly_spec)  # it is written into the JSON manifest


def test_spec_for_monthly_data_derives_monthly_lags_and_windows(monthly_panel, feature_params):
    spec = nodes.resolve_feature_spec(monthly_panel, MONTHLY_PANEL_PARAMS, feature_params)
    assert spec["lags"] == [1, 12]
    assert spec["rolling"]["windows"] == [12]
    assert spec["decomposition"] == {"periods": [12], "min_history": 25, "refit_every": 12, "stl_kwargs": {}}


def test_empty_lists_turn_a_feature_kind_off(long_hourly_panel, panel_params, feature_params):
    feature_params.update(lags=[], rolling={"windows": [], "stats": ["mean"]}, decomposition={"periods": []})
    spec = nodes.resolve_feature_spec(long_hourly_panel, panel_params, feature_params)
    frames = [
        nodes.build_calendar_features(long_hourly_panel, spec),
        nodes.build_lag_features(long_hourly_panel, spec),
        nodes.build_rolling_features(long_hourly_panel, spec),
        nodes.build_decomposition_features(long_hourly_panel, spec),
    ]
    manifest = nodes.build_feature_manifest(spec, *frames)
    assert manifest["groups"]["lag"] == manifest["groups"]["rolling"] == manifest["groups"]["decomposition"] == []
    feature_panel = nodes.assemble_feature_panel(long_hourly_panel, *frames)
    assert list(feature_panel.columns) == [*long_hourly_panel.columns, *manifest["groups"]["calendar"]]


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("lags", [0, 24], "lags must be a list of integers >= 1"),
        ("lags", [1.5], "lags must be a list of integers >= 1"),
        ("rolling", {"windows": [24], "stats": ["median"]}, "rolling.stats"),
        ("rolling", {"windows": [1, 24], "stats": ["std"]}, "window of at least 2"),
        ("decomposition", {"min_history": 300}, "min_history=300 is too short"),
        ("decomposition", {"refit_every": 0}, "refit_every must be an integer >= 1"),
        ("calendar", {"features": ["hour", "fortnight"]}, "unknown calendar feature"),
        ("calendar", {"encoding": "onehot"}, "encoding is 'onehot'"),
    ],
)
def test_spec_rejects_bad_parameters_naming_the_key(hourly_panel, panel_params, feature_params, section, value, message):
    feature_params[section] = value
    with pytest.raises((FeatureEngineeringError, CalendarFeatureError), match=message):
        nodes.resolve_feature_spec(hourly_panel, panel_params, feature_params)


def test_spec_rejects_a_panel_with_nan_values(hourly_panel, panel_params, feature_params):
    panel = hourly_panel.copy()
    panel.loc[10, "value"] = np.nan
    with pytest.raises(FeatureEngineeringError, match=r"value is NaN in 1 row\(s\), first series 'H1'"):
        nodes.resolve_feature_spec(panel, panel_params, feature_params)


def test_spec_rejects_a_gap_in_the_grid(hourly_panel, panel_params, feature_params):
    panel = hourly_panel.drop(index=50).reset_index(drop=True)
    with pytest.raises(FeatureEngineeringError, match="not on a regular 'h' grid"):
        nodes.resolve_feature_spec(panel, panel_params, feature_params)


def test_spec_rejects_a_frequency_that_does_not_match_the_data(daily_panel, panel_params, feature_params):
    with pytest.raises(FeatureEngineeringError, match="panel.freq in conf/base/parameters.yml must match"):
        nodes.resolve_feature_spec(daily_panel, panel_params, feature_params)  # hourly params, daily data


def test_spec_rejects_interleaved_series_and_missing_columns(hourly_panel, panel_params, feature_params):
    shuffled = pd.concat([hourly_panel.iloc[:100], hourly_panel.iloc[400:500], hourly_panel.iloc[100:400]])
    with pytest.raises(FeatureEngineeringError, match="not contiguous"):
        nodes.resolve_feature_spec(shuffled.reset_index(drop=True), panel_params, feature_params)
    with pytest.raises(FeatureEngineeringError, match=r"column\(s\) \['value'\] missing"):
        nodes.resolve_feature_spec(hourly_panel.drop(columns="value"), panel_params, feature_params)


# -- build_calendar_features -----------------------------------------------------------------------


def _calendar_base_names(panel, panel_params, feature_params) -> list[str]:
    return nodes.resolve_feature_spec(panel, panel_params, feature_params)["calendar"]["features"]


def test_calendar_features_depend_on_frequency_and_span(
    hourly_panel, daily_panel, monthly_panel, panel_params, feature_params
):
    # 14 days of hourly data: hour and weekday; a yearly cycle cannot be learnt from two weeks.
    assert _calendar_base_names(hourly_panel, panel_params, feature_params) == ["hour", "weekday"]
    # 8 years of daily data: weekday plus the monthly and yearly cycles; no hour (constant in daily data).
    assert _calendar_base_names(daily_panel, DAILY_PANEL_PARAMS, feature_params) == [
        "weekday", "day_of_month", "month", "day_of_year"]
    # 24 years of monthly data: month of year only.
    assert _calendar_base_names(monthly_panel, MONTHLY_PANEL_PARAMS, feature_params) == ["month"]


def test_hourly_with_a_long_span_gains_the_yearly_features(m4_sample_panel, panel_params, feature_params):
    feature_params["calendar"]["min_cycles"] = 0.05  # 29 days >= 0.05 year (18 days)
    panel = m4_sample_panel[m4_sample_panel["series_id"] == "H1"].assign(is_imputed=False, is_anomaly=False)
    assert _calendar_base_names(panel, panel_params, feature_params) == ["hour", "weekday", "month", "day_of_year"]


def test_calendar_cyclic_and_ordinal_values(hourly_panel, hourly_spec):
    features = nodes.build_calendar_features(hourly_panel, hourly_spec)
    assert list(features.columns) == [*KEYS, "hour_sin", "hour_cos", "weekday_sin", "weekday_cos"]
    six_am = features["timestamp"].dt.hour == 6
    assert np.allclose(features.loc[six_am, "hour_sin"], 1.0) and np.allclose(features.loc[six_am, "hour_cos"], 0.0)
    assert np.allclose(features["hour_sin"] ** 2 + features["hour_cos"] ** 2, 1.0)

    hourly_spec["calendar"]["encoding"] = "both"
    both = nodes.build_calendar_features(hourly_panel, hourly_spec)
    assert (both["hour"] == both["timestamp"].dt.hour).all()
    assert (both["weekday"] == both["timestamp"].dt.dayofweek).all()


def test_daily_calendar_handles_leap_years_and_month_lengths(daily_panel, feature_params):
    spec = nodes.resolve_feature_spec(daily_panel, DAILY_PANEL_PARAMS, feature_params)
    features = nodes.build_calendar_features(daily_panel, spec)
    stamps = features["timestamp"]
    # The first day of every month and year sits at angle 0, whatever the month/year length.
    assert np.allclose(features.loc[stamps.dt.day == 1, "day_of_month_sin"], 0.0)
    assert np.allclose(features.loc[stamps.dt.dayofyear == 1, "day_of_year_cos"], 1.0)
    # 31 December of a leap year is one step before the new year's angle, not past it.
    leap_end = features.loc[stamps == "2012-12-31", "day_of_year_sin"].item()
    assert leap_end == pytest.approx(np.sin(2 * np.pi * 365 / 366))


def test_holidays_are_off_by_default_and_flag_dates_when_a_country_is_set(daily_panel, feature_params):
    spec = nodes.resolve_feature_spec(daily_panel, DAILY_PANEL_PARAMS, feature_params)
    assert "is_holiday" not in nodes.build_calendar_features(daily_panel, spec).columns

    spec["calendar"]["holidays_country"] = "US"
    features = nodes.build_calendar_features(daily_panel, spec).set_index("timestamp")["is_holiday"]
    assert features["2008-12-25"] == 1.0 and features["2014-07-04"] == 1.0
    assert features["2014-07-08"] == 0.0
    assert 8 * 10 <= features.sum() <= 8 * 12  # about ten to eleven US federal holidays a year

    spec["calendar"]["holidays_country"] = "Atlantis"
    with pytest.raises(CalendarFeatureError, match="holidays_country='Atlantis'"):
        nodes.build_calendar_features(daily_panel, spec)


# -- build_lag_features ----------------------------------------------------------------------------


def test_lags_shift_within_each_series_and_leave_nan_warmup_rows(hourly_panel, hourly_spec):
    lags = nodes.build_lag_features(hourly_panel, hourly_spec)
    assert list(lags.columns) == [*KEYS, "lag_1", "lag_24", "lag_168"]
    assert len(lags) == len(hourly_panel)  # no row dropped
    for _, rows in hourly_panel.groupby("series_id"):
        values = rows["value"].to_numpy()
        series_lags = lags.loc[rows.index]
        for k in (1, 24, 168):
            assert series_lags[f"lag_{k}"].iloc[:k].isna().all()  # never the previous series' values
            assert np.array_equal(series_lags[f"lag_{k}"].iloc[k:].to_numpy(), values[:-k])


# -- build_rolling_features ------------------------------------------------------------------------


def test_rolling_statistics_cover_the_window_before_t(hourly_panel, hourly_spec):
    rolling = nodes.build_rolling_features(hourly_panel, hourly_spec)
    assert [c for c in rolling.columns if c not in KEYS] == [
        f"rolling_{stat}_{w}" for w in (24, 168) for stat in ("mean", "std", "min", "max")]
    rows = hourly_panel.index[hourly_panel["series_id"] == hourly_panel["series_id"].unique()[1]]
    values = hourly_panel.loc[rows, "value"].to_numpy()
    series = rolling.loc[rows].reset_index(drop=True)
    assert series.loc[:24, "rolling_mean_24"].isna().sum() == 24  # rows 0..23 lack a full window
    for t in (24, 100, 335):
        window = values[t - 24:t]  # the 24 values strictly before t
        assert series.loc[t, "rolling_mean_24"] == pytest.approx(window.mean())
        assert series.loc[t, "rolling_std_24"] == pytest.approx(window.std(ddof=1))
        assert series.loc[t, "rolling_min_24"] == window.min()
        assert series.loc[t, "rolling_max_24"] == window.max()
    assert series.loc[168, "rolling_max_168"] == values[:168].max()


# -- decomposition ---------------------------------------------------------------------------------


def test_fit_components_is_statsmodels_mstl_and_default_jumps_stay_close(long_hourly_panel):
    values = long_hourly_panel.loc[long_hourly_panel["series_id"] == long_hourly_panel["series_id"].iloc[0], "value"]
    values = values.to_numpy()
    reference = MSTL(values, periods=(24, 168)).fit()
    trend, seasonal, resid = fit_components(values, [24, 168], EXACT_STL)
    assert np.allclose(trend, reference.trend) and np.allclose(seasonal, reference.seasonal)
    assert np.allclose(resid, reference.resid)

    fast_trend, fast_seasonal, _ = fit_components(values, [24, 168])
    # R's default jumps: differences far below the residual noise of the series.
    assert np.abs(fast_seasonal - seasonal).max() < 0.2 * reference.resid.std()
    assert np.abs(fast_trend - trend).max() < 0.2 * reference.resid.std()


def test_decomposition_features_come_from_fits_on_the_past_only(long_hourly_panel, long_spec):
    features = nodes.build_decomposition_features(long_hourly_panel, long_spec)
    assert [c for c in features.columns if c not in KEYS] == [
        "decomp_trend", "decomp_seasonal_24", "decomp_seasonal_168"]
    first = long_hourly_panel["series_id"] == long_hourly_panel["series_id"].iloc[0]
    values = long_hourly_panel.loc[first, "value"].to_numpy()
    series = features.loc[first].reset_index(drop=True)
    assert series.iloc[:337, 2:].isna().all().all() and series.iloc[337:, 2:].notna().all().all()

    origin = 337 + 168  # the second refit origin
    trend, seasonal, _ = fit_components(values[:origin], [24, 168])
    block = series.iloc[origin:origin + 168]
    assert np.allclose(block["decomp_trend"], trend[-1])
    # Same phase one cycle back inside the fitted history.
    assert block["decomp_seasonal_24"].iloc[0] == pytest.approx(seasonal[origin - 24, 0])
    assert block["decomp_seasonal_24"].iloc[30] == pytest.approx(seasonal[origin + 30 - 48, 0])
    assert block["decomp_seasonal_168"].iloc[167] == pytest.approx(seasonal[origin - 1, 1])


def test_decomposition_features_are_nan_for_series_shorter_than_min_history(hourly_panel, hourly_spec):
    features = nodes.build_decomposition_features(hourly_panel, hourly_spec)  # 336 hours < 337
    assert features.drop(columns=KEYS).isna().all().all()


def test_decompose_series_is_additive_and_marks_too_short_periods(long_hourly_panel, long_spec):
    # Synthetic edge case made from real values: one series cut to 300 hours, too short for 2 x 168.
    cut = long_hourly_panel.groupby("series_id").head(300).reset_index(drop=True)
    decomposition = nodes.decompose_series(cut, long_spec)
    assert list(decomposition.columns) == [*KEYS, "trend", "seasonal_24", "seasonal_168", "resid"]
    assert decomposition["seasonal_168"].isna().all() and decomposition["seasonal_24"].notna().all()
    total = decomposition["trend"] + decomposition["seasonal_24"] + decomposition["resid"]
    assert np.allclose(total, cut["value"])

    full = nodes.decompose_series(long_hourly_panel, long_spec)
    assert full.drop(columns=KEYS).notna().all().all()
    parts = full["trend"] + full["seasonal_24"] + full["seasonal_168"] + full["resid"]
    assert np.allclose(parts, long_hourly_panel["value"])


def test_parallel_decomposition_equals_sequential(long_hourly_panel, long_spec, caplog):
    caplog.set_level("INFO")
    sequential = nodes.build_decomposition_features(long_hourly_panel, long_spec)
    parallel = nodes.build_decomposition_features(long_hourly_panel, {**long_spec, "n_jobs": 2, "parallel_min_series": 1})
    pd.testing.assert_frame_equal(sequential, parallel)
    assert "causal decomposition features: 2 series in" in caplog.text and "(n_jobs=2)" in caplog.text

    # Two series are below the shipped parallel_min_series: no worker processes are started for them.
    caplog.clear()
    nodes.build_decomposition_features(long_hourly_panel, {**long_spec, "n_jobs": 2})
    assert "(n_jobs=1)" in caplog.text and "(n_jobs=2)" not in caplog.text


# -- assemble_feature_panel and build_feature_manifest ---------------------------------------------


def _feature_frames(panel, spec):
    return [
        nodes.build_calendar_features(panel, spec),
        nodes.build_lag_features(panel, spec),
        nodes.build_rolling_features(panel, spec),
        nodes.build_decomposition_features(panel, spec),
    ]


def test_assemble_keeps_every_row_and_input_column(hourly_panel, hourly_spec):
    panel = hourly_panel.assign(temperature=np.arange(len(hourly_panel), dtype=float))  # a covariate
    frames = _feature_frames(panel, hourly_spec)
    feature_panel = nodes.assemble_feature_panel(panel, *frames)
    assert len(feature_panel) == len(panel)
    assert list(feature_panel.columns[:6]) == [*KEYS, "value", "is_imputed", "is_anomaly", "temperature"]
    pd.testing.assert_frame_equal(feature_panel[panel.columns], panel)
    assert feature_panel.shape[1] == 6 + 4 + 3 + 8 + 3


def test_assemble_refuses_misaligned_or_clashing_features(hourly_panel, hourly_spec):
    frames = _feature_frames(hourly_panel, hourly_spec)
    reordered = frames[1].sample(frac=1.0, random_state=0)
    with pytest.raises(FeatureEngineeringError, match="lag features are not row-aligned"):
        nodes.assemble_feature_panel(hourly_panel, frames[0], reordered, *frames[2:])
    clashing = hourly_panel.assign(lag_1=0.0)
    with pytest.raises(FeatureEngineeringError, match=r"\['lag_1'\] clash"):
        nodes.assemble_feature_panel(clashing, *frames)


def test_manifest_groups_features_by_kind_and_counts_warmup_rows(hourly_panel, hourly_spec):
    frames = _feature_frames(hourly_panel, hourly_spec)
    manifest = nodes.build_feature_manifest(hourly_spec, *frames)
    assert manifest["groups"] == {
        "calendar": ["hour_sin", "hour_cos", "weekday_sin", "weekday_cos"],
        "lag": ["lag_1", "lag_24", "lag_168"],
        "rolling": [f"rolling_{s}_{w}" for w in (24, 168) for s in ("mean", "std", "min", "max")],
        "decomposition": ["decomp_trend", "decomp_seasonal_24", "decomp_seasonal_168"],
    }
    assert manifest["features"] == [c for group in manifest["groups"].values() for c in group]
    n_series = hourly_panel["series_id"].nunique()
    assert manifest["nan_rows"] == {"calendar": 0, "lag": 168 * n_series, "rolling": 168 * n_series,
                                    "decomposition": len(hourly_panel)}
    assert json.loads(json.dumps(manifest)) == manifest


def test_spec_for_yearly_data_has_no_one_step_window(shared_data, feature_params):
    """Real M3 yearly series: no season (m = 1), so derived windows and lags must still be usable."""
    panel = pd.read_csv(shared_data / "m3" / "M3_yearly_train_long.csv", parse_dates=["timestamp"])
    panel = panel[panel["series_id"].isin(panel["series_id"].unique()[:5])].assign(is_imputed=False, is_anomaly=False)
    spec = nodes.resolve_feature_spec(panel, {"freq": "YS", "horizon": 6}, feature_params)
    assert min(spec["rolling"]["windows"]) >= 2 and spec["lags"][0] == 1
