"""The Dask cluster of the local families' per-series work, opened for a run from `orchestration.per_series`.

`PerSeriesClusterHook` (registered in settings.py) opens it in `before_pipeline_run` and closes it after the
run, so `kedro run` and the Prefect flow (which fires the same hooks in the flow process) both send the
per-series fits, backtests, updates and predictions to it. A Prefect task rebuilt in a Dask worker process
(`task_runner: dask`) opens it again around its nodes (`per_series_scope_for_task`).
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from kedro.framework.hooks import hook_impl

from ts_kedro.forecasters._per_series import DaskTarget, active_dask_target, use_dask_client
from ts_kedro.orchestration.config import PerSeriesConfig, load_orchestration_config

logger = logging.getLogger(__name__)


class PerSeriesClusterError(RuntimeError):
    """The configured per-series Dask cluster could not be started or reached."""


def _current_worker_client() -> Any | None:
    """The client of the Dask worker this code runs in, or None outside a Dask worker."""
    from distributed import get_client, get_worker

    try:
        get_worker()
    except ValueError:
        return None
    return get_client()


@contextmanager
def per_series_cluster(config: PerSeriesConfig, lazy: bool = False) -> Iterator[DaskTarget | None]:
    """Make the configured cluster the target of `map_series` while inside; None when `cluster` is null.

    ``lazy``: start or connect at the first per-series map rather than now (a run with no local-family work
    pays nothing). A LocalCluster started here, and any client opened here, are closed on exit; a worker's own
    client is not.
    """
    if config.cluster is None:
        yield None
        return
    with ExitStack() as stack:
        def open_client() -> Any:
            return _open_client(config, stack)

        target = stack.enter_context(use_dask_client(open_client if lazy else open_client(), config.chunks_per_worker))
        yield target


def _open_client(config: PerSeriesConfig, stack: ExitStack) -> Any:
    """The client of `config.cluster`; what it starts or opens is closed with ``stack``."""
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    worker_client = _current_worker_client()
    if worker_client is not None and (
        config.cluster == "local" or worker_client.scheduler.address == config.cluster
    ):
        client, where = worker_client, f"the Dask cluster of this worker ({worker_client.scheduler.address})"
    elif config.cluster == "local":
        try:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=config.local_n_workers,
                    threads_per_worker=config.local_threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",
                )
            )
        except Exception as err:
            raise PerSeriesClusterError(
                f"could not start the local Dask cluster of orchestration.per_series.cluster: local "
                f"({type(err).__name__}: {err}); set it to null to run on this machine's processes"
            ) from err
        client = stack.enter_context(Client(cluster, set_as_default=False))
        where = f"a local Dask cluster of {len(cluster.workers)} worker(s), dashboard {client.dashboard_link}"
    else:
        try:
            client = stack.enter_context(
                Client(config.cluster, timeout=config.connect_timeout_seconds, set_as_default=False)
            )
        except Exception as err:
            raise PerSeriesClusterError(
                f"could not reach the Dask scheduler {config.cluster} of orchestration.per_series.cluster "
                f"within {config.connect_timeout_seconds:g}s ({type(err).__name__}: {err}); check the address "
                "in conf/<env>/orchestration.yml, or set it to null to run on this machine"
            ) from err
        where = f"the Dask scheduler {config.cluster}, dashboard {client.dashboard_link}"
    logger.info("per-series work goes to %s (ready in %.1fs)", where, time.perf_counter() - started)
    return client


def per_series_config(project_path: str | Path, env: str | None) -> PerSeriesConfig:
    """`orchestration.per_series` of the project's conf/base + conf/<env> orchestration.yml."""
    return load_orchestration_config(project_path, env).per_series


@contextmanager
def per_series_scope_for_task(project_path: str | Path, env: str | None) -> Iterator[None]:
    """Around a Prefect task's nodes: the configured cluster, unless this process already has a target (the
    flow process, where the hook opened it)."""
    if active_dask_target() is not None:
        yield
        return
    with per_series_cluster(per_series_config(project_path, env), lazy=True):
        yield


class PerSeriesClusterHook:
    """Makes `orchestration.per_series.cluster` the per-series target for a pipeline run (kedro run or Prefect
    flow); the cluster starts at the run's first per-series map and closes when the run ends."""

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        config = per_series_config(run_params["project_path"], run_params.get("env"))
        if config.cluster is None or active_dask_target() is not None:
            return  # this machine's processes, or a target the caller already set (a benchmark, a test)
        stack = ExitStack()
        stack.enter_context(per_series_cluster(config, lazy=True))
        self._stack = stack

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close()

    def _close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
