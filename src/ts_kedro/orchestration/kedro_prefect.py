"""Run a Kedro pipeline as a Prefect flow run: `KedroSession.run` with a runner whose tasks are Prefect tasks.

The flow creates a `KedroSession` and calls its public `run(pipeline_names=[...], runner=PrefectTaskRunner(...))`,
so the session itself does everything `kedro run` does: it loads the context (`after_context_created`, where
kedro-mlflow reads mlflow.yml), builds the catalog with the session id as save version (`after_catalog_created`),
fires `before_pipeline_run` once (kedro-mlflow opens the MLflow run, `PerSeriesClusterHook` the per-series
cluster), hands the pipeline, catalog, hook manager and run id to the runner, and ends with `after_pipeline_run`,
or `on_pipeline_error` and the error re-raised (the flow run is then Failed).

`PrefectTaskRunner` is a `kedro.runner.AbstractRunner` subclass (the extension point `SequentialRunner` and
`ThreadRunner` use): `AbstractRunner.run` checks the inputs and materialises every dataset, then its `_run`
1. cuts the pipeline into task groups (`plan_task_groups`: one per node, or one per top-level namespace);
2. makes every dataset that crosses a group boundary loadable by any task (`crossing_memory_datasets`: an
   in-memory one becomes a run-scoped pickle, or the run is refused);
3. submits each group as a Prefect task with `wait_for=` its upstream groups' futures, so independent
   branches (the model families) run in parallel under a thread or Dask task runner, and raises the first
   node failure. A task runs its nodes with Kedro's `SequentialRunner` on the session's catalog and hook
   manager, so `before_node_run`, `after_dataset_saved`, `on_node_error`, ... fire per node as under
   `kedro run`.

Under Dask a task may run in another process. There it rebuilds the project's session from the picklable
`KedroRunSpec` (public API: `KedroSession.create`, `load_context()`, `context.catalog`), swaps in the run's
persisted crossing datasets, resumes the flow's MLflow run so kedro-mlflow's node-level logging lands in it,
and opens `orchestration.per_series.cluster` around its nodes. Two differences from the flow process follow
from Kedro's public API: the rebuilt catalog's save version is the timestamp at which that worker built it
(`DataCatalog.from_config` generates one), not the session id; and the node hooks are fired through the
rebuilt session's hook manager, the one private Kedro member this module reads (`_rebuilt_session_hook_manager`,
pinned by a test). Pipeline-level hooks never fire in a worker.
"""
from __future__ import annotations

import logging
import shutil
import sys
import threading
import tomllib
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from kedro.framework.project import configure_project
from kedro.framework.project import pipelines as kedro_pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import AbstractRunner, SequentialRunner
from kedro.utils import find_kedro_project
from prefect import flow, task
from prefect import runtime as prefect_runtime
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from ts_kedro.orchestration.config import (
    OrchestrationConfigError,
    PipelineRunConfig,
    load_orchestration_config,
    pause_at,
)
from ts_kedro.orchestration.per_series_cluster import per_series_scope_for_task

logger = logging.getLogger(__name__)


class CrossingDatasetError(ValueError):
    """A dataset that crosses a Prefect task boundary is only in memory, and the policy is `fail`."""


@dataclass(frozen=True)
class TaskGroup:
    """Kedro nodes run together by one Prefect task, and the groups that must finish first."""

    name: str
    node_names: tuple[str, ...]
    upstream: tuple[str, ...]


@dataclass(frozen=True)
class KedroRunSpec:
    """Everything a task needs to find (or rebuild, in another process) the run's catalog and hooks."""

    project_path: str
    pipeline_name: str
    run_id: str
    env: str | None = None
    runtime_params: dict[str, Any] = field(default_factory=dict)
    persisted_intermediates: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None


@dataclass
class _KedroExecution:
    """The live objects of one run in one process: tasks in that process share them."""

    pipeline: Pipeline
    catalog: Any
    hook_manager: Any
    rebuilt: bool = False


# run_id -> execution. The runner registers the flow process's own; Dask worker processes fill it lazily
# (bounded: a long-lived worker sees many runs).
_EXECUTIONS: OrderedDict[str, _KedroExecution] = OrderedDict()
_EXECUTIONS_LOCK = threading.Lock()
_MAX_REBUILT_EXECUTIONS = 4


