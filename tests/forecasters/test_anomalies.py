"""Fitting around flagged anomalies (forecasters/anomalies.py): which runs are imputed, with what, and what it does
to a seasonal forecast on the real weekly us_gasoline series, whose spring-2020 collapse data_processing flags."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import ForecasterError, build_forecaster
from ts_kedro.forecasters.anomalies import (closed_runs, fill_series, impute_closed_anomalies,
                                           impute_new_closed_anomalies)
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


def _before_and_after_the_collapse() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The flagged training part, its rows before the spring-2020 run (a model's fit) and the rest (the new
    observations of a Day-N update, in which the run opens and closes)."""
    train, _ = _gasoline()
    before = train["timestamp"] < pd.Timestamp("2020-03-01")
    return train, train[before].reset_index(drop=True), train[~before].reset_index(drop=True)


def test_the_new_points_get_the_values_a_fit_on_the_whole_history_gives_them():
    train, head, tail = _before_and_after_the_collapse()
    last_fitted = pd.Series({"us_gasoline": head["timestamp"].max()})
    filled = impute_new_closed_anomalies(train, last_fitted, season_length=52)
    whole, n = impute_closed_anomalies(train, season_length=52)
    assert len(filled) == n == int(tail["is_anomaly"].sum()) >= 5
    expected = whole.set_index("timestamp").loc[filled["timestamp"], "value"].to_numpy()
    np.testing.assert_allclose(filled["value"].to_numpy(), expected, rtol=1e-12)
    # nothing new flagged, or no flags at all: nothing to do
    assert impute_new_closed_anomalies(train, pd.Series({"us_gasoline": train["timestamp"].max()}), 52).empty
    assert impute_new_closed_anomalies(train.drop(columns="is_anomaly"), last_fitted, 52).empty


def test_an_update_with_the_history_forecasts_as_a_fit_on_it_would():
    """Seasonal naive fitted before the collapse and updated over it repeats the imputed season, exactly as the
    fit on the whole history does, instead of copying the collapse into spring 2021."""
    train, head, tail = _before_and_after_the_collapse()
    fitted = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(head)
    updated = copy.deepcopy(fitted).update(tail, history=train)
    refitted = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(train)
    assert updated.imputed_on_update_ == int(tail["is_anomaly"].sum())
    np.testing.assert_allclose(updated.predict(HORIZON)["mean"], refitted.predict(HORIZON)["mean"], rtol=1e-12)
    # without the history (a serving request's observations carry no flags) the collapse is taken as observed
    as_observed = copy.deepcopy(fitted).update(tail)
    np.testing.assert_array_equal(as_observed.predict(HORIZON)["mean"], train["value"].to_numpy()[-52:][:HORIZON])
    assert as_observed.imputed_on_update_ == 0


@pytest.mark.parametrize("family", ["theta", "ets"])
def test_every_family_updates_on_the_imputed_points(family):
    train, head, tail = _before_and_after_the_collapse()
    spec = {"class": family, "hyperparameters": {"n_jobs": 1}}
    fitted = build_forecaster(spec, freq="W-FRI", season_length=52).fit(head)
    with_history = copy.deepcopy(fitted).update(tail, history=train)
    imputed_tail = impute_closed_anomalies(train, season_length=52)[0].iloc[len(head):].reset_index(drop=True)
    by_hand = copy.deepcopy(fitted).update(imputed_tail[["series_id", "timestamp", "value"]])
    np.testing.assert_allclose(with_history.predict(HORIZON)["mean"], by_hand.predict(HORIZON)["mean"], rtol=1e-10)
    kept = build_forecaster({**spec, "anomalies": "keep"}, freq="W-FRI", season_length=52).fit(head)
    assert copy.deepcopy(kept).update(tail, history=train).imputed_on_update_ == 0


def test_a_history_that_does_not_hold_the_new_observations_is_refused():
    train, head, tail = _before_and_after_the_collapse()
    fitted = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(head)
    other = train.copy()
    other.loc[other["timestamp"] == pd.Timestamp("2020-06-05"), "value"] += 1.0
    with pytest.raises(ForecasterError, match="history does not hold new_observations.*'us_gasoline' at 2020-06-05"):
        copy.deepcopy(fitted).update(tail, history=other)
    with pytest.raises(ForecasterError, match="history does not hold new_observations"):
        copy.deepcopy(fitted).update(tail, history=train.iloc[:-1])  # lacks the newest observation


def test_the_panel_model_updates_around_the_flags_of_the_history_it_is_given():
    from ts_kedro.registry.panel_model import SelectedPanelModel

    train, head, _ = _before_and_after_the_collapse()
    fitted = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(head)
    panel_model = SelectedPanelModel({"seasonal_naive": fitted}, {"us_gasoline": "seasonal_naive"}, [], [80], HORIZON)
    updated = panel_model.update(train)
    refitted = build_forecaster({"class": "seasonal_naive"}, freq="W-FRI", season_length=52).fit(train)
    forecast = updated.predict(horizon=HORIZON, levels=[80])
    np.testing.assert_allclose(forecast["mean"], refitted.predict(HORIZON)["mean"], rtol=1e-12)
