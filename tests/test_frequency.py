"""The frequency profile: defaults derived from panel.freq and the lengths of real panels, overrides kept."""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.frequency import (
    FrequencyError,
    candidate_periods,
    derive_profile,
    effective_season_length,
    profile_for_panel,
    season_length_for,
)


@pytest.mark.parametrize(
    ("freq", "season", "periods"),
    [
        ("15min", 96, [96.0, 672.0, 35064.0]),
        ("30min", 48, [48.0, 336.0, 17532.0]),
        ("h", 24, [24.0, 168.0, 8766.0]),
        ("2h", 12, [12.0, 84.0, 4383.0]),
        ("D", 7, [7.0, 365.25]),
        ("B", 5, [5.0, 260.89]),
        ("W-SUN", 52, [52.18]),
        ("MS", 12, [12.0]),
        ("ME", 12, [12.0]),
        ("QS", 4, [4.0]),
        ("QS-OCT", 4, [4.0]),
        ("YS", 1, []),
        ("YE", 1, []),
        # multiples whose cycles are not whole steps: the season is the fewest cycles that are
        ("2D", 7, [3.5, 182.62]),  # two weeks
        ("10h", 12, [2.4, 16.8, 876.6]),  # five days
        # business hours: the opening hours are the day (09:00-17:00), not 24 hours (was: a season of 12)
        ("bh", 8, [8.0, 40.0, 2087.14]),
        ("cbh", 8, [8.0, 40.0, 2087.14]),
        ("CBMS", 12, [12.0]),  # custom business month starts (was 11.78: measured from one January)
    ],
)
def test_every_offset_alias_gets_its_calendar_cycles(freq, season, periods):
    assert candidate_periods(freq) == periods
    assert season_length_for(freq) == season


def test_periods_the_series_cannot_cover_twice_are_dropped():
    hourly = derive_profile({"freq": "h", "horizon": 48}, lengths=[700, 960])  # M4 Hourly: 29-40 days
    assert hourly.seasonal_periods == [24.0, 168.0] and hourly.season_length == 24
    assert hourly.prophet_seasonalities == {"daily": True, "weekly": True, "yearly": False}
    daily = derive_profile({"freq": "D", "horizon": 56}, lengths=[735] * 3)  # NN5: two years
    assert daily.seasonal_periods == [7.0, 365.25] and daily.prophet_seasonalities["yearly"]
    short_daily = derive_profile({"freq": "D", "horizon": 14}, lengths=[120])
    assert short_daily.seasonal_periods == [7.0] and not short_daily.prophet_seasonalities["yearly"]
    # a monthly panel shorter than two years has no usable season
    assert derive_profile({"freq": "MS", "horizon": 6}, lengths=[20]).season_length == 1


def test_backtest_monitoring_and_lookback_defaults_follow_the_horizon_and_lengths():
    quarterly = derive_profile({"freq": "QS", "horizon": 8}, lengths=[16, 36, 44, 64])  # M3 quarterly train
    assert quarterly.backtest == {"n_windows": 2, "step": 8, "min_train": 8, "refit_every": 1}
    assert quarterly.monitoring == {"recent_window_steps": 8, "reference_window_steps": 16,
                                    "seasonal_lag_steps": 8, "calibration_stride_steps": 4}
    # the lookback fits a typical series after the validation target and the older backtest origin
    assert quarterly.lstm_input_size % quarterly.season_length == 0
    assert quarterly.lstm_input_size <= 40 - 2 * 8 - 8
    hourly = derive_profile({"freq": "h", "horizon": 48}, lengths=[700, 960])
    assert hourly.lstm_input_size == 336 and hourly.monitoring["reference_window_steps"] == 96
    assert hourly.monitoring["seasonal_lag_steps"] == 168  # a week back: past the recent 48 hours
    assert hourly.backtest["step"] == 48 and hourly.validation_horizon == 48
    yearly = derive_profile({"freq": "YS", "horizon": 6}, lengths=[14, 20, 41])
    assert yearly.season_length == 1 and yearly.lstm_input_size >= 1 and yearly.backtest["min_train"] >= 3


