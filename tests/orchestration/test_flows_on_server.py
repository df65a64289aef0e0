"""End-to-end: Kedro pipelines run as Prefect flow runs on a real Prefect server (subprocess), read back by its API.

Slow: the server takes ~20-40 s to start on a loaded machine and each flow run is a fresh Python process.
"""
from __future__ import annotations

import json
import os
import subprocess
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.processes import stop_process_group

from .conftest import PYTHON, REPO_ROOT, SMALL_PACKAGE, base_env, free_port, hook_calls, run_cli

pytestmark = pytest.mark.slow

DAY0_NAMESPACE_GROUPS = {
    "select_series": set(),
    "mean_model": {"select_series"},
    "season_model": {"select_series"},
    "compare_forecasts": {"mean_model", "season_model"},
}


def _task_runs(flow_run_id: str):
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    return flow_run, task_runs


def _upstream_names(task_runs) -> dict[str, set[str]]:
    name_of = {run.id: run.name for run in task_runs}
    return {
        run.name: {name_of[ref.id] for ref in run.task_inputs.get("wait_for", [])}
        for run in task_runs
    }


def _mlflow_runs(project):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("probe")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_cycle_without_champion_runs_day0_as_namespace_tasks_with_hooks(small_kedro_project, prefect_server, prefect_api):
    code, summary, output = run_cli(["cycle", "--grouping", "namespace"], prefect_server, small_kedro_project)
    assert code == 0, output[-3000:]
    assert summary["day"] == "day_0" and summary["pipeline"] == "__default__"

    flow_run, task_runs = _task_runs(summary["flow_run_id"])
    assert flow_run.state.is_completed()
    assert flow_run.parent_task_run_id is not None  # the pipeline ran as a subflow of the cycle
    assert {run.name for run in task_runs} == set(DAY0_NAMESPACE_GROUPS)
    assert all(run.state.is_completed() for run in task_runs)
    assert _upstream_names(task_runs) == DAY0_NAMESPACE_GROUPS
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(summary["cycle_flow_run_id"])).state.is_completed()

    calls = hook_calls(small_kedro_project)
    names = [c["hook"] for c in calls]
    assert names.count("before_pipeline_run") == 1 and names.count("after_pipeline_run") == 1
    assert names.index("before_pipeline_run") < names.index("before_node_run")
    assert names.index("after_pipeline_run") == len(names) - 1
    ran = [c["node"] for c in calls if c["hook"] == "after_node_run"]
    assert sorted(ran) == sorted(
        ["select_series", "mean_model.fit", "mean_model.forecast", "season_model.fit", "season_model.forecast",
         "compare_forecasts"]
    )
    assert {c["run_id"] for c in calls if "run_id" in c} == {summary["run_id"]}
    # the in-memory `panel` crossed from select_series to both families: it went through a run-scoped pickle,
    # which is removed after success
    assert {"dataset": "panel", "node": "select_series"}.items() <= next(
        c for c in calls if c["hook"] == "after_dataset_saved"
    ).items()
    assert not list((small_kedro_project / "data" / "05_model_input" / "_prefect").glob("*/*.pkl"))
    assert (small_kedro_project / "data" / "08_reporting" / "comparison.json").is_file()

    # kedro-mlflow tracked the flow run like a `kedro run`: one finished run, params logged from task threads
    [mlflow_run] = _mlflow_runs(small_kedro_project)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["mean_model.window"] == "48"
    assert mlflow_run.data.tags["run_id"] == summary["run_id"]


def test_failing_node_fails_its_task_and_the_flow(small_kedro_project, prefect_server, prefect_api):
    code, summary, output = run_cli(
        ["run", "--grouping", "node", "--params", "fail_compare=true"], prefect_server, small_kedro_project
    )
    assert code == 1, output[-3000:]
    assert "compare_forecasts failed on purpose" in summary["error"]

    with get_client(sync_client=True) as client:  # the server is shared: find this project's flow run
        [flow_run] = [
            run for run in client.read_flow_runs() if run.parameters.get("project_path") == str(small_kedro_project)
        ]
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    assert flow_run.name == "kedro-__default__" and flow_run.state.is_failed()
    states = {run.name: run.state.type.value for run in task_runs}
    assert states.pop("compare_forecasts") == "FAILED"
    assert set(states) == {"select_series", "mean_model.fit", "mean_model.forecast", "season_model.fit",
                           "season_model.forecast"}
    assert set(states.values()) == {"COMPLETED"}
    upstream = _upstream_names(task_runs)
    assert upstream["mean_model.forecast"] == {"mean_model.fit"}
    assert upstream["compare_forecasts"] == {"mean_model.forecast", "season_model.forecast"}

    names = [c["hook"] for c in hook_calls(small_kedro_project)]
    assert "on_node_error" in names and names[-1] == "on_pipeline_error" and "after_pipeline_run" not in names
    [mlflow_run] = _mlflow_runs(small_kedro_project)
    assert mlflow_run.info.status == "FAILED"


