"""Serving on fresh data: a request carries a series' recent observations and the forecast starts after them.

The panel model is real (Theta, ETS and their median on three real M4 Hourly series, fitted on "Day 0"); the
fresh observations are the first hours of the real M4 Hourly test part. The served forecast must equal the
inference pipeline's (``forecast_with_champion``, ``conditioning: update``) on the Day-0 data plus those hours.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from ts_kedro.forecasters.ets import ETSForecaster
from ts_kedro.forecasters.theta import ThetaForecaster
from ts_kedro.pipelines.inference import nodes as inference_nodes
from ts_kedro.registry import SelectedPanelModel
from ts_kedro.registry.pyfunc import forecast_request

FRESH = 10  # hours after the Day-0 data (fewer than a season: the origin moves off the day boundary)
PANEL = {"freq": "h", "season_length": 24, "horizon": 48, "levels": [80, 95]}


@pytest.fixture(scope="module")
def day0_and_fresh(small_panel, shared_data):
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    ids = sorted(small_panel["series_id"].unique())
    test = test[test["series_id"].isin(ids)].astype({"value": float})
    fresh = test.sort_values(["series_id", "timestamp"]).groupby("series_id").head(FRESH).reset_index(drop=True)
    return small_panel, fresh


@pytest.fixture(scope="module")
def panel_model(day0_and_fresh) -> SelectedPanelModel:
    day0, _ = day0_and_fresh
    ids = sorted(day0["series_id"].unique())
    families = {"theta": ThetaForecaster(freq="h", season_length=24, n_jobs=1).fit(day0),
                "ets": ETSForecaster(freq="h", season_length=24, n_jobs=1).fit(day0)}
    return SelectedPanelModel(families, {ids[0]: "theta", ids[1]: "ets", ids[2]: "ensemble"}, ["theta", "ets"],
                              [80, 95], 48, {"data_window_end": str(day0["timestamp"].max())})


def _request(fresh: pd.DataFrame, series_ids, horizon: int = 48) -> pd.DataFrame:
    rows = []
    for sid in series_ids:
        part = fresh[fresh["series_id"] == sid]
        rows.append({"series_id": sid, "horizon": horizon,
                     "recent_timestamps": [t.isoformat() for t in part["timestamp"]],
                     "recent_values": part["value"].tolist()})
    return pd.DataFrame(rows)


def test_fresh_observations_give_the_inference_pipelines_forecast(panel_model, day0_and_fresh, monkeypatch):
    day0, fresh = day0_and_fresh
    ids = panel_model.series_ids
    served = forecast_request(panel_model, _request(fresh, ids))
    ends = fresh.groupby("series_id")["timestamp"].max()
    assert (served.groupby("series_id")["timestamp"].min() == ends + pd.Timedelta(hours=1)).all()

    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: panel_model)
    history = pd.concat([day0, fresh]).sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    pipeline, _ = inference_nodes.forecast_with_champion(
        history, {"registered_model_name": "m", "conditioning": "update"}, PANEL)
    expected = pipeline[served.columns]
    pd.testing.assert_frame_equal(served.reset_index(drop=True), expected.reset_index(drop=True))
    # the loaded model still answers from its own data end
    stale = forecast_request(panel_model, pd.DataFrame({"series_id": ids, "horizon": 48}))
    assert (stale.groupby("series_id")["timestamp"].min() == day0.groupby("series_id")["timestamp"].max()
            + pd.Timedelta(hours=1)).all()


def test_rows_with_and_without_fresh_data_mix_and_overlap_is_skipped(panel_model, day0_and_fresh):
    day0, fresh = day0_and_fresh
    ids = panel_model.series_ids
    # the client sends its last day: the hours the model already has are skipped
    first = ids[0]
    overlap = pd.concat([day0[day0["series_id"] == first].tail(5), fresh[fresh["series_id"] == first]])
    request = pd.concat([_request(overlap, [first], horizon=6),
                         pd.DataFrame([{"series_id": ids[1], "horizon": 3}])], ignore_index=True)
    served = forecast_request(panel_model, request)
    assert served["series_id"].tolist() == [first] * 6 + [ids[1]] * 3
    only_fresh = forecast_request(panel_model, _request(fresh, [first], horizon=6))
    np.testing.assert_allclose(served["mean"].iloc[:6], only_fresh["mean"])
    assert served["timestamp"].iloc[6] == day0[day0["series_id"] == ids[1]]["timestamp"].max() + pd.Timedelta(hours=1)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.drop(columns=["recent_values"]), "without recent_values"),
    (lambda r: r.assign(recent_values=[v[:-1] for v in r["recent_values"]]), "same length"),
    (lambda r: r.assign(recent_values=[[*v[:-1], float("nan")] for v in r["recent_values"]]), "finite numbers"),
    (lambda r: r.assign(recent_values=[[*v[:-1], "12"] for v in r["recent_values"]]), "finite numbers"),
    (lambda r: r.assign(recent_timestamps=[[*t[:-1], "yesterday"] for t in r["recent_timestamps"]]), "ISO"),
    (lambda r: r.assign(recent_timestamps=[t[::-1] for t in r["recent_timestamps"]]), "strictly increasing"),
    (lambda r: r.assign(recent_timestamps=[[s + "+00:00" for s in t] for t in r["recent_timestamps"]]), "time zone"),
    (lambda r: r.assign(recent_timestamps=[t[1:] + ["2030-01-01T00:00:00"] for t in r["recent_timestamps"]]),
     "must continue"),  # a gap after the model's data end
])
def test_bad_fresh_observations_are_400_with_the_row_named(panel_model, day0_and_fresh, change, message):
    _, fresh = day0_and_fresh
    request = change(_request(fresh, panel_model.series_ids[:1]))
    with pytest.raises(MlflowException, match=message) as caught:
        forecast_request(panel_model, request)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_request_size_is_bounded(panel_model, day0_and_fresh, monkeypatch):
    _, fresh = day0_and_fresh
    monkeypatch.setenv("TS_KEDRO_SERVE_MAX_RECENT_OBSERVATIONS", str(FRESH - 1))
    with pytest.raises(MlflowException, match="more than 9 recent observations"):
        forecast_request(panel_model, _request(fresh, panel_model.series_ids[:1]))


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_forecasts_after_the_fresh_observations(tmp_path, panel_model,
                                                                                day0_and_fresh):
    from mlflow import MlflowClient

    from ts_kedro.registry import registry

    from .mlflow_servers import free_port, mlflow_command, running_server, server_env
    from .test_model_serving import post

    _, fresh = day0_and_fresh
    name = "ts_kedro_fresh_serving_test"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("fresh", artifact_location=(tmp_path / "mlruns").as_uri())
    run = client.create_run(experiment_id)
    version = registry.log_and_register(panel_model, name, run_id=run.info.run_id, tracking_uri=tracking_uri)
    registry.promote_if_better(name, version, None, None, margin=0.02, history_path=tmp_path / "history.jsonl",
                               tracking_uri=tracking_uri)
    port = free_port()
    command = mlflow_command("models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local",
                             "-p", str(port), "-h", "127.0.0.1", "-w", "1")
    with running_server(command, f"http://127.0.0.1:{port}/health", tmp_path / "serve.log",
                        server_env(MLFLOW_TRACKING_URI=tracking_uri)):
        url = f"http://127.0.0.1:{port}/invocations"
        request = _request(fresh, panel_model.series_ids)
        status, body = post(url, {"dataframe_records": request.to_dict(orient="records")})
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        served["timestamp"] = pd.to_datetime(served["timestamp"])
        expected = forecast_request(panel_model, request)
        pd.testing.assert_frame_equal(served, expected, check_exact=False, rtol=1e-9)
        bad = request.iloc[:1].assign(recent_values=[[None] * FRESH])
        status, body = post(url, {"dataframe_records": bad.to_dict(orient="records")})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
        assert "recent_values must be finite numbers" in body["message"]
        # covariates (a JSON object per row) reach the model through the signature; this model reads none
        with_covariates = request.iloc[:1].assign(recent_covariates=[{"temperature": [20.0] * FRESH}])
        status, body = post(url, {"dataframe_records": with_covariates.to_dict(orient="records")})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
        assert "sends recent_covariates but this model reads no covariates" in body["message"]
