"""The scheduled ts_kedro cycle: Day 0 (train and register) while no champion exists, Day N afterwards."""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from prefect import flow
from prefect import runtime as prefect_runtime

from ts_kedro.orchestration.config import CycleConfig, load_orchestration_config
from ts_kedro.orchestration.kedro_prefect import resolve_project_path, run_kedro_pipeline

logger = logging.getLogger(__name__)

DAY_0 = "day_0"
DAY_N = "day_n"


def champion_exists(registered_model_name: str, alias: str = "champion") -> bool:
    """Whether the MLflow registry has a version of `registered_model_name` under `alias`.

    Uses `ts_kedro.registry.registry.champion_exists` when that module provides it (one definition of
    "champion" for the whole project); otherwise asks the registry directly. A missing model or alias is
    "no champion"; any other registry error (server down, bad URI) propagates: guessing Day 0 would retrain
    and re-register over a live champion.
    """
    if alias == "champion":
        try:
            registry = importlib.import_module("ts_kedro.registry.registry")
        except ModuleNotFoundError:
            registry = None
        if registry is not None and hasattr(registry, "champion_exists"):
            return bool(registry.champion_exists(registered_model_name))
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version_by_alias(registered_model_name, alias)
    except MlflowException as err:
        if _is_not_found(err):
            return False
        raise
    return True


def _repair_registry(registered_model_name: str) -> None:
    """Finish a promotion or rollback that a killed cycle left half done, before the registry is read
    (a first promotion killed before the alias moved would otherwise send this cycle back to Day 0)."""
    from ts_kedro.registry import registry

    try:
        repaired = registry.repair_pending(registered_model_name)
    except registry.RegistryError:  # no registered model yet: nothing to repair
        return
    if repaired is not None:
        logger.warning("finished registry decision #%d left half done by a killed run: %s",
                       repaired["sequence"], repaired["reason"])


def choose_cycle_pipeline(cycle: CycleConfig) -> tuple[str, str]:
    """Day 0 or Day N from the registry.

    Returns:
        (day, pipeline name): ("day_0", cycle.day0_pipeline) or ("day_n", cycle.day_n_pipeline).
    """
    _repair_registry(cycle.registered_model_name)
    if champion_exists(cycle.registered_model_name, cycle.champion_alias):
        return DAY_N, cycle.day_n_pipeline
    return DAY_0, cycle.day0_pipeline


@flow(name="ts_kedro_cycle", flow_run_name="ts-kedro-cycle", log_prints=True)
def ts_kedro_cycle(
    project_path: str | None = None,
    env: str | None = None,
    runtime_params: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One scheduled cycle: read the registry, then run the Day-0 or Day-N Kedro pipeline as a subflow.

    Args:
        project_path: Kedro project root (default: the project containing the working directory).
        env: Kedro environment (default: orchestration.cycle.env, then KEDRO_ENV, then "local").
        runtime_params: Kedro runtime parameters, as `kedro run --params`.
        config_overrides: Overrides of the orchestration block (grouping, task_runner, ...).

    Returns:
        `day`, `pipeline`, and the subflow summary (`run_id`, `tasks`).
    """
    root = resolve_project_path(project_path)
    cycle = load_orchestration_config(root, env).cycle
    env = env or cycle.env
    _configure_tracking(root, env)
    day, pipeline_name = choose_cycle_pipeline(cycle)
    logger.info(
        "registered model '%s' %s alias '%s': %s, running pipeline '%s'",
        cycle.registered_model_name,
        "has" if day == DAY_N else "has no",
        cycle.champion_alias,
        day,
        pipeline_name,
    )
    alerts_config = load_orchestration_config(root, env).alerts
    run = dict(project_path=root, env=env, runtime_params=runtime_params, config_overrides=config_overrides)
    steps = [_run_step(pipeline_name, alerts_config, run)]
    result: dict[str, Any] = {"day": day, "cycle_flow_run_id": str(prefect_runtime.flow_run.id), **steps[0]}
    if day == DAY_N:
        drift = _load_dataset(root, env, cycle.drift_dataset) or {}
        result["drift"] = bool(drift.get("drift"))
        result["drift_reasons"] = drift.get("reasons", [])
        if result["drift"]:
            logger.info("drift found (%s): running '%s'", "; ".join(map(str, result["drift_reasons"])), cycle.retrain_pipeline)
            steps.append(_run_step(cycle.retrain_pipeline, alerts_config, run))
        steps.append(_run_step(cycle.inference_pipeline, alerts_config, run))
    result["steps"] = [{"pipeline": name, **summary} for name, summary in zip(_step_names(day, cycle, result), steps)]
    return result


def _step_names(day: str, cycle: CycleConfig, result: dict[str, Any]) -> list[str]:
    if day == DAY_0:
        return [cycle.day0_pipeline]
    middle = [cycle.retrain_pipeline] if result.get("drift") else []
    return [cycle.day_n_pipeline, *middle, cycle.inference_pipeline]


def _run_step(pipeline_name: str, alerts_config, run: dict[str, Any]) -> dict[str, Any]:
    """Run one Kedro pipeline as a subflow; a failure raises a `pipeline_failed` alert, then propagates."""
    try:
        return run_kedro_pipeline(pipeline_name, **run)
    except Exception as exc:
        from ts_kedro.orchestration.alerts import send_alert

        send_alert(
            {"rule": "pipeline_failed", "severity": "critical", "pipeline": pipeline_name,
             "message": f"pipeline '{pipeline_name}' failed: {type(exc).__name__}: {exc}"},
            alerts_config,
            project_path=run["project_path"],
        )
        raise


def _load_dataset(root: Path, env: str | None, name: str) -> Any:
    """Load one catalog dataset of the project (the Day-N drift verdict)."""
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env, save_on_close=False) as session:
        return session.load_context().catalog.load(name)


def _configure_tracking(root: Path, env: str | None) -> None:
    """Point MLflow at the project's tracking/registry URI before reading the registry.

    Loading a Kedro context fires `after_context_created`, where kedro-mlflow applies conf/<env>/mlflow.yml
    (tracking URI, registry URI): the registry is then read exactly where `kedro run` would write it.
    """
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env, save_on_close=False) as session:
        session.load_context()


def _is_not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(err).lower()