def plan_task_groups(pipeline: Pipeline, grouping: str) -> list[TaskGroup]:
    """Cut a pipeline into Prefect task groups, in an order where every group follows its upstream groups.

    Args:
        pipeline: The Kedro pipeline to run.
        grouping: "node" (one group per node) or "namespace" (one per top-level namespace; nodes without
            a namespace stay alone).

    Returns:
        Task groups in topological order.
    """
    if grouping not in ("node", "namespace"):
        raise OrchestrationConfigError(f"orchestration.grouping must be 'node' or 'namespace', got {grouping!r}")
    grouped = pipeline.group_nodes_by("namespace" if grouping == "namespace" else None)
    names = [g.name for g in grouped]
    # A node name can equal a namespace name ("training" node vs "training." namespace): tasks would collide.
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OrchestrationConfigError(
            f"task group name(s) {duplicates} are both a node name and a namespace: rename the node(s) or use "
            "grouping: node"
        )
    by_name = {g.name: g for g in grouped}
    ordered: list[TaskGroup] = []
    done: set[str] = set()
    pending = list(names)
    while pending:
        ready = [n for n in pending if set(by_name[n].dependencies) <= done]
        if not ready:
            # Namespace grouping can merge nodes that sit before and after an outside node: A.x -> b -> A.y.
            raise OrchestrationConfigError(
                f"grouping '{grouping}' creates a dependency cycle between task groups {sorted(pending)}: "
                "a namespace both feeds and consumes a node outside it. Use grouping: node, or move that node "
                "into the namespace."
            )
        for name in ready:
            group = by_name[name]
            node_order = {n.name: i for i, n in enumerate(pipeline.nodes)}
            ordered.append(
                TaskGroup(
                    name=name,
                    node_names=tuple(sorted(group.nodes, key=node_order.__getitem__)),
                    upstream=tuple(sorted(group.dependencies)),
                )
            )
            done.add(name)
        pending = [n for n in pending if n not in done]
    return ordered


def crossing_datasets(pipeline: Pipeline, groups: list[TaskGroup]) -> dict[str, str]:
    """Datasets produced in one task group and consumed in another.

    Returns:
        Dataset name -> name of the producing group.
    """
    group_of_node = {node: g.name for g in groups for node in g.node_names}
    producer: dict[str, str] = {}
    for node in pipeline.nodes:
        for output in node.outputs:
            producer[output] = group_of_node[node.name]
    crossing: dict[str, str] = {}
    for node in pipeline.nodes:
        for dataset in node.inputs:
            if dataset in producer and producer[dataset] != group_of_node[node.name]:
                crossing[dataset] = producer[dataset]
    return crossing


def build_task_runner(config: PipelineRunConfig) -> Any:
    """The Prefect task runner named by `orchestration.task_runner`."""
    if config.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if config.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    from prefect_dask import DaskTaskRunner  # optional dependency: only imported when Dask is asked for

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": config.dask_n_workers, "threads_per_worker": 1, "processes": True}
    )


