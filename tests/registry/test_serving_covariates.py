"""Serving a model that reads covariates on fresh data (issue 11, issue 12 item 2).

A request row may carry its series' recent observations with the covariate values of those observations
(``recent_covariates``) and the plan of the covariates known in advance for the steps after them
(``future_covariates``). The panel model is real: ARIMA (regression with ARIMA errors on the two Stallion price
covariates) and a seasonal naive (no covariates) with their median, fitted on real Stallion agency/SKU series to
2016-12; the fresh months and the plans are the real 2017 values. The served forecast must equal the inference
pipeline's (``forecast_with_champion``: ``update`` then ``with_future_covariates`` then ``predict``).
"""
from __future__ import annotations

import copy
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.stallion_sample import stallion_sample
from ts_kedro.forecasters import build_forecaster
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.pipelines.inference import nodes as inference_nodes
from ts_kedro.registry import SelectedPanelModel, registry
from ts_kedro.registry.pyfunc import covariates_read, forecast_request, log_panel_model

KNOWN = ["price_actual", "discount_in_percent"]
HORIZON = 6
DAY0_END = "2017-01-01"  # the model's data end is 2016-12
FRESH_END = "2017-03-01"  # two fresh months: 2017-01, 2017-02
FAST_ARIMA = {"n_jobs": 1, "max_p": 1, "max_q": 1, "seasonality": "fourier"}


@pytest.fixture(scope="module")
def stallion(shared_data) -> pd.DataFrame:
    """Three real series with positive volumes (2013-01 .. 2017-12) and the two price covariates."""
    return stallion_sample(shared_data, KNOWN)


def _between(panel: pd.DataFrame, start, end) -> pd.DataFrame:
    return panel[(panel[TIMESTAMP] >= start) & (panel[TIMESTAMP] < end)].reset_index(drop=True)


def _plan_after(stallion: pd.DataFrame, start: str) -> pd.DataFrame:
    """The real price covariates of the HORIZON months from ``start``: the plan a forecast from there reads."""
    return _between(stallion, start, pd.Timestamp(start) + pd.DateOffset(months=HORIZON))[[SERIES_ID, TIMESTAMP, *KNOWN]]


def _pipeline_forecast(model: SelectedPanelModel, stallion: pd.DataFrame, monkeypatch) -> pd.DataFrame:
    """What the inference pipeline forecasts with ``model`` as champion: ``update`` on the history to FRESH_END,
    the plan of the months after it, ``predict``."""
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: model)
    history = stallion[stallion[TIMESTAMP] < FRESH_END].reset_index(drop=True)
    forecasts, _ = inference_nodes.forecast_with_champion(
        history, {"registered_model_name": "m", "conditioning": "update"},
        {"freq": "MS", "horizon": HORIZON, "levels": [80, 95]}, future_covariates=_plan_after(stallion, FRESH_END))
    return forecasts


def _with_planned_price(request: pd.DataFrame, factor: float) -> pd.DataFrame:
    """``request`` with every row's planned price multiplied by ``factor``."""
    changed = request.copy()
    changed["future_covariates"] = [{**plan, "price_actual": [p * factor for p in plan["price_actual"]]}
                                    for plan in changed["future_covariates"]]
    return changed


@pytest.fixture(scope="module")
def panel_model(stallion) -> SelectedPanelModel:
    """ARIMA with the price covariates, a seasonal naive without, and their median; the plan for 2017-01..06."""
    day0 = stallion[stallion[TIMESTAMP] < DAY0_END]
    plan = _plan_after(stallion, DAY0_END)
    arima = build_forecaster({"class": "arima", "hyperparameters": {**FAST_ARIMA, "known_covariates": KNOWN}},
                             freq="MS", season_length=12).fit(day0).set_future_covariates(plan)
    naive = build_forecaster({"class": "seasonal_naive", "hyperparameters": {}}, freq="MS", season_length=12).fit(day0)
    ids = sorted(day0[SERIES_ID].unique())
    model = SelectedPanelModel({"arima": arima, "naive": naive}, {ids[0]: "arima", ids[1]: "naive", ids[2]: "ensemble"},
                               ["arima", "naive"], [80, 95], HORIZON, {"data_window_end": str(day0[TIMESTAMP].max())})
    return model.warm_up()


def _plan(stallion: pd.DataFrame, series_id: str, start, steps: int) -> dict[str, list[float]]:
    rows = stallion[(stallion[SERIES_ID] == series_id) & (stallion[TIMESTAMP] >= start)].head(steps)
    assert len(rows) == steps
    return {name: rows[name].tolist() for name in KNOWN}