def test_a_short_horizon_gets_origins_across_a_season_and_still_two_fits():
    """With a one-step horizon two origins would be the last two steps of a day (hourly) or a week (daily):
    the derived count spans a season, scores 1/(1-L) steps at the lowest level, and keeps two fits per family."""
    levels = [80, 95]
    hourly = derive_profile({"freq": "h", "horizon": 1, "levels": levels}, lengths=[700, 960])
    assert hourly.backtest == {"n_windows": hourly.season_length, "step": 1, "min_train": 2 * hourly.season_length,
                               "refit_every": hourly.season_length // 2}
    daily = derive_profile({"freq": "D", "horizon": 1, "levels": levels}, lengths=[735])
    assert daily.backtest["n_windows"] == 7 and daily.backtest["refit_every"] == 4  # two fits: windows 0 and 4
    yearly = derive_profile({"freq": "YS", "horizon": 1, "levels": levels}, lengths=[30])  # no season: 5 steps at 80 %
    assert yearly.backtest["n_windows"] == 5 and yearly.backtest["refit_every"] == 3
    assert derive_profile({"freq": "YS", "horizon": 1, "levels": [90]}, lengths=[30]).backtest["n_windows"] == 10
    # a horizon as long as the season keeps the two origins and a fit per origin
    for freq, horizon in (("h", 48), ("D", 56), ("MS", 18), ("QS", 8), ("YS", 6)):
        profile = derive_profile({"freq": freq, "horizon": horizon, "levels": levels}, lengths=[200] * 3)
        assert (profile.backtest["n_windows"], profile.backtest["refit_every"]) == (2, 1), freq
    # bounded by what a typical series affords after min_train (weekly, 52 origins wanted)
    weekly = derive_profile({"freq": "W-SUN", "horizon": 1, "levels": levels}, lengths=[120, 130, 140])
    assert weekly.backtest["n_windows"] == 1 + (130 - weekly.backtest["min_train"] - 1)
    # configured values win; refit_every alone may be set (1: fit at every origin)
    configured = derive_profile({"freq": "h", "horizon": 1, "levels": levels}, lengths=[700],
                                backtest_params={"n_windows": 6, "refit_every": 1})
    assert configured.backtest["n_windows"] == 6 and configured.backtest["refit_every"] == 1
    with pytest.raises(FrequencyError, match="backtest.refit_every"):
        derive_profile({"freq": "h", "horizon": 1}, backtest_params={"refit_every": 0})


def test_configured_values_override_and_null_means_derived():
    profile = derive_profile(
        {"freq": "h", "horizon": 24, "season_length": 12, "seasonal_periods": [12, 84], "lstm_input_size": 96,
         "validation_horizon": None},
        lengths=[500], backtest_params={"n_windows": 3, "step": 6, "min_train": None},
        monitoring_params={"recent_window_steps": 10, "reference_window_steps": None},
    )
    assert profile.season_length == 12 and profile.seasonal_periods == [12.0, 84.0]
    assert profile.lstm_input_size == 96 and profile.validation_horizon == 24
    assert profile.backtest["n_windows"] == 3 and profile.backtest["step"] == 6
    assert profile.monitoring["recent_window_steps"] == 10
    defaults = profile.forecaster_defaults()
    assert defaults["seasonal_periods"] == [12.0, 84.0] and defaults["input_size"] == 96 and defaults["horizon"] == 24


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"horizon": 8}, "panel.freq is missing"),
        ({"freq": "fortnightly", "horizon": 8}, "not a pandas offset alias"),
        ({"freq": "QS"}, "panel.horizon is missing"),
        ({"freq": "QS", "horizon": 2.5}, "panel.horizon must be a positive integer"),
        ({"freq": "QS", "horizon": 8, "season_length": 0}, "panel.season_length"),
    ],
)
def test_bad_parameters_name_the_key(params, message):
    with pytest.raises(FrequencyError, match=message):
        derive_profile(params, lengths=[40])


def test_effective_season_of_a_short_series():
    assert effective_season_length(30, 12) == 12 and effective_season_length(23, 12) == 1