class PrefectTaskRunner(AbstractRunner):
    """A Kedro runner that runs a pipeline as Prefect tasks of the current flow run, one per task group.

    Use it inside a Prefect flow through `KedroSession.run(runner=...)`: the session fires the pipeline hooks
    and passes its catalog and hook manager; each task runs its nodes with `SequentialRunner` on them.

    Args:
        config: The `orchestration` block (grouping, crossing-dataset policy, intermediate folder, retries,
            timeouts).
        project_path: The Kedro project root (a Dask worker rebuilds the session from it).
        pipeline_name: The registered pipeline the session runs (a Dask worker looks its nodes up by it).
        env: The Kedro environment of the session.
        runtime_params: The session's runtime parameters.

    After a run, `task_groups` holds the groups that ran and `intermediate_root` the folder of the run's
    persisted crossing datasets (None when none was needed).
    """

    def __init__(
        self,
        config: PipelineRunConfig,
        project_path: str | Path,
        pipeline_name: str,
        env: str | None = None,
        runtime_params: dict[str, Any] | None = None,
    ):
        super().__init__(is_async=False)
        self.config = config
        self.project_path = Path(project_path)
        self.pipeline_name = pipeline_name
        self.env = env
        self.runtime_params = dict(runtime_params or {})
        self.task_groups: list[TaskGroup] = []
        self.intermediate_root: Path | None = None

    def __repr__(self) -> str:  # KedroSession records str(runner) in run_params (kedro-mlflow's "runner" tag)
        return f"PrefectTaskRunner(task_runner={self.config.task_runner!r}, grouping={self.config.grouping!r})"

    def _get_executor(self, max_workers: int) -> None:
        return None  # the Prefect task runner of the flow executes the tasks

    def _run(
        self,
        pipeline: Pipeline,
        catalog: Any,
        hook_manager: Any = None,
        run_id: str | None = None,
    ) -> None:
        """Submit one Prefect task per group and wait for all; raise the first node failure.

        Called by `AbstractRunner.run` after it has checked the inputs and materialised every dataset.
        """
        if run_id is None:
            raise ValueError("PrefectTaskRunner needs the run id: run it through KedroSession.run")
        groups = plan_task_groups(pipeline, self.config.grouping)
        intermediate_root = self.project_path / self.config.intermediate_dir / _safe_folder_name(run_id)
        persisted = _persist_crossing_datasets(
            catalog, crossing_datasets(pipeline, groups), self.config.crossing_memory_datasets, intermediate_root
        )
        self.task_groups = groups
        self.intermediate_root = intermediate_root if persisted else None
        spec = KedroRunSpec(
            project_path=str(self.project_path),
            pipeline_name=self.pipeline_name,
            run_id=run_id,
            env=self.env,
            runtime_params=self.runtime_params,
            persisted_intermediates=persisted,
            mlflow_run_id=_active_mlflow_run_id(),  # kedro-mlflow opened it in before_pipeline_run
        )
        logger.info(
            "Kedro pipeline '%s' as %d Prefect task(s) (grouping=%s, runner=%s, run_id=%s)",
            self.pipeline_name, len(groups), self.config.grouping, self.config.task_runner, run_id,
        )
        with _EXECUTIONS_LOCK:
            _EXECUTIONS[run_id] = _KedroExecution(pipeline=pipeline, catalog=catalog, hook_manager=hook_manager)
        try:
            _submit_and_wait(spec, groups, self.config)
        finally:
            with _EXECUTIONS_LOCK:
                _EXECUTIONS.pop(run_id, None)

    def remove_intermediates(self) -> None:
        """Delete the run's persisted crossing datasets, unless `keep_intermediate` (call after a success)."""
        if self.intermediate_root is not None and not self.config.keep_intermediate:
            shutil.rmtree(self.intermediate_root, ignore_errors=True)


@task(name="kedro-task-group", cache_policy=NO_CACHE)
def run_kedro_task_group(spec: KedroRunSpec, group_name: str, node_names: list[str]) -> list[str]:
    """Run one group's Kedro nodes with Kedro's SequentialRunner (node and dataset hooks fire).

    Returns:
        The datasets this group produced.
    """
    pause_at(f"before_task:{group_name}")  # kill tests only (TS_KEDRO_PAUSE_AT); no-op when unset
    execution = _execution_for(spec)
    group_pipeline = execution.pipeline.only_nodes(*node_names)
    logger.info("task %s: running Kedro node(s) %s", group_name, ", ".join(node_names))
    # A rebuilt execution (a Dask worker process) fired no before_pipeline_run: open the per-series cluster here.
    per_series = per_series_scope_for_task(spec.project_path, spec.env) if execution.rebuilt else nullcontext()
    with _resumed_mlflow_run(spec if execution.rebuilt else None), per_series:
        SequentialRunner().run(group_pipeline, execution.catalog, execution.hook_manager, run_id=spec.run_id)
    return sorted(group_pipeline.outputs())


