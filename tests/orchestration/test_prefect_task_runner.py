"""`PrefectTaskRunner`, the Kedro runner behind the flow: node and dataset hooks fire per node, inside the task
of the node's group, as under Kedro's own runner; failures propagate; the session hands it its hook manager.

The in-process tests run a real Prefect flow against the session's Prefect server (threads task runner); the
session tests run in a subprocess on the probe project of conftest.py (bootstrapping it in the pytest process
would swap Kedro's global settings under the other tests).
"""
from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest
from kedro.framework.hooks import _create_hook_manager, hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from prefect import flow
from prefect import runtime as prefect_runtime
from prefect.task_runners import ThreadPoolTaskRunner

from ts_kedro.orchestration.config import PipelineRunConfig
from ts_kedro.orchestration.kedro_prefect import CrossingDatasetError, PrefectTaskRunner

from .conftest import PYTHON, REPO_ROOT, base_env, hook_calls, run_cli

NODE_LEVEL_HOOKS = ("before_node_run", "after_node_run", "on_node_error", "before_dataset_loaded",
                    "after_dataset_loaded", "before_dataset_saved", "after_dataset_saved")


def _scale(panel, factor):
    return [v * factor for v in panel]


def _mean(values):
    return sum(values) / len(values)


def _pick(a, b):
    return {"arima": a, "lstm": b}


def _fail(panel, factor):
    raise RuntimeError("lstm.fit failed on purpose")


def family_pipeline(fail_lstm: bool = False) -> Pipeline:
    """Shared preparation, two namespaced families (fit -> forecast), selection: the training stage's shape."""

    def family(fit):
        return Pipeline([Node(fit, ["panel", "params:factor"], "model", name="fit"),
                         Node(_mean, "model", "forecast", name="forecast")])

    prepare = Pipeline([Node(_scale, ["raw_panel", "params:factor"], "panel", name="prepare")])
    arima = Pipeline(family(_scale), namespace="arima", inputs={"panel"}, parameters={"params:factor"})
    lstm = Pipeline(family(_fail if fail_lstm else _scale), namespace="lstm", inputs={"panel"},
                    parameters={"params:factor"})
    select = Pipeline([Node(_pick, ["arima.forecast", "lstm.forecast"], "selection", name="select")])
    return prepare + arima + lstm + select


def family_catalog() -> DataCatalog:
    catalog = DataCatalog({"raw_panel": MemoryDataset([1.0, 2.0, 3.0])})
    catalog["params:factor"] = 2.0
    return catalog


class RecordingHooks:
    """Every node and dataset hook call, with the Prefect task run it happened in (None outside a task)."""

    def __init__(self):
        self.calls: list[dict] = []

    def _record(self, hook, **fields):
        self.calls.append({"hook": hook, "task": prefect_runtime.task_run.name or None, **fields})

    @hook_impl
    def before_node_run(self, node, run_id):
        self._record("before_node_run", node=node.name, run_id=run_id)

    @hook_impl
    def after_node_run(self, node, outputs, run_id):
        self._record("after_node_run", node=node.name, run_id=run_id, outputs=sorted(outputs))

    @hook_impl
    def on_node_error(self, error, node, run_id):
        self._record("on_node_error", node=node.name, run_id=run_id, error=str(error))

    @hook_impl
    def before_dataset_loaded(self, dataset_name, node):
        self._record("before_dataset_loaded", node=node.name, dataset=dataset_name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name, node):
        self._record("after_dataset_loaded", node=node.name, dataset=dataset_name)

    @hook_impl
    def before_dataset_saved(self, dataset_name, node):
        self._record("before_dataset_saved", node=node.name, dataset=dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name, node):
        self._record("after_dataset_saved", node=node.name, dataset=dataset_name)


def _run(runner, pipeline, catalog, run_id="2026-01-01T00.00.00.000Z"):
    hooks = RecordingHooks()
    manager = _create_hook_manager()
    manager.register(hooks)

    @flow(name="prefect-task-runner-probe", task_runner=ThreadPoolTaskRunner(max_workers=2))
    def probe_flow():
        return runner.run(pipeline, catalog, manager, run_id=run_id)

    return probe_flow, hooks


