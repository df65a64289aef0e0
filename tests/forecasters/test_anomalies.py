"""Fitting around flagged anomalies (forecasters/anomalies.py): which runs are imputed, with what, and what it does
to a seasonal forecast on the real weekly us_gasoline series, whose spring-2020 collapse data_processing flags."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import ForecasterError, build_forecaster
from ts_kedro.forecasters.anomalies import closed_runs, fill_series, impute_closed_anomalies
from ts_kedro.pipelines.data_processing.cleaning import anomaly_scores

GASOLINE = Path(__file__).resolve().parents[1] / "data" / "samples" / "us_gasoline_weekly.csv"
HORIZON = 13


def test_a_run_is_closed_when_as_many_unflagged_points_follow_it():
    flags = np.array([0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0], dtype=bool)
    # [1, 3): 2 flagged, 6 unflagged after -> closed; [6, 7): 1 flagged, 2 unflagged after -> closed;
    # [8, 10): 2 flagged, 1 unflagged after -> open (it may be a new level)
    expected = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    np.testing.assert_array_equal(closed_runs(flags), expected)
    assert not closed_runs(np.zeros(5, dtype=bool)).any()
    assert not closed_runs(np.array([0, 0, 1], dtype=bool)).any()  # a flagged last point is never imputed


def test_without_a_season_the_fill_is_linear_and_other_points_are_untouched():
    values = np.array([1.0, 2.0, 50.0, 60.0, 5.0, 6.0, 7.0])
    mask = np.array([0, 0, 1, 1, 0, 0, 0], dtype=bool)
    filled = fill_series(values, mask, season_length=1)
    np.testing.assert_allclose(filled, [1, 2, 3, 4, 5, 6, 7])


def test_with_a_season_the_fill_keeps_the_seasonal_shape():
    # synthetic: a clean period-4 pattern on a slope, two points of one cycle overwritten
    t = np.arange(40, dtype=float)
    clean = 0.5 * t + np.tile([10.0, -5.0, 3.0, -8.0], 10)
    spoiled = clean.copy()
    spoiled[21:23] = [-100.0, -120.0]
    mask = np.zeros(40, dtype=bool)
    mask[21:23] = True
    filled = fill_series(spoiled, mask, season_length=4)
    np.testing.assert_allclose(filled[21:23], clean[21:23], atol=1.0)
    np.testing.assert_array_equal(filled[~mask], spoiled[~mask])


def _gasoline() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real series with data_processing's default flags (seasonal_median, |z| > 7), split at its last 13 weeks."""
    panel = pd.read_csv(GASOLINE, parse_dates=["timestamp"])
    train, test = panel.iloc[:-HORIZON].reset_index(drop=True), panel.iloc[-HORIZON:].reset_index(drop=True)
    scores = anomaly_scores(train["value"], train["series_id"], "seasonal_median", 52, 0.1)
    return train.assign(is_imputed=False, is_anomaly=(scores.abs() > 7.0).to_numpy()), test


def test_the_spring_2020_collapse_is_flagged_and_imputed_within_the_usual_range():
    train, _ = _gasoline()
    flagged = train.loc[train["is_anomaly"], "timestamp"]
    assert flagged.min() >= pd.Timestamp("2020-03-20") and flagged.max() <= pd.Timestamp("2020-06-05")
    assert len(flagged) >= 5
    imputed, n = impute_closed_anomalies(train, season_length=52)
    assert n == len(flagged)
    changed = imputed["value"].to_numpy() != train["value"].to_numpy()
    assert changed.sum() == n and train["is_anomaly"].to_numpy()[changed].all()
    # the weeks around it, a year either side, span about 7,500-9,700 barrels a day; the collapse fell to 5,065
    spring = imputed.loc[train["is_anomaly"], "value"]
    assert spring.between(7_500, 9_700).all(), spring.tolist()
    # rows, order and every other column as they were
    pd.testing.assert_frame_equal(imputed.drop(columns="value"), train.drop(columns="value"))


def test_a_run_at_the_end_of_the_history_is_kept():
    train, _ = _gasoline()
    cut = train[train["timestamp"] <= pd.Timestamp("2020-04-24")].reset_index(drop=True)  # still in the collapse
    assert cut["is_anomaly"].iloc[-1]
    imputed, n = impute_closed_anomalies(cut, season_length=52)
    assert n == 0 and imputed is cut


def _mae(model, test: pd.DataFrame) -> float:
    forecast = model.predict(HORIZON)
    return float(np.mean(np.abs(forecast["mean"].to_numpy() - test["value"].to_numpy())))


def test_a_seasonal_forecast_no_longer_copies_last_years_shock():
    train, test = _gasoline()
    imputing = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(train)  # default
    keeping = build_forecaster({"class": "seasonal_naive", "anomalies": "keep"}, freq="W-FRI",
                               season_length=52).fit(train)
    assert imputing.imputed_anomalies_ == int(train["is_anomaly"].sum()) and keeping.imputed_anomalies_ == 0
    # keep: spring 2021 is forecast as the collapse of spring 2020 (the last 13 weeks of 2020's same weeks)
    kept = keeping.predict(HORIZON)["mean"].to_numpy()
    np.testing.assert_array_equal(kept, train["value"].to_numpy()[-52:][:HORIZON])
    assert _mae(imputing, test) < 0.5 * _mae(keeping, test)


def test_impute_is_the_default_and_the_intermittent_family_always_keeps():
    assert build_forecaster({"class": "arima"}, freq="W-FRI").anomaly_treatment == "impute"
    assert build_forecaster({"class": "intermittent"}, freq="W-FRI").anomaly_treatment == "keep"
    with pytest.raises(ForecasterError, match="intermittent.*anomalies is 'impute'.*\\['keep'\\]"):
        build_forecaster({"class": "intermittent", "anomalies": "impute"}, freq="W-FRI")


def test_a_bad_anomalies_setting_names_the_parameter():
    with pytest.raises(ForecasterError, match="anomalies is 'drop'.*impute.*keep"):
        build_forecaster({"class": "seasonal_naive", "anomalies": "drop"}, freq="W-FRI")


@pytest.mark.parametrize("treatment", ["impute", "keep"])
def test_the_fallback_fits_the_panel_as_its_family_treated_it(treatment):
    """A series too short for Prophet (fewer than two 52-week seasons) goes to its ETS fallback, which must neither
    impute again nor impute what the family was told to keep."""
    train, _ = _gasoline()
    short = train.iloc[-90:].reset_index(drop=True)  # still holds the closed spring-2020 run
    model = build_forecaster({"class": "prophet", "anomalies": treatment}, freq="W-FRI", season_length=52).fit(short)
    assert model.served_by_ == {"us_gasoline": "ets"}
    assert model.imputed_anomalies_ == (int(short["is_anomaly"].sum()) if treatment == "impute" else 0)
    assert model.fallback_model_.imputed_anomalies_ == 0
    expected = build_forecaster({"class": "ets", "anomalies": treatment}, freq="W-FRI",
                                season_length=52).fit(short).predict(HORIZON)
    np.testing.assert_allclose(model.predict(HORIZON)["mean"], expected["mean"])