@flow(name="kedro-pipeline", flow_run_name="kedro-{pipeline_name}", validate_parameters=True)
def kedro_pipeline_flow(
    pipeline_name: str = "__default__",
    project_path: str | None = None,
    env: str | None = None,
    runtime_params: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one registered Kedro pipeline as Prefect tasks. Use `run_kedro_pipeline` to get the configured
    task runner; calling this flow directly uses the flow's default (threads).

    Returns:
        `run_id` (the Kedro session id), `flow_run_id`, `pipeline` and `tasks` (group name -> node names).
    """
    root = resolve_project_path(project_path)
    config = _pipeline_run_config(root, env, config_overrides)
    bootstrap_in_flow(root)
    runner = PrefectTaskRunner(config, root, pipeline_name, env=env, runtime_params=runtime_params)
    with KedroSession.create(project_path=root, env=env, runtime_params=runtime_params or {}) as session:
        session.run(pipeline_names=[pipeline_name], runner=runner)
    runner.remove_intermediates()  # after after_pipeline_run: its hooks may still read them
    return {
        "run_id": session.session_id,
        "flow_run_id": str(prefect_runtime.flow_run.id),
        "pipeline": pipeline_name,
        "tasks": {g.name: list(g.node_names) for g in runner.task_groups},
    }


def run_kedro_pipeline(
    pipeline_name: str = "__default__",
    project_path: str | Path | None = None,
    env: str | None = None,
    runtime_params: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `kedro_pipeline_flow` with the task runner from the configuration (a subflow inside a flow)."""
    root = resolve_project_path(project_path)
    config = _pipeline_run_config(root, env, config_overrides)
    configured_flow = kedro_pipeline_flow.with_options(task_runner=build_task_runner(config))
    return configured_flow(
        pipeline_name=pipeline_name,
        project_path=str(root),
        env=env,
        runtime_params=runtime_params,
        config_overrides=config_overrides,
    )


def bootstrap_before_flows(project_path: str | Path | None) -> Path:
    """Bootstrap the Kedro project in this process before any Prefect flow runs in it; returns its root.

    Why: the first ``bootstrap_project`` of a process applies the project's logging configuration with
    ``logging.config.dictConfig``, which flushes every existing handler while holding the logging module's lock.
    Inside a running flow one of them is Prefect's API log handler, whose flush waits for its log worker thread;
    a worker just starting needs that same lock, so the cycle hung at "configuring MLflow tracking" with every
    thread waiting on a lock (the SIGKILL test, 2026-12-07; stacks taken with faulthandler). Code inside flows
    calls `bootstrap_in_flow`, which never applies logging; this applies the project's logging where it is safe.
    """
    root = resolve_project_path(project_path)
    bootstrap_project(root)
    return root


def bootstrap_in_flow(project_path: str | Path) -> None:
    """``bootstrap_project`` for code that runs inside a Prefect flow or task: the project's settings and
    pipelines, never the logging set-up.

    Why: a process's first ``bootstrap_project`` applies Kedro's logging with ``logging.config.dictConfig``,
    which deadlocked against Prefect's API log handler inside a running flow (see `bootstrap_before_flows`).
    The cycle CLI bootstraps before its flows, but a flow run that Prefect's runner starts in a process of its
    own (``python -m ts_kedro.orchestration.serve``, a work-pool deployment) enters the flow unbootstrapped.
    Kedro's public ``configure_project(..., preserve_logging=True)`` configures the project without touching
    logging; the package logger gets Kedro's default project level (INFO) directly, which takes no handler.
    """
    root = Path(project_path).expanduser().resolve()
    pyproject = root / "pyproject.toml"
    try:
        kedro_table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["kedro"]
        package = kedro_table["package_name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise OrchestrationConfigError(
            f"{pyproject}: cannot read [tool.kedro] package_name ({type(exc).__name__}: {exc}); pass the Kedro "
            "project root as project_path") from exc
    source = (root / kedro_table.get("source_dir", "src")).resolve()
    if source.is_dir() and str(source) not in sys.path:
        sys.path.insert(0, str(source))  # what bootstrap_project does for a project that is not installed
    configure_project(package, preserve_logging=True)
    package_logger = logging.getLogger(package)
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)


def resolve_project_path(project_path: str | Path | None) -> Path:
    """The Kedro project root: the given path, or the one containing the working directory."""
    root = Path(project_path).resolve() if project_path else find_kedro_project(Path.cwd())
    if root is None or not (root / "pyproject.toml").is_file():
        raise OrchestrationConfigError(
            f"no Kedro project at {project_path or Path.cwd()}: pass project_path= or run from the project root"
        )
    return root


def _pipeline_run_config(root: Path, env: str | None, overrides: dict[str, Any] | None) -> PipelineRunConfig:
    config = load_orchestration_config(root, env).pipeline_run
    return replace(config, **overrides) if overrides else config


def _submit_and_wait(spec: KedroRunSpec, groups: list[TaskGroup], config: PipelineRunConfig) -> None:
    """Submit every group with `wait_for=` its upstream futures; raise the first node failure."""
    futures: dict[str, Any] = {}
    for group in groups:
        group_task = run_kedro_task_group.with_options(
            name=group.name, task_run_name=group.name, **config.task_options(group.name)
        )
        futures[group.name] = group_task.submit(
            spec, group.name, list(group.node_names), wait_for=[futures[u] for u in group.upstream]
        )
    wait(list(futures.values()))
    for group in groups:  # topological order: the first failure is the root cause, later ones are NotReady
        state = futures[group.name].state
        if state.is_failed() or state.is_crashed():
            error = state.result(raise_on_failure=False)
            if isinstance(error, BaseException):
                raise error
            raise RuntimeError(f"Prefect task '{group.name}' ended {state.type.value}: {state.message}")
    unfinished = [g.name for g in groups if not futures[g.name].state.is_completed()]
    if unfinished:
        raise RuntimeError(f"Prefect task(s) {unfinished} did not complete: an upstream task failed or was cancelled")