def test_cycle_reads_the_champion_alias_from_the_registry(tmp_path):
    """Decision only (in-process, real sqlite MLflow registry): the Day-N pipeline run itself is covered above."""
    import mlflow

    from ts_kedro.orchestration.config import CycleConfig
    from ts_kedro.orchestration.flows import choose_cycle_pipeline

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        cycle = CycleConfig(registered_model_name="probe_forecaster", day_n_pipeline="day_n")
        assert choose_cycle_pipeline(cycle) == ("day_0", "__default__")  # no registered model at all
        client = mlflow.MlflowClient()
        client.create_registered_model("probe_forecaster")
        version = client.create_model_version("probe_forecaster", source=str(tmp_path / "model"))
        assert choose_cycle_pipeline(cycle) == ("day_0", "__default__")  # a version, but no champion yet
        client.set_registered_model_alias("probe_forecaster", "champion", version.version)
        assert choose_cycle_pipeline(cycle) == ("day_n", "day_n")
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture
def dask_scheduler(small_kedro_project, prefect_server, tmp_path):
    """A real `dask scheduler` and one `dask worker` process on loopback (an existing Dask cluster, as in
    production), with the probe project importable in the worker; both stopped after the test."""
    import sys
    import time
    from pathlib import Path

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = str(Path(sys.executable).parent / "dask")
    env = base_env(prefect_server["home"], prefect_server["api_url"])
    env["PYTHONPATH"] = os.pathsep.join([str(small_kedro_project / "src"), str(REPO_ROOT / "src")])
    logs = [open(tmp_path / "scheduler.log", "w"), open(tmp_path / "worker.log", "w")]
    scheduler = subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0"], env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    worker = subprocess.Popen([dask_cli, "worker", address, "--nworkers", "1", "--nthreads", "1",
                               "--host", "127.0.0.1", "--dashboard-address", ":0"],
                              cwd=small_kedro_project, env=env, stdout=logs[1], stderr=subprocess.STDOUT)
    try:
        from distributed import Client

        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(address, timeout=5) as client:
                    if client.scheduler_info()["workers"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dask cluster not ready: {(tmp_path / 'worker.log').read_text()[-2000:]}")
            time.sleep(1)
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


@pytest.mark.slow
def test_dask_task_runner_runs_tasks_in_worker_processes(small_kedro_project, prefect_server, prefect_api, dask_scheduler):
    (small_kedro_project / "conf" / "local" / "orchestration.yml").write_text(
        f"orchestration:\n  task_runner: dask\n  dask_address: {dask_scheduler}\n  grouping: namespace\n"
    )
    code, summary, output = run_cli(["run"], prefect_server, small_kedro_project, timeout=300)
    assert code == 0, output[-3000:]
    _, task_runs = _task_runs(summary["flow_run_id"])
    assert _upstream_names(task_runs) == DAY0_NAMESPACE_GROUPS
    calls = hook_calls(small_kedro_project)
    flow_pid = next(c["pid"] for c in calls if c["hook"] == "before_pipeline_run")
    node_pids = {c["pid"] for c in calls if c["hook"] == "before_node_run"}
    assert flow_pid not in node_pids  # nodes ran in the Dask worker, rebuilt from the persisted datasets
    [mlflow_run] = _mlflow_runs(small_kedro_project)  # worker-side param logging reached the flow's run
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.params["season_model.season_length"] == "24"


def test_prefect_yaml_deployment_registers_with_its_cron(prefect_server, prefect_api):
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ts-kedro-process", type="process"))
    env = base_env(prefect_server["home"], prefect_server["api_url"])
    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "prefect"), "--no-prompt", "deploy", "--name", "ts-kedro-hourly"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("ts_kedro_cycle/ts-kedro-hourly")
    assert deployment.work_pool_name == "ts-kedro-process"
    assert deployment.entrypoint == "src/ts_kedro/orchestration/flows.py:ts_kedro_cycle"
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("5 * * * *", "UTC", True)