def _request(stallion: pd.DataFrame, series_ids, horizon: int = HORIZON, plan_steps: int | None = None) -> pd.DataFrame:
    fresh = _between(stallion, DAY0_END, FRESH_END)
    rows = []
    for sid in series_ids:
        part = fresh[fresh[SERIES_ID] == sid]
        rows.append({SERIES_ID: sid, "horizon": horizon,
                     "recent_timestamps": [t.isoformat() for t in part[TIMESTAMP]],
                     "recent_values": part[VALUE].tolist(),
                     "recent_covariates": {name: part[name].tolist() for name in KNOWN},
                     "future_covariates": _plan(stallion, sid, FRESH_END, plan_steps or horizon)})
    return pd.DataFrame(rows)


def test_the_model_reads_the_price_covariates(panel_model):
    assert covariates_read(panel_model) == (KNOWN, [])


def test_recent_observations_with_covariates_give_the_inference_pipelines_forecast(panel_model, stallion,
                                                                                   monkeypatch):
    stored_plan = panel_model.family_models["arima"].future_covariates_.copy()
    before = forecast_request(panel_model, pd.DataFrame({SERIES_ID: panel_model.series_ids, "horizon": HORIZON}))
    served = forecast_request(panel_model, _request(stallion, panel_model.series_ids))
    assert (served.groupby(SERIES_ID)[TIMESTAMP].min() == pd.Timestamp(FRESH_END)).all()  # after the fresh months
    assert len(served) == HORIZON * len(panel_model.series_ids)

    # the inference pipeline's path: update on the history, the new horizon's plan, predict
    pipeline = _pipeline_forecast(panel_model, stallion, monkeypatch)
    pd.testing.assert_frame_equal(served, pipeline[served.columns].reset_index(drop=True))

    # the plan is read: a lower planned price changes the ARIMA forecast (and only the ARIMA-served series)
    changed = forecast_request(panel_model, _with_planned_price(_request(stallion, panel_model.series_ids), 0.8))
    moved = (changed["mean"] - served["mean"]).abs().groupby(served[SERIES_ID]).max()
    arima_id, naive_id, _ = panel_model.series_ids
    assert moved[arima_id] > 1e-3 * served["mean"].abs().mean() and moved[naive_id] == 0

    # the loaded model is unchanged: same stored plan, same answers from its own data end
    pd.testing.assert_frame_equal(panel_model.family_models["arima"].future_covariates_, stored_plan)
    after = forecast_request(panel_model, pd.DataFrame({SERIES_ID: panel_model.series_ids, "horizon": HORIZON}))
    pd.testing.assert_frame_equal(after, before)
    assert (after.groupby(SERIES_ID)[TIMESTAMP].min() == pd.Timestamp(DAY0_END)).all()


def test_a_plan_of_the_rows_horizon_is_enough_and_rows_mix(panel_model, stallion):
    full = forecast_request(panel_model, _request(stallion, panel_model.series_ids[:1]))
    short = _request(stallion, panel_model.series_ids[:1], horizon=3)  # exactly 3 planned values
    longer = _request(stallion, panel_model.series_ids[:1], horizon=3, plan_steps=5)  # the rest is ignored
    stale = pd.DataFrame([{SERIES_ID: panel_model.series_ids[1], "horizon": 2}])
    for request in (short, longer):
        served = forecast_request(panel_model, pd.concat([stale, request], ignore_index=True))
        assert served[SERIES_ID].tolist() == [panel_model.series_ids[1]] * 2 + [panel_model.series_ids[0]] * 3
        np.testing.assert_allclose(served["mean"].iloc[2:], full["mean"].iloc[:3], rtol=1e-9)
        assert served[TIMESTAMP].iloc[0] == pd.Timestamp(DAY0_END)  # the stale row: from the model's data end


def test_a_new_plan_alone_replaces_the_stored_one_from_the_models_data_end(panel_model, stallion):
    arima_id = panel_model.series_ids[0]
    plan = _plan(stallion, arima_id, DAY0_END, HORIZON)
    cheaper = {**plan, "price_actual": [p * 0.8 for p in plan["price_actual"]]}
    served = forecast_request(panel_model, pd.DataFrame([{SERIES_ID: arima_id, "horizon": HORIZON,
                                                          "future_covariates": cheaper}]))
    frame = pd.DataFrame({SERIES_ID: arima_id, TIMESTAMP: pd.date_range(DAY0_END, periods=HORIZON, freq="MS"),
                          **cheaper})
    expected = panel_model.restricted_to([arima_id]).with_future_covariates(frame).predict([arima_id])
    pd.testing.assert_frame_equal(served, expected)
    stored = forecast_request(panel_model, pd.DataFrame([{SERIES_ID: arima_id, "horizon": HORIZON,
                                                          "future_covariates": plan}]))
    pd.testing.assert_frame_equal(stored, panel_model.predict([arima_id]))  # the stored plan is these values