def _persist_crossing_datasets(
    catalog: Any, crossing: dict[str, str], policy: str, intermediate_root: Path
) -> dict[str, str]:
    """Make every task-crossing dataset loadable by any task (other thread or process).

    Returns:
        Dataset name -> pickle path, for the in-memory datasets replaced by a run-scoped pickle.
    """
    in_memory = sorted(name for name in crossing if isinstance(catalog.get(name), MemoryDataset))
    if not in_memory:
        return {}
    if policy == "fail":
        details = ", ".join(f"'{name}' (written by task '{crossing[name]}')" for name in in_memory)
        raise CrossingDatasetError(
            f"dataset(s) {details} cross a Prefect task boundary but are in memory only: declare them in "
            "conf/base/catalog_<pipeline>.yml, or set orchestration.crossing_memory_datasets: persist"
        )
    from kedro_datasets.pickle import PickleDataset

    persisted = {}
    for name in in_memory:
        path = intermediate_root / f"{_safe_folder_name(name)}.pkl"
        catalog[name] = PickleDataset(filepath=str(path))
        persisted[name] = str(path)
    logger.info("in-memory dataset(s) %s cross task boundaries: persisted under %s", in_memory, intermediate_root)
    return persisted


def _execution_for(spec: KedroRunSpec) -> _KedroExecution:
    """This process's execution of the run: the runner's own, or one rebuilt from the spec (Dask worker)."""
    with _EXECUTIONS_LOCK:
        execution = _EXECUTIONS.get(spec.run_id)
        if execution is None:
            execution = _rebuild_execution(spec)
            _EXECUTIONS[spec.run_id] = execution
            while len(_EXECUTIONS) > _MAX_REBUILT_EXECUTIONS:
                _EXECUTIONS.popitem(last=False)
        return execution


def _rebuild_execution(spec: KedroRunSpec) -> _KedroExecution:
    """The run's pipeline, catalog and hook manager in another process, from the project (public Kedro API).

    `load_context()` fires `after_context_created` (kedro-mlflow's tracking URI) and `context.catalog`
    `after_catalog_created`; that catalog's save version is a timestamp of its own (see the module docstring).
    """
    from kedro_datasets.pickle import PickleDataset

    project_path = Path(spec.project_path)
    bootstrap_in_flow(project_path)  # a Dask worker running Prefect tasks
    session = KedroSession.create(
        project_path=project_path, env=spec.env, runtime_params=spec.runtime_params, save_on_close=False
    )
    catalog = session.load_context().catalog
    for name, path in spec.persisted_intermediates.items():
        catalog[name] = PickleDataset(filepath=path)
    pipeline = kedro_pipelines[spec.pipeline_name]
    # Materialise every dataset now, under the lock: the catalog adds runtime-pattern entries lazily, which is
    # not thread safe, and a worker may run several of this run's tasks in threads.
    for name in pipeline.datasets():
        catalog.get(name, fallback_to_runtime_pattern=True)
    return _KedroExecution(pipeline, catalog, _rebuilt_session_hook_manager(session), rebuilt=True)


def _rebuilt_session_hook_manager(session: KedroSession) -> Any:
    """The hook manager of a session rebuilt in a worker: the one private Kedro member this module reads.

    Kedro has no public accessor for it; `KedroSession.run` hands it to the runner, which is how the flow
    process gets it. Checked against kedro 1.7.0 (`KedroSession.__init__` sets `self._hook_manager`);
    tests/orchestration/test_prefect_task_runner.py fails if a Kedro upgrade renames or replaces it.
    """
    return session._hook_manager


def _active_mlflow_run_id() -> str | None:
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a project dependency
        return None
    run = mlflow.active_run()
    return run.info.run_id if run else None


@contextmanager
def _resumed_mlflow_run(spec: KedroRunSpec | None) -> Iterator[None]:
    """In a rebuilt (other-process) execution, make the flow's MLflow run the active one for this thread.

    The run is detached afterwards without `end_run`, which would mark it FINISHED while the flow still runs;
    the flow process ends it in `after_pipeline_run` / `on_pipeline_error` (kedro-mlflow does the same for
    the threads of its own runner).
    """
    if spec is None or spec.mlflow_run_id is None:
        yield
        return
    import mlflow
    from mlflow.tracking import fluent

    active = mlflow.active_run()
    if active is not None and active.info.run_id == spec.mlflow_run_id:
        yield
        return
    mlflow.start_run(run_id=spec.mlflow_run_id)
    try:
        yield
    finally:
        stack = fluent._active_run_stack.get()
        if stack and stack[-1].info.run_id == spec.mlflow_run_id:
            stack.pop()


def _safe_folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