def test_served_deployment_uses_the_configured_schedule(project_root, prefect_server, prefect_api):
    from ts_kedro.orchestration.config import load_orchestration_config
    from ts_kedro.orchestration.serve import build_deployment

    configured = load_orchestration_config(project_root).deployment
    deployment_id = build_deployment(project_root).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == configured.name
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (configured.cron, configured.timezone)
    assert deployment.parameters["project_path"] == str(project_root)


LOGGING_MARKER = '''
"""A logging handler that records where the logging configuration was applied (the serve test)."""
import json
import logging
import os


class MarkerHandler(logging.NullHandler):
    def __init__(self):
        super().__init__()
        from prefect.context import FlowRunContext

        with open(os.environ["LOGGING_MARKER_PATH"], "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "in_flow": FlowRunContext.get() is not None}) + "\\n")
'''

MARKER_LOGGING_CONFIG = """
version: 1
disable_existing_loggers: false
handlers:
  marker:
    class: {pkg}.logging_marker.MarkerHandler
root:
  level: INFO
  handlers: [marker]
"""


def test_a_served_deployment_runs_the_cycle_in_a_runner_process(small_kedro_project, prefect_server, prefect_api):
    """``python -m ts_kedro.orchestration.serve`` registers the cycle and Prefect's runner executes a run of it in a
    process of its own (not the CLI's): the flow bootstraps the project there itself, runs Day 0 and completes.
    Logs go to the server at INFO, as in production.

    Kedro's logging set-up inside a running flow deadlocked with Prefect's log worker (a race: this run would
    usually complete anyway), so the test also checks the cause: the project's logging configuration names a
    handler that records, each time the configuration is applied, whether a flow run was active. It is applied
    at Kedro's import in each process, and never inside the flow (``bootstrap_in_flow``); before, once there."""
    import signal
    import time

    from prefect.deployments import run_deployment

    # a deployment name of its own: the session's server also holds the default name, registered by another test
    (small_kedro_project / "conf" / "base" / "orchestration.yml").write_text(
        "orchestration:\n  deployment:\n    name: probe-served\n")
    marker = small_kedro_project / "logging_applied.jsonl"
    (small_kedro_project / "src" / SMALL_PACKAGE / "logging_marker.py").write_text(LOGGING_MARKER)
    (small_kedro_project / "conf" / "logging.yml").write_text(MARKER_LOGGING_CONFIG.format(pkg=SMALL_PACKAGE))
    env = base_env(prefect_server["home"], prefect_server["api_url"])
    env["PYTHONPATH"] = os.pathsep.join([str(small_kedro_project / "src"), str(REPO_ROOT / "src")])
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    env.update(KEDRO_LOGGING_CONFIG=str(small_kedro_project / "conf" / "logging.yml"),
               KEDRO_LOGGING_MODULE_ALLOWLIST=SMALL_PACKAGE, LOGGING_MARKER_PATH=str(marker))
    log_path = small_kedro_project / "serve.log"
    with open(log_path, "w") as log:
        served = subprocess.Popen(
            [PYTHON, "-m", "ts_kedro.orchestration.serve", "--project-path", str(small_kedro_project),
             "--cron", "0 0 1 1 *"],  # once a year: only the run this test starts
            cwd=small_kedro_project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                assert served.poll() is None, log_path.read_text()[-3000:]
                try:
                    deployment = client.read_deployment_by_name("ts_kedro_cycle/probe-served")
                    break
                except Exception:  # noqa: BLE001 - not registered yet
                    assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(1)
        assert deployment.parameters["project_path"] == str(small_kedro_project)
        flow_run = run_deployment("ts_kedro_cycle/probe-served", timeout=0)
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            while not (flow_run := client.read_flow_run(flow_run.id)).state.is_final():
                assert served.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{flow_run.state}: {log_path.read_text()[-3000:]}"
                time.sleep(2)
        assert flow_run.state.is_completed(), f"{flow_run.state}: {log_path.read_text()[-3000:]}"
    finally:
        stop_process_group(served, signal.SIGINT, grace_s=30)
    applied = [json.loads(line) for line in marker.read_text().splitlines()]
    assert any(entry["pid"] != served.pid for entry in applied)  # the runner's flow process applied it at import
    assert not [entry for entry in applied if entry["in_flow"]], applied
    day0 = [c for c in hook_calls(small_kedro_project) if c["hook"] == "after_pipeline_run"]
    assert day0, "the served run ran no Kedro pipeline"
    [mlflow_run] = _mlflow_runs(small_kedro_project)
    assert mlflow_run.info.status == "FINISHED"