def test_profile_of_a_real_quarterly_panel(shared_data):
    train = pd.read_csv(shared_data / "m3" / "M3_quarterly_train_long.csv", parse_dates=["timestamp"])
    profile = profile_for_panel(train, {"freq": "QS", "horizon": 8, "levels": [80, 95]})
    assert profile.season_length == 4 and profile.seasonal_periods == [4.0]
    assert profile.lengths["min"] == 16 and profile.lengths["n_series"] == 756
    assert profile.as_panel_params()["levels"] == [80, 95]


def test_the_drift_windows_fit_a_typical_series_as_the_history_grows():
    """NN5 after two years of Day-N cycles keeps the yearly period. The reference window is two horizons; the
    seasonal difference goes 52 weeks back once a typical series affords that lag and its calibration windows,
    and a week-multiple reaching past the recent window before that (a lag of 365 days would not keep weekdays)."""
    young = derive_profile({"freq": "D", "horizon": 56}, lengths=[600] * 10)
    assert young.monitoring == {"recent_window_steps": 56, "reference_window_steps": 112,
                                "seasonal_lag_steps": 56, "calibration_stride_steps": 28}
    grown = derive_profile({"freq": "D", "horizon": 56}, lengths=[740] * 10)
    assert 365.25 in grown.seasonal_periods
    assert grown.monitoring["seasonal_lag_steps"] == 364 and grown.monitoring["reference_window_steps"] == 112
    m = grown.monitoring
    assert m["seasonal_lag_steps"] + m["reference_window_steps"] + m["recent_window_steps"] \
        + 5 * m["calibration_stride_steps"] <= 740  # room for five calibration windows
    # a short yearly panel: never more than a typical series has before its recent window
    short = derive_profile({"freq": "YS", "horizon": 6}, lengths=[14, 20, 41])
    assert short.monitoring == {"recent_window_steps": 6, "reference_window_steps": 12,
                                "seasonal_lag_steps": 6, "calibration_stride_steps": 3}
    tiny = derive_profile({"freq": "MS", "horizon": 18}, lengths=[30])
    assert tiny.monitoring["reference_window_steps"] == 12  # capped to what precedes the recent window


def test_monitoring_windows_can_be_set():
    profile = derive_profile({"freq": "h", "horizon": 48}, lengths=[700],
                             monitoring_params={"seasonal_lag_steps": 24, "calibration_stride_steps": 12})
    assert profile.monitoring["seasonal_lag_steps"] == 24 and profile.monitoring["calibration_stride_steps"] == 12
    with pytest.raises(FrequencyError, match="monitoring.seasonal_lag_steps"):
        derive_profile({"freq": "h", "horizon": 48}, monitoring_params={"seasonal_lag_steps": 0})


def test_a_season_is_a_whole_number_of_steps():
    from ts_kedro.frequency import derive_profile, whole_season

    # within 1 % of whole: rounded, as everyone does (weekly data's year, daily data's year)
    assert (whole_season(52.18), whole_season(365.25), whole_season(260.89)) == (52, 365, 261)
    # not whole: the fewest cycles that are (3.5 -> 7; rounding gave 4, comparing days 8 apart)
    assert (whole_season(3.5), whole_season(2.4), whole_season(16.8), whole_season(4.8)) == (7, 12, 84, 24)
    assert whole_season(2.1234) == 2  # no multiple up to 7 is whole: rounded
    profile = derive_profile({"freq": "2D", "horizon": 7}, lengths=[400])
    assert profile.season_length == 7 and profile.integer_periods == [7, 183]



def test_business_hours_count_the_opening_hours_of_each_span():
    """A split day (09:00-12:00 and 13:00-17:00: 7 hours) and a night shift (22:00-06:00: 8 hours)."""
    split = pd.offsets.BusinessHour(start=["09:00", "13:00"], end=["12:00", "17:00"])
    night = pd.offsets.BusinessHour(start="22:00", end="06:00")
    from ts_kedro.frequency import _steps_per

    assert _steps_per(split)["day"] == 7 and _steps_per(split)["week"] == 35
    assert _steps_per(night)["day"] == 8