def _signature(calls):
    """What a hook call says about the run, without where it ran: comparable across runners."""
    return Counter((c["hook"], c["node"], c.get("dataset")) for c in calls)


@pytest.mark.parametrize("grouping", ["namespace", "node"])
def test_node_and_dataset_hooks_fire_per_node_inside_their_groups_task(grouping, tmp_path, prefect_api):
    config = PipelineRunConfig(grouping=grouping, intermediate_dir="intermediate")
    runner = PrefectTaskRunner(config, tmp_path, "training")
    probe_flow, hooks = _run(runner, family_pipeline(), catalog := family_catalog())
    result = probe_flow()
    assert result["selection"].load() == {"arima": 8.0, "lstm": 8.0}  # (1+2+3)/3 * 2 * 2

    group_of = {node: g.name for g in runner.task_groups for node in g.node_names}
    assert set(group_of) == {"prepare", "arima.fit", "arima.forecast", "lstm.fit", "lstm.forecast", "select"}
    for call in hooks.calls:  # every hook fired inside the Prefect task of its node's group
        assert call["task"] == group_of[call["node"]], call
    assert {c["run_id"] for c in hooks.calls if "run_id" in c} == {"2026-01-01T00.00.00.000Z"}
    per_node = Counter((c["hook"], c["node"]) for c in hooks.calls if c["hook"].endswith("node_run"))
    assert per_node == Counter({(hook, node): 1 for node in group_of for hook in ("before_node_run", "after_node_run")})

    # the same calls as Kedro's SequentialRunner on the same pipeline (`kedro run`), where they ran aside
    sequential_hooks = RecordingHooks()
    manager = _create_hook_manager()
    manager.register(sequential_hooks)
    SequentialRunner().run(family_pipeline(), family_catalog(), manager, run_id="sequential")
    assert _signature(hooks.calls) == _signature(sequential_hooks.calls)

    # in-memory datasets crossing a task boundary went through run-scoped pickles
    crossing = {"panel", "arima.forecast", "lstm.forecast"} | ({"arima.model", "lstm.model"} if grouping == "node" else set())
    pickles = {p.stem for p in (tmp_path / "intermediate" / "2026-01-01T00.00.00.000Z").glob("*.pkl")}
    assert pickles == crossing
    assert type(catalog.get("panel")).__name__ == "PickleDataset"
    runner.remove_intermediates()
    assert not (tmp_path / "intermediate" / "2026-01-01T00.00.00.000Z").exists()


def test_a_failing_node_fails_the_run_with_its_own_error(tmp_path, prefect_api):
    runner = PrefectTaskRunner(PipelineRunConfig(grouping="namespace", intermediate_dir="i"), tmp_path, "training")
    probe_flow, hooks = _run(runner, family_pipeline(fail_lstm=True), family_catalog())
    with pytest.raises(RuntimeError, match="lstm.fit failed on purpose"):
        probe_flow()
    errors = [c for c in hooks.calls if c["hook"] == "on_node_error"]
    assert [(c["node"], c["task"]) for c in errors] == [("lstm.fit", "lstm")]
    ran = {c["node"] for c in hooks.calls if c["hook"] == "after_node_run"}
    assert "select" not in ran and {"prepare", "arima.fit", "arima.forecast"} <= ran
    assert list((tmp_path / "i").rglob("panel.pkl"))  # kept after a failure, for inspection


def test_fail_policy_refuses_an_in_memory_crossing_dataset_before_any_task(tmp_path, prefect_api):
    config = PipelineRunConfig(grouping="namespace", crossing_memory_datasets="fail")
    probe_flow, hooks = _run(PrefectTaskRunner(config, tmp_path, "training"), family_pipeline(), family_catalog())
    with pytest.raises(CrossingDatasetError, match="'panel' \\(written by task 'prepare'\\)"):
        probe_flow()
    assert hooks.calls == []


