"""`mlflow models serve` of models:/<name>@champion in a fresh process: forecasts, and HTTP 400 on bad requests."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pandas as pd
import pytest
from mlflow import MlflowClient

from .mlflow_servers import free_port, mlflow_command, running_server, server_env
from ts_kedro.registry import registry

MODEL = "ts_kedro_panel_serving_test"


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def champion_server(tmp_path, naive_panel_model):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("serving_test", artifact_location=(tmp_path / "mlruns").as_uri())
    run = client.create_run(experiment_id)
    version = registry.log_and_register(naive_panel_model, MODEL, run_id=run.info.run_id, tracking_uri=tracking_uri)
    registry.promote_if_better(
        MODEL, version, None, None, margin=0.02, history_path=tmp_path / "history.jsonl", tracking_uri=tracking_uri
    )

    port = free_port()
    command = mlflow_command(
        "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
        "-p", str(port), "-h", "127.0.0.1", "-w", "1",
    )
    env = server_env(MLFLOW_TRACKING_URI=tracking_uri)
    with running_server(command, f"http://127.0.0.1:{port}/health", tmp_path / "serve.log", env):
        yield f"http://127.0.0.1:{port}/invocations"


@pytest.mark.slow
def test_champion_serves_forecasts_and_rejects_bad_requests_with_400(champion_server, naive_panel_model):
    daily, weekly, ensemble = naive_panel_model.series_ids

    status, body = post(
        champion_server,
        {"dataframe_split": {"columns": ["series_id", "horizon"], "data": [[daily, 24], [ensemble, 6]]}},
    )
    assert status == 200, body
    served = pd.DataFrame(body["predictions"])
    served["timestamp"] = pd.to_datetime(served["timestamp"])
    expected = naive_panel_model.predict([daily, ensemble], horizon={daily: 24, ensemble: 6})
    pd.testing.assert_frame_equal(served, expected)
    assert served.groupby("series_id").size().to_dict() == {daily: 24, ensemble: 6}
    assert served["model"].tolist() == ["daily_naive"] * 24 + ["ensemble"] * 6
    assert (served["lo-95"] <= served["lo-80"]).all() and (served["hi-80"] <= served["hi-95"]).all()

    status, body = post(champion_server, {"dataframe_records": [{"series_id": weekly, "horizon": 3, "levels": [80]}]})
    assert status == 200, body
    assert list(body["predictions"][0]) == ["series_id", "timestamp", "mean", "lo-80", "hi-80", "model"]
    assert len(body["predictions"]) == 3

    status, body = post(champion_server, {"dataframe_records": [{"series_id": daily, "horizon": 2},
                                                                 {"series_id": "NOT_A_SERIES", "horizon": 2}]})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "unknown series_id 'NOT_A_SERIES'" in body["message"]

    for bad_horizon in (0, 49):
        status, body = post(champion_server, {"dataframe_records": [{"series_id": daily, "horizon": bad_horizon}]})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"horizon must be an integer from 1 to 48 (the backtested horizon); got {bad_horizon}" in body["message"]

    status, body = post(champion_server, {"dataframe_records": [{"series_id": daily}]})
    assert status == 400 and "horizon" in body["message"]