def _row(request: pd.DataFrame, column: str, change) -> pd.DataFrame:
    request = request.copy()
    request[column] = [change(copy.deepcopy(value)) for value in request[column]]
    return request


@pytest.mark.parametrize("change, message", [
    (lambda r: r.drop(columns=["recent_covariates"]),
     (r"request row 0 \(series_id '.+'\): this model reads covariates \['price_actual', 'discount_in_percent'\]: "
      "with recent observations send recent_covariates")),
    (lambda r: _row(r, "recent_covariates", lambda m: {**m, "temperature": [1.0, 2.0]}),
     r"request row 0 \(series_id '.+'\): recent_covariates name \['temperature'\] that this model does not read"),
    (lambda r: _row(r, "recent_covariates", lambda m: {"price_actual": m["price_actual"]}),
     r"recent_covariates lack covariate\(s\) \['discount_in_percent'\]"),
    (lambda r: _row(r, "recent_covariates", lambda m: {**m, "price_actual": m["price_actual"][:1]}),
     r"recent_covariates\['price_actual'\] has 1 values: send exactly 2 values, one per recent_values entry"),
    (lambda r: _row(r, "recent_covariates", lambda m: {**m, "discount_in_percent": [float("inf"), 1.0]}),
     r"recent_covariates\['discount_in_percent'\] must hold finite numbers"),
    (lambda r: _row(r, "recent_covariates", lambda m: [1.0, 2.0]), "recent_covariates must be a mapping"),
    (lambda r: r.drop(columns=["future_covariates"]),
     r"request row 0 \(series_id '.+'\): this model reads covariates known in advance .*send future_covariates"),
    (lambda r: _row(r, "future_covariates", lambda m: {**m, "price_actual": m["price_actual"][:5]}),
     r"future_covariates\['price_actual'\] has 5 values: send at least 6 values \(the row's horizon\)"),
    (lambda r: _row(r, "future_covariates", lambda m: {**m, "price_actual": [None] * 6}),
     r"future_covariates\['price_actual'\] must hold finite numbers"),
    (lambda r: _row(r, "future_covariates", lambda m: {"discount_in_percent": m["discount_in_percent"]}),
     r"future_covariates lack covariate\(s\) \['price_actual'\]"),
    (lambda r: _row(r, "future_covariates", lambda m: {**m, "volume": [1.0] * 6}),
     r"future_covariates name \['volume'\] that this model does not read as known in advance"),
    (lambda r: r.drop(columns=["recent_timestamps", "recent_values"]),
     r"request row 0 \(series_id '.+'\): recent_covariates without recent observations"),
])
def test_bad_covariates_are_400_naming_row_series_and_covariate(panel_model, stallion, change, message):
    request = change(_request(stallion, panel_model.series_ids[:1]))
    with pytest.raises(MlflowException, match=message) as caught:
        forecast_request(panel_model, request)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_model_without_covariates_refuses_them(stallion):
    day0 = stallion[stallion[TIMESTAMP] < DAY0_END]
    naive = build_forecaster({"class": "seasonal_naive", "hyperparameters": {}}, freq="MS", season_length=12).fit(day0)
    plain = SelectedPanelModel({"naive": naive}, {s: "naive" for s in naive.series_ids_}, [], [80], HORIZON)
    assert covariates_read(plain) == ([], [])
    request = _request(stallion, plain.series_ids[:1])
    for dropped in ("future_covariates", "recent_covariates"):
        with pytest.raises(MlflowException, match=r"request row 0 .* sends (recent|future)_covariates but this model "
                                                  "reads no covariates") as caught:
            forecast_request(plain, request.drop(columns=[dropped]))
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    # without them (or with nulls / empty mappings) the row is served from its recent observations
    served = forecast_request(plain, request.assign(recent_covariates=[{}], future_covariates=[None]))
    assert served[TIMESTAMP].min() == pd.Timestamp(FRESH_END)


