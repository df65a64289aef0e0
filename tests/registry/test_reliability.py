"""Registry and serving under adversity (issue 13): SIGKILL inside promotion, bad and oversized requests,
request cost, and a server process that follows the champion alias.

The kill tests run the real ``ts-kedro registry promote`` in a subprocess against a SQLite registry
file, make it sleep at a named step (``TS_KEDRO_REGISTRY_PAUSE_AT``), SIGKILL it there, and check that
the next operation (a promotion, a rollback, ``ts-kedro registry repair``) finishes the decision.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from ts_kedro.console import main as console_main
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.registry import SelectedPanelModel, registry
from ts_kedro.registry.pyfunc import AliasFollower, PanelForecastModel, log_panel_model


# -- promotion under SIGKILL ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_registry")
    return f"sqlite:///{root / 'mlflow.db'}", root


def _model_with_champion(store, name: str):
    uri, root = store
    client = MlflowClient(uri, uri)
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=(root / "unused_model").as_uri())
    history = root / f"{name}.jsonl"
    registry.promote_if_better(name, 1, None, None, 0.02, history_path=history, tracking_uri=uri)
    return client, history


def _promote_and_kill_at(step: str, name: str, uri: str, history) -> None:
    """Run `ts-kedro registry promote` (version 2 wins clearly) and SIGKILL it when it reaches ``step``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({registry.PAUSE_AT_ENV: step, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"})
    command = [sys.executable, "-m", "ts_kedro.console", "registry", "promote", "--name", name, "--version", "2",
               "--champion-score", "10", "--challenger-score", "5", "--metric", "smape",
               "--tracking-uri", uri, "--history-path", str(history)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "paused at" not in line:
            line = process.stderr.readline()
            if (not line and process.poll() is not None) or time.monotonic() > deadline:
                pytest.fail(f"promotion did not reach {step}: exit {process.poll()}, {process.stdout.read()[-2000:]}")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stderr.close()
        process.stdout.close()


def _assert_consistent(client: MlflowClient, name: str, uri: str, history) -> list[dict]:
    assert registry.pending_decision(name, uri) is None
    records = registry.read_history(name, uri)
    sequences = [r["sequence"] for r in records]
    assert sequences == list(range(1, len(records) + 1)), sequences  # none lost, none reused
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert sorted(r["sequence"] for r in lines) == sequences  # the JSONL holds each record once
    assert {r["sequence"]: r for r in lines} == {r["sequence"]: r for r in records}
    champion = registry.get_alias_version(name, "champion", uri)
    assert registry.champion_stack(records)[-1] == champion
    aliases = client.get_registered_model(name).aliases
    assert aliases.get("challenger") != str(champion)
    return records


@pytest.mark.parametrize(
    "step, repaired_by",
    [("after_intent", "promotion"), ("after_aliases", "rollback"), ("after_tags", "repair"), ("after_jsonl", "repair")],
)
def test_a_promotion_killed_at_any_step_is_finished_by_the_next_operation(store, step, repaired_by, capsys):
    uri, _ = store
    name = f"kill_{step}_{repaired_by}"
    client, history = _model_with_champion(store, name)
    _promote_and_kill_at(step, name, uri, history)

    pending = registry.pending_decision(name, uri)
    assert pending is not None and pending["record"]["sequence"] == 2 and pending["record"]["promoted"]
    if step != "after_intent":  # the alias already moved: before, rollback refused ("moved outside ts_kedro")
        assert registry.get_alias_version(name, "champion", uri) == 2

    if repaired_by == "promotion":  # the next cycle's decision: version 3 loses against the (now) champion 2
        decision = registry.promote_if_better(name, 3, 5.0, 6.0, 0.02, history_path=history, tracking_uri=uri)
        assert decision["sequence"] == 3 and decision["champion_version_before"] == 2 and not decision["promoted"]
        records = _assert_consistent(client, name, uri, history)
        assert registry.get_alias_version(name, "challenger", uri) == 3
    elif repaired_by == "rollback":
        decision = registry.rollback(name, history_path=history, tracking_uri=uri)
        assert (decision["sequence"], decision["champion_version_before"], decision["champion_version_after"]) == (3, 2, 1)
        records = _assert_consistent(client, name, uri, history)
        assert registry.get_alias_version(name, "champion", uri) == 1
    else:
        assert console_main(["registry", "repair", "--name", name, "--tracking-uri", uri]) == 0
        assert "finished half-done decision #2" in capsys.readouterr().out
        records = _assert_consistent(client, name, uri, history)
        assert registry.get_alias_version(name, "champion", uri) == 2
        assert console_main(["registry", "repair", "--name", name, "--tracking-uri", uri]) == 0
        assert "no half-done decision" in capsys.readouterr().out
    assert records[1]["promoted"] and records[1]["champion_version_after"] == 2


def test_the_cycle_flow_repairs_a_killed_first_promotion_before_choosing_day_0(store, monkeypatch):
    """Killed before the first champion's alias moved: without the repair the next cycle would rerun Day 0."""
    from ts_kedro.orchestration import flows

    uri, root = store
    name = "kill_first_promotion"
    client = MlflowClient(uri, uri)
    client.create_registered_model(name)
    client.create_model_version(name, source=(root / "unused_model").as_uri())
    history = root / f"{name}.jsonl"
    record = registry.PromotionRecord(
        model_name=name, sequence=1, event="promotion", time=registry._now(), promoted=True,
        champion_version_before=None, champion_version_after=1, challenger_version=1,
        reason="no champion yet: version 1 becomes the first champion",
    )
    monkeypatch.setenv(registry.PAUSE_AT_ENV, "after_intent")
    monkeypatch.setattr(registry, "_checkpoint", lambda step: (_ for _ in ()).throw(KeyboardInterrupt) if step == "after_intent" else None)
    with pytest.raises(KeyboardInterrupt):  # stands in for the kill right after the intent was written
        registry._apply(client, record, history)
    assert not registry.champion_exists(name, uri)

    _point_mlflow_at(monkeypatch, uri)
    flows._repair_registry(name)
    assert registry.get_alias_version(name, "champion", uri) == 1
    assert [r["sequence"] for r in registry.read_history(name, uri)] == [1]


# -- serving: request checks, cost, following the alias -----------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, naive_panel_model):
    """The panel model logged with its pyfunc signature and loaded back as `mlflow models serve` does."""
    root = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("served", artifact_location=(root / "mlruns").as_uri()))
    with registry._tracking_uri(uri), mlflow.start_run(run_id=run.info.run_id):
        info = log_panel_model(naive_panel_model)
        model = mlflow.pyfunc.load_model(info.model_uri)
    return model


def invoke(model, payload) -> tuple[int, str]:
    """The scoring server's own request handling (JSON parsing, schema enforcement, predict), in process."""
    try:
        result = scoring_server.invocations(json.dumps(payload), "application/json", model, model.metadata.get_input_schema())
        return result.status, result.response
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message


@pytest.mark.parametrize("horizon", [2.5, 2.9, True, "3", 0, 49])
def test_non_integer_horizons_are_refused_with_400(served, naive_panel_model, horizon):
    series = naive_panel_model.series_ids[0]
    status, message = invoke(served, {"dataframe_records": [{"series_id": series, "horizon": horizon}]})
    assert status == 400, message
    assert "horizon must be an integer from 1 to 48" in message and repr(horizon) in message


def test_integral_horizons_and_levels_on_only_some_rows_are_served(served, naive_panel_model):
    daily, weekly, _ = naive_panel_model.series_ids
    for payload in (
        {"dataframe_records": [{"series_id": daily, "horizon": 3, "levels": [80]}, {"series_id": weekly, "horizon": 2.0}]},
        {"dataframe_split": {"columns": ["series_id", "horizon", "levels"], "data": [[daily, 3, [80]], [weekly, 2, None]]}},
    ):
        status, body = invoke(served, payload)
        assert status == 200, body
        predictions = pd.DataFrame(json.loads(body)["predictions"])
        assert list(predictions.columns) == ["series_id", "timestamp", "mean", "lo-80", "hi-80", "model"]
        assert predictions.groupby("series_id").size().to_dict() == {daily: 3, weekly: 2}


def test_an_oversized_request_fails_fast(served, naive_panel_model):
    rows = [{"series_id": f"UNKNOWN_SERIES_{i:07d}", "horizon": 24} for i in range(150_000)]
    assert len(json.dumps({"dataframe_records": rows})) > 5_000_000
    started = time.monotonic()
    status, message = invoke(served, {"dataframe_records": rows})
    elapsed = time.monotonic() - started
    assert status == 400 and "request has 150000 rows but this model serves 3 series" in message
    assert elapsed < 10, elapsed  # was 60 s (quadratic duplicate check) and a 504


class CountingNaive(SeasonalNaive):
    """Seasonal naive that counts predict calls and is slow, like a large family would be."""

    calls = 0

    def _predict(self, horizon, levels):
        type(self).calls += 1
        time.sleep(0.3)
        return super()._predict(horizon, levels)


def test_requests_slice_forecasts_computed_once(small_panel):
    ids = sorted(small_panel["series_id"].unique())
    family = CountingNaive(freq="h", season_length=24).fit(small_panel)
    model = SelectedPanelModel({"naive": family}, {s: "naive" for s in ids}, [], [80, 95], 24)
    reference = SeasonalNaive(freq="h", season_length=24).fit(small_panel).predict(24, [80])
    CountingNaive.calls = 0
    model.warm_up()
    started = time.monotonic()
    for horizon in (1, 5, 24):
        served = model.predict(ids[:2], horizon=horizon, levels=[80])
        expected = reference[reference["series_id"].isin(ids[:2])].groupby("series_id").head(horizon).reset_index(drop=True)
        pd.testing.assert_frame_equal(served.drop(columns="model"), expected)
    assert CountingNaive.calls == 1 and time.monotonic() - started < 0.5  # was one 0.3 s family call per request
    assert "_forecast_cache" not in pickle_roundtrip(model).__dict__  # derived state is not pickled


def pickle_roundtrip(obj):
    import pickle

    return pickle.loads(pickle.dumps(obj))


def test_a_serving_model_follows_the_alias_after_promote_and_rollback(tmp_path, naive_panel_model, small_panel, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("follow", artifact_location=(tmp_path / "mlruns").as_uri())
    name, history = "follow_test", tmp_path / "history.jsonl"
    ids = naive_panel_model.series_ids
    other = SelectedPanelModel(
        {"naive": SeasonalNaive(freq="h", season_length=24).fit(small_panel[small_panel.series_id.isin(ids)])},
        {s: "naive" for s in ids}, [], [80, 95], 48,
    )
    first = registry.log_and_register(naive_panel_model, name, run_id=client.create_run(experiment).info.run_id, tracking_uri=uri)
    second = registry.log_and_register(other, name, run_id=client.create_run(experiment).info.run_id, tracking_uri=uri)
    registry.promote_if_better(name, first, None, None, 0.02, history_path=history, tracking_uri=uri)

    _point_mlflow_at(monkeypatch, uri)
    monkeypatch.setenv("TS_KEDRO_SERVE_FOLLOW", f"models:/{name}@champion")
    monkeypatch.setenv("TS_KEDRO_SERVE_RELOAD_SECONDS", "0.2")
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    wrapper: PanelForecastModel = served.unwrap_python_model()
    assert isinstance(wrapper.follower, AliasFollower)
    request = {"dataframe_records": [{"series_id": ids[2], "horizon": 2}]}

    def served_model() -> str:
        status, body = invoke(served, request)
        assert status == 200, body
        return json.loads(body)["predictions"][0]["model"]

    def wait_for(expected: str) -> None:
        deadline = time.monotonic() + 30
        while served_model() != expected:
            assert time.monotonic() < deadline, f"still not serving {expected}"
            time.sleep(0.1)

    try:
        assert served_model() == "ensemble"
        registry.promote_if_better(name, second, 10.0, 5.0, 0.02, history_path=history, tracking_uri=uri)
        wait_for("naive")
        assert wrapper.follower.loaded_version == second
        registry.rollback(name, history_path=history, tracking_uri=uri)
        wait_for("ensemble")
        assert wrapper.follower.loaded_version == first
    finally:
        wrapper.follower.stop()


def _point_mlflow_at(monkeypatch, uri: str) -> None:
    """Tracking and registry at ``uri`` for this test only: the environment variable alone loses to the module
    globals an earlier Kedro session (kedro-mlflow's hook) or ``mlflow.set_*_uri`` left set in this process."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", uri)