def test_runner_is_named_in_the_run_params():
    runner = PrefectTaskRunner(PipelineRunConfig(task_runner="dask", grouping="node"), ".", "day_n")
    assert str(runner) == "PrefectTaskRunner(task_runner='dask', grouping='node')"


SESSION_PROBE = """
import json, sys
from pathlib import Path

import pluggy
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import SequentialRunner

from ts_kedro.orchestration.kedro_prefect import _rebuilt_session_hook_manager

root = Path(sys.argv[1])
bootstrap_project(root)
handed = []


class CapturingRunner(SequentialRunner):
    def run(self, pipeline, catalog, hook_manager=None, run_id=None, only_missing_outputs=False):
        handed.append(hook_manager)
        return super().run(pipeline, catalog, hook_manager, run_id, only_missing_outputs)


with KedroSession.create(project_path=root, save_on_close=False) as session:
    try:
        accessed = _rebuilt_session_hook_manager(session)
    except AttributeError as err:
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
        sys.exit(0)
    session.run(pipeline_names=["prepare"], runner=CapturingRunner())
print(json.dumps({
    "same": len(handed) == 1 and handed[0] is accessed,
    "plugin_manager": isinstance(accessed, pluggy.PluginManager),
    "hooks": sorted(type(plugin).__name__ for plugin in accessed.get_plugins()),
}))
"""


def _probe_env(project, prefect_home):
    env = base_env(prefect_home)
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), str(REPO_ROOT / "src")])
    return env


def test_the_worker_hook_manager_is_the_one_kedro_session_run_hands_to_runners(small_kedro_project, tmp_path):
    """Pins the one private Kedro member kedro_prefect.py reads (checked against kedro 1.7): if a Kedro upgrade
    renames `KedroSession._hook_manager` or stops passing it to the runner, this fails and says so."""
    result = subprocess.run([PYTHON, "-c", SESSION_PROBE, str(small_kedro_project)], cwd=small_kedro_project,
                            env=_probe_env(small_kedro_project, tmp_path), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in probe, (
        f"{probe.get('error')}: KedroSession no longer has the hook manager that "
        "kedro_prefect._rebuilt_session_hook_manager reads; find the new way to get it for Dask workers"
    )
    assert probe["same"], "the session handed its runner another hook manager than _rebuilt_session_hook_manager's"
    assert probe["plugin_manager"] and {"RecordingHook", "MlflowHook"} <= set(probe["hooks"]), probe


KEDRO_RUN = """
import sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

root = Path(sys.argv[1])
bootstrap_project(root)
with KedroSession.create(project_path=root) as session:
    session.run()
"""


@pytest.mark.slow
def test_the_flow_fires_the_hooks_of_kedro_run(small_kedro_project, prefect_server, prefect_api):
    """The probe's Day 0 under `KedroSession.run()` (Kedro's SequentialRunner, what `kedro run` does) and as a
    flow run with one task per node: the same hook calls, node by node and dataset by dataset, and the
    session-level ones once each in the same order."""
    result = subprocess.run([PYTHON, "-c", KEDRO_RUN, str(small_kedro_project)], cwd=small_kedro_project,
                            env=_probe_env(small_kedro_project, prefect_server["home"]), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    kedro_run = hook_calls(small_kedro_project)
    (small_kedro_project / "hook_calls.jsonl").unlink()

    code, summary, output = run_cli(["run", "--grouping", "node"], prefect_server, small_kedro_project)
    assert code == 0, output[-3000:]
    flow_run = hook_calls(small_kedro_project)

    def node_level(calls):
        return Counter((c["hook"], c.get("node"), c.get("dataset")) for c in calls if c["hook"] in NODE_LEVEL_HOOKS)

    def session_level(calls):
        return [c["hook"] for c in calls if c["hook"] not in NODE_LEVEL_HOOKS]

    assert node_level(flow_run) == node_level(kedro_run)
    assert session_level(flow_run) == session_level(kedro_run) == [
        "after_context_created", "after_catalog_created", "before_pipeline_run", "after_pipeline_run"]
    assert {c["run_id"] for c in flow_run if "run_id" in c} == {summary["run_id"]}
    assert len(summary["tasks"]) == 6
