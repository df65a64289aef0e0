"""Covariates in the model families (issue 11): ARIMA (regression with ARIMA errors) and Prophet (regressors) read
the covariates known in advance and forecast from the plan; families without the capability ignore every covariate
explicitly (``ignored_covariates_``, logged once). Real Stallion agency/SKU series (monthly, volumes > 0)."""
from __future__ import annotations

import copy
import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from tests.stallion_sample import stallion_sample
from ts_kedro.forecasters import ForecasterError, build_forecaster, get_forecaster_class
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE

KNOWN = ["price_actual", "discount_in_percent"]
OBSERVED = ["avg_max_temp"]
HORIZON = 6
FAST_ARIMA = {"n_jobs": 1, "max_p": 1, "max_q": 1, "seasonality": "fourier"}
FAST_PROPHET = {"n_jobs": 1, "uncertainty_samples": 50}


@pytest.fixture(scope="module")
def stallion(shared_data) -> pd.DataFrame:
    """Three real series with positive volumes (2013-01 .. 2017-12), the two price covariates and a weather one."""
    return stallion_sample(shared_data, KNOWN + OBSERVED)


def split(panel: pd.DataFrame, end: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History before ``end`` and the plan of the covariates known in advance for the 6 months from ``end``."""
    history = panel[panel[TIMESTAMP] < end].reset_index(drop=True)
    plan = panel[(panel[TIMESTAMP] >= end) & (panel[TIMESTAMP] < pd.Timestamp(end) + pd.DateOffset(months=HORIZON))]
    return history, plan[[SERIES_ID, TIMESTAMP, *KNOWN]].reset_index(drop=True)


def build(family: str, **hyperparameters):
    defaults = {"arima": FAST_ARIMA, "prophet": FAST_PROPHET}.get(family, {"n_jobs": 1})
    if family == "lstm":
        defaults = {"horizon": HORIZON, "input_size": 12, "hidden_size": 4, "max_epochs": 1, "n_models": 1,
                    "device": "cpu"}
    if family == "seasonal_naive":
        defaults = {}
    return build_forecaster({"class": family, "hyperparameters": {**defaults, **hyperparameters}}, freq="MS")


def test_the_capability_flag_of_every_family():
    capable = {family for family in ("seasonal_naive", "arima", "prophet", "lstm", "ets", "theta", "intermittent",
                                     "lightgbm") if get_forecaster_class(family).supports_covariates}
    assert capable == {"arima", "prophet", "lightgbm"}


@pytest.mark.parametrize("family", ["seasonal_naive", "ets", "theta", "intermittent", "lstm"])
def test_a_family_without_the_capability_records_and_logs_what_it_ignores(family, stallion, caplog):
    one = stallion[stallion[SERIES_ID] == stallion[SERIES_ID].iloc[0]]  # ETS fits take seconds per series
    history, plan = split(one, "2017-07-01")
    with caplog.at_level(logging.INFO, logger="ts_kedro.forecasters.base"):
        model = build(family).fit(history.assign(is_imputed=False, is_anomaly=False))
    assert list(model.ignored_covariates_) == [*KNOWN, *OBSERVED]  # the flags are not covariates
    assert all("cannot use covariates" in why for why in model.ignored_covariates_.values())
    logged = [r.getMessage() for r in caplog.records if "ignores covariate" in r.getMessage()]
    assert len(logged) <= 1 and (not logged or str([*KNOWN, *OBSERVED]) in logged[0])  # once per process
    # the forecast is the one without the covariate columns: they are not read
    plain = build(family).fit(history[[SERIES_ID, TIMESTAMP, VALUE]])
    assert model.predict(HORIZON)["mean"].to_numpy() == pytest.approx(plain.predict(HORIZON)["mean"].to_numpy())
    with pytest.raises(ForecasterError, match="cannot use covariates"):
        model.set_future_covariates(plan)


@pytest.fixture(scope="module")
def fitted(stallion) -> dict:
    """ARIMA and Prophet with the two price covariates known in advance, fitted to 2017-06."""
    history, plan = split(stallion, "2017-07-01")
    return {family: build(family, known_covariates=KNOWN).fit(history).set_future_covariates(plan)
            for family in ("arima", "prophet")}


@pytest.mark.parametrize("family", ["arima", "prophet"])
def test_the_forecast_reads_the_plan(family, fitted, stallion):
    model = fitted[family]
    history, plan = split(stallion, "2017-07-01")
    assert list(model.ignored_covariates_) == ["avg_max_temp"]  # observed: no values over the horizon
    assert "known in advance only" in model.ignored_covariates_["avg_max_temp"]
    assert all(used == KNOWN for used in model.covariates_used_.values())
    forecast = model.predict(HORIZON, [80])
    assert forecast[TIMESTAMP].min() == pd.Timestamp("2017-07-01") and forecast["mean"].notna().all()
    cheaper = copy.copy(model).set_future_covariates(plan.assign(price_actual=plan["price_actual"] * 0.8))
    changed = cheaper.predict(HORIZON, [80])["mean"].to_numpy()
    assert np.abs(changed - forecast["mean"].to_numpy()).max() > 1e-3 * forecast["mean"].abs().mean()
    without = build(family).fit(history)  # hyperparameter absent: no covariate read, the forecast differs
    assert list(without.ignored_covariates_) == [*KNOWN, *OBSERVED]
    assert not without.predict(HORIZON)["mean"].to_numpy() == pytest.approx(forecast["mean"].to_numpy())


@pytest.mark.parametrize("family", ["arima", "prophet"])
def test_a_missing_plan_names_covariate_series_and_first_timestamp(family, fitted):
    model = copy.copy(fitted[family])
    first = model.series_ids_[0]
    plan = model.future_covariates_
    gap = plan[~((plan[SERIES_ID] == first) & (plan[TIMESTAMP] >= "2017-10-01"))]
    with pytest.raises(ForecasterError, match=rf"lack covariate 'price_actual' for series '{first}' at 2017-10-01"):
        model.set_future_covariates(gap).predict(HORIZON)
    with pytest.raises(ForecasterError, match=r"future_covariates lack column\(s\) \['discount_in_percent'\]"):
        model.set_future_covariates(plan.drop(columns="discount_in_percent"))
    with pytest.raises(ForecasterError, match=r"lacks covariate column\(s\) \['price_actual'\]"):
        build(family, known_covariates=KNOWN).fit(fitted[family].future_covariates_.assign(value=1.0).drop(
            columns="price_actual"))


@pytest.mark.parametrize("seasonality", ["sarima", "fourier", "seasonal_difference", "mstl"])
def test_arima_is_a_regression_with_arima_errors_in_every_variant(seasonality, stallion):
    """A plan raised by c at every step moves log y by the same b * c at every step: the covariates are
    differenced like the series and integrated back with it (a level effect, not a one-step pulse)."""
    series = stallion[stallion[SERIES_ID] == stallion[SERIES_ID].iloc[0]]
    history, plan = split(series, "2017-07-01")
    # unbounded effect (covariate_effect_margin null): the regression's own linear arithmetic is what is checked
    model = build("arima", known_covariates=["price_actual"], seasonality=seasonality, max_sarima_season=12,
                  covariate_effect_margin=None)
    model.fit(history.drop(columns=OBSERVED))
    state = model.fitted_[model.series_ids_[0]]
    assert state.covariates and state.log_scale and state.seasonal["method"] == seasonality
    differences = {"seasonal_difference": (0, 1), "fourier": (0, 0), "mstl": (0, 0)}.get(seasonality)
    if seasonality == "sarima":  # the series' own differences, whatever the tests chose
        differences = (state.seasonal["differencing"]["d"], state.seasonal["differencing"]["D"])
    assert (state.covariates["d"], state.covariates["D"]) == differences
    base = model.set_future_covariates(plan).predict(HORIZON)["mean"].to_numpy()
    step = float(history["price_actual"].std())
    raised = model.set_future_covariates(plan.assign(price_actual=plan["price_actual"] + step)).predict(HORIZON)
    shift = np.log(raised["mean"].to_numpy()) - np.log(base)
    assert abs(shift[0]) > 1e-6 and np.ptp(shift) < 1e-8 * max(1.0, abs(shift[0]))
    coefficient = dict(zip(state.statsmodels_model().param_names, state.params))["x1"]
    assert shift[0] == pytest.approx(coefficient * step / state.covariates["scale"][0])


@pytest.mark.parametrize("family", ["arima", "prophet"])
def test_update_takes_the_new_covariate_values(family, stallion):
    """Day 0 to 2017-03; April-June arrive with their prices; the forecast starts in July from July's plan."""
    history, _ = split(stallion, "2017-04-01")
    new = stallion[(stallion[TIMESTAMP] >= "2017-04-01") & (stallion[TIMESTAMP] < "2017-07-01")]
    _, plan = split(stallion, "2017-07-01")
    model = build(family, known_covariates=KNOWN).fit(history)
    with pytest.raises(ForecasterError, match=r"new_observations lacks covariate column\(s\) \['price_actual'\]"):
        copy.deepcopy(model).update(new.drop(columns="price_actual"))
    updated = copy.deepcopy(model).update(new.reset_index(drop=True))
    with pytest.raises(ForecasterError, match="at 2017-07-01"):  # the Day-0 plan does not reach the new horizon
        updated.predict(HORIZON)
    forecast = updated.set_future_covariates(plan).predict(HORIZON, [80])
    assert forecast[TIMESTAMP].min() == pd.Timestamp("2017-07-01") and forecast["mean"].notna().all()
    if family == "arima":  # a filter pass: two updates equal one, and the state pickles without the plan's index
        months = new[TIMESTAMP].drop_duplicates().sort_values()
        twice = copy.deepcopy(model).update(new[new[TIMESTAMP] == months.iloc[0]].reset_index(drop=True))
        twice.update(new[new[TIMESTAMP] > months.iloc[0]].reset_index(drop=True)).set_future_covariates(plan)
        assert twice.predict(HORIZON, [80])["mean"].to_numpy() == pytest.approx(forecast["mean"].to_numpy())
        reloaded = pickle.loads(pickle.dumps(updated))
        assert "_future_plan" not in vars(reloaded)
        assert reloaded.predict(HORIZON, [80])["mean"].to_numpy() == pytest.approx(forecast["mean"].to_numpy())


def test_prophet_component_shares_name_each_regressor(fitted):
    """The reporting pipeline's Prophet importance on a model with regressors: each regressor is a component (before,
    predict on the bare training dates failed with "Regressor 'price_actual' missing from dataframe")."""
    from ts_kedro.interpretability.importance import prophet_component_shares

    shares = prophet_component_shares(fitted["prophet"])
    assert set(KNOWN) <= set(shares["component"])
    assert shares.groupby("series_id")["share"].sum().to_numpy() == pytest.approx(1.0)
    assert shares[shares["component"].isin(KNOWN)]["variance"].gt(0).any()


def test_arima_coefficients_name_the_covariate_terms(fitted):
    from ts_kedro.interpretability.importance import arima_coefficients

    terms = set(arima_coefficients(fitted["arima"])["term"])
    assert set(KNOWN) <= terms and not {"x1", "x2"} & terms


ALL_KNOWN = ["price_regular", "price_actual", "discount_in_percent"]


def _jumped_discount_series(shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real Stallion Agency_11/SKU_03 with its three price covariates: the history to 2016-06 and the six months
    from 2016-07, when its discount jumped from about 6 % to 22 % (the plan)."""
    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    raw = raw[(raw["agency"].astype(str) == "Agency_11") & (raw["sku"].astype(str) == "SKU_03")]
    panel = pd.DataFrame({SERIES_ID: "Agency_11/SKU_03", TIMESTAMP: pd.to_datetime(raw["date"]).astype("datetime64[ns]"),
                          VALUE: raw["volume"].astype(float),
                          **{c: raw[c].astype(float) for c in ALL_KNOWN}}).sort_values(TIMESTAMP, ignore_index=True)
    history = panel[panel[TIMESTAMP] < "2016-07-01"].reset_index(drop=True)
    plan = panel[(panel[TIMESTAMP] >= "2016-07-01") & (panel[TIMESTAMP] < "2017-01-01")]
    return history, plan


def test_arima_bounds_the_joint_covariate_effect_of_a_plan_beyond_the_history(shared_data):
    """Real Stallion series Agency_11/SKU_03 (volume about 200): in 2016-07 its discount jumped from about 6 % to
    22 %. Its three nearly collinear price covariates gave ARIMA forecasts of order 1e7 when the plan was
    extrapolated linearly; bounded to the effects the history's rows had, the forecast stays at the series'
    scale. A row whose effect lies inside that range is left as it is."""
    from ts_kedro.forecasters.arima import _bounded_effect

    history, plan = _jumped_discount_series(shared_data)
    model = build("arima", known_covariates=ALL_KNOWN, seasonality="auto").fit(history)
    model.set_future_covariates(plan[[SERIES_ID, TIMESTAMP, *ALL_KNOWN]])
    forecast = model.predict(HORIZON, [80])
    assert np.isfinite(forecast["mean"]).all()
    assert forecast["mean"].max() < 5 * history[VALUE].max()
    assert forecast["hi-80"].max() < 20 * history[VALUE].max()

    state = model.fitted_["Agency_11/SKU_03"]
    assert state.covariates  # the series regresses on them (that is what exploded)
    # the bound itself: a row inside the history's effects unchanged, one beyond them shrunk onto the edge
    result = state.statsmodels_model().filter(state.params)
    names = list(result.model.exog_names)[-state.exog.shape[1]:]
    beta = np.array([dict(zip(result.model.param_names, result.params))[n] for n in names])
    seen = state.exog @ beta
    inside = state.exog[[int(np.argmin(np.abs(seen - np.median(seen))))]]
    np.testing.assert_array_equal(_bounded_effect(result, state.exog, inside), inside)
    beyond = state.exog[[int(np.argmax(seen))]] * 100
    assert np.isclose((_bounded_effect(result, state.exog, beyond) @ beta)[0], seen.max())


def test_prophet_bounds_the_joint_regressor_effect_of_a_plan_beyond_the_history(shared_data):
    """The same real series and jump as ARIMA's bound test, through Prophet's regressors: each plan row's joint
    effect is kept within the effects of the history's rows (a row inside them is left as it is), and the
    forecast of the jumped plan stays within the effects the history saw; null margin keeps the plan as it is."""
    from prophet.serialize import model_from_json
    from prophet.utilities import regressor_coefficients

    from ts_kedro.forecasters.prophet import _bounded_plan

    history, plan = _jumped_discount_series(shared_data)
    bounded = build("prophet", known_covariates=ALL_KNOWN).fit(history)
    unbounded = build("prophet", known_covariates=ALL_KNOWN, covariate_effect_margin=None).fit(history)
    for model in (bounded, unbounded):
        model.set_future_covariates(plan[[SERIES_ID, TIMESTAMP, *ALL_KNOWN]])
    prophet = model_from_json(bounded.models_["Agency_11/SKU_03"])
    assert list(prophet.extra_regressors)  # the series regresses on them

    coefficients = regressor_coefficients(prophet)
    names, coef, center = coefficients["regressor"].tolist(), coefficients["coef"].to_numpy(), coefficients["center"].to_numpy()
    seen = (history[names].to_numpy() - center) @ coef
    future = pd.DataFrame({"ds": plan[TIMESTAMP].to_numpy(), **{n: plan[n].to_numpy() for n in names}})
    effect = (_bounded_plan(prophet, future, 0.0)[names].to_numpy() - center) @ coef
    assert effect.min() >= seen.min() - 1e-9 and effect.max() <= seen.max() + 1e-9
    planned = (future[names].to_numpy() - center) @ coef
    inside = (planned >= seen.min()) & (planned <= seen.max())
    np.testing.assert_allclose(effect[inside], planned[inside])
    assert not inside.all()  # the jumped discount lies beyond the history's effects
    pd.testing.assert_frame_equal(_bounded_plan(prophet, future, None), future)

    capped, free = bounded.predict(HORIZON, [80]), unbounded.predict(HORIZON, [80])
    assert np.isfinite(capped["mean"]).all() and not np.allclose(capped["mean"], free["mean"])
    assert np.abs(capped["mean"] - history[VALUE].mean()).max() <= np.abs(free["mean"] - history[VALUE].mean()).max()