def test_a_plan_a_family_cannot_read_is_400_not_500(stallion):
    """ARIMA fitted to 2016-11, the seasonal naive to 2016-12: the request's plan starts after the later end, so
    ARIMA lacks its first planned step; the family's ForecasterError reaches the client as a 400."""
    day0 = stallion[stallion[TIMESTAMP] < DAY0_END]
    sid = min(day0[SERIES_ID].unique())
    one = day0[day0[SERIES_ID] == sid]
    arima = build_forecaster({"class": "arima", "hyperparameters": {**FAST_ARIMA, "known_covariates": KNOWN}},
                             freq="MS", season_length=12).fit(one[one[TIMESTAMP] < "2016-12-01"])
    arima.set_future_covariates(_between(stallion, "2016-12-01", "2017-06-01")[lambda f: f[SERIES_ID] == sid])
    naive = build_forecaster({"class": "seasonal_naive", "hyperparameters": {}}, freq="MS", season_length=12).fit(one)
    model = SelectedPanelModel({"arima": arima, "naive": naive}, {sid: "arima"}, [], [80], 3)
    request = pd.DataFrame([{SERIES_ID: sid, "horizon": 3, "future_covariates": _plan(stallion, sid, DAY0_END, 3)}])
    with pytest.raises(MlflowException, match=rf"lack covariate 'price_actual' for series '{sid}' at 2016-12-01") as c:
        forecast_request(model, request)
    assert c.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, panel_model):
    """The panel model logged with its pyfunc signature and loaded back as ``mlflow models serve`` does."""
    root = tmp_path_factory.mktemp("served_covariates")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("cov", artifact_location=(root / "mlruns").as_uri()))
    with registry._tracking_uri(uri), mlflow.start_run(run_id=run.info.run_id):
        info = log_panel_model(panel_model)
        return mlflow.pyfunc.load_model(info.model_uri)


def test_the_logged_model_takes_covariate_mappings_through_its_signature(logged, panel_model, stallion):
    from .test_reliability import invoke

    schema = logged.metadata.get_input_schema()
    assert {"recent_covariates", "future_covariates"} <= set(schema.input_names())
    request = _request(stallion, panel_model.series_ids)
    expected = forecast_request(panel_model, request)
    # a DataFrame whose cells are dicts passes MLflow's schema enforcement (AnyType) unchanged
    pd.testing.assert_frame_equal(logged.predict(request), expected)
    # JSON records as a client posts them to /invocations (the scoring server's parsing, in process)
    records = request.to_dict(orient="records")
    status, body = invoke(logged, {"dataframe_records": records})
    assert status == 200, body
    predictions = pd.DataFrame(json.loads(body)["predictions"])
    assert predictions[SERIES_ID].tolist() == expected[SERIES_ID].tolist()
    np.testing.assert_allclose(predictions["mean"], expected["mean"], rtol=1e-9)
    bad = [{**records[0], "future_covariates": {"price_actual": [1.0] * HORIZON}}]
    status, body = invoke(logged, {"dataframe_records": bad})
    assert status == 400 and "future_covariates lack covariate(s) ['discount_in_percent']" in body, body
    with pytest.raises(MlflowException, match="future_covariates lack covariate"):
        logged.predict(pd.DataFrame(bad))


# Prophet (one add_regressor per covariate) and the global LightGBM family (covariates as known-in-advance
# features of every origin-horizon row) read the same two price covariates; light settings keep the fits quick.
OTHER_FAMILIES = {
    "prophet": {"uncertainty_samples": 50, "seed": 0, "n_jobs": 1},
    "lightgbm": {"horizon": HORIZON, "n_estimators": 50, "n_jobs": 1, "seed": 0},
}


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_prophet_and_lightgbm_are_served_on_fresh_data_with_their_covariates(family, stallion, monkeypatch):
    """The same contract as ARIMA's: recent observations with their covariates and the new plan give the
    inference pipeline's forecast, the plan is read, and the loaded model is left as it was."""
    day0 = stallion[stallion[TIMESTAMP] < DAY0_END]
    plan = _plan_after(stallion, DAY0_END)
    forecaster = build_forecaster({"class": family, "hyperparameters": {**OTHER_FAMILIES[family],
                                                                        "known_covariates": KNOWN}},
                                  freq="MS", season_length=12).fit(day0).set_future_covariates(plan)
    ids = sorted(day0[SERIES_ID].unique())
    model = SelectedPanelModel({family: forecaster}, {sid: family for sid in ids}, [], [80, 95], HORIZON,
                               {"data_window_end": str(day0[TIMESTAMP].max())}).warm_up()
    assert covariates_read(model) == (KNOWN, [])
    before = forecast_request(model, pd.DataFrame({SERIES_ID: ids, "horizon": HORIZON}))

    served = forecast_request(model, _request(stallion, ids))
    assert (served.groupby(SERIES_ID)[TIMESTAMP].min() == pd.Timestamp(FRESH_END)).all()
    pipeline = _pipeline_forecast(model, stallion, monkeypatch)
    pd.testing.assert_frame_equal(served, pipeline[served.columns].reset_index(drop=True), rtol=1e-6)

    # the plan is read: halving the planned price moves the forecast of some series
    moved = (forecast_request(model, _with_planned_price(_request(stallion, ids), 0.5))["mean"]
             - served["mean"]).abs().max()
    assert moved > 1e-3 * served["mean"].abs().mean()

    after = forecast_request(model, pd.DataFrame({SERIES_ID: ids, "horizon": HORIZON}))
    pd.testing.assert_frame_equal(after, before)
