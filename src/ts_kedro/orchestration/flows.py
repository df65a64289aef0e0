"""The scheduled ts_kedro cycle: Day 0 (train and register) while no champion exists, Day N afterwards."""
from __future__ import annotations

import importlib
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession
from prefect import flow
from prefect import runtime as prefect_runtime

from ts_kedro.orchestration.config import (  # noqa: F401  (the trigger names are re-exported)
    RETRAIN_DRIFT,
    RETRAIN_FORCED,
    RETRAIN_GROWTH,
    RETRAIN_SCHEDULE,
    SCHEDULED_TRIGGERS,
    CycleConfig,
    load_orchestration_config,
    parse_duration,
)
from ts_kedro.orchestration.kedro_prefect import bootstrap_in_flow, resolve_project_path, run_kedro_pipeline

logger = logging.getLogger(__name__)

DAY_0 = "day_0"
DAY_N = "day_n"
CYCLE_FLOW_NAME = "ts_kedro_cycle"
PIPELINE_FLOW_NAME = "kedro-pipeline"  # kedro_prefect.kedro_pipeline_flow
# A flow run still RUNNING this long after it started, or an intermediate folder this old, belongs to a
# process that was killed (a cycle's tasks time out well before: orchestration timeout_seconds).
STALE_AFTER_HOURS_ENV = "TS_KEDRO_STALE_AFTER_HOURS"
DEFAULT_STALE_AFTER_HOURS = 6.0
INCOMING_DATASET = "incoming_batches"  # the Day-N drop folder (conf/base/catalog_ingestion.yml)
EVERY_KEY = "orchestration.cycle.retrain.every"
GROWTH_KEY = "orchestration.cycle.retrain.after_growth"
# the tag on a registered version that says why a Day-N retrain refitted it ("drift", "schedule", "growth", "forced")
REFIT_TRIGGERS_TAG = "ts_kedro.refit_triggers"


def nothing_new(incoming: Path | None) -> str | None:
    """Why a Day-N cycle has nothing to do (no file in the drop folder), or None when it has work.

    Any file counts (the ingestion reports files it does not take, e.g. ``notes.txt``); hidden files
    such as ``.gitkeep`` do not. Without a known drop folder the cycle always runs.
    """
    if incoming is None:
        return None
    if incoming.is_dir() and any(p.is_file() and not p.name.startswith(".") for p in incoming.iterdir()):
        return None
    return (f"nothing new: no file in {incoming}, so this cycle did nothing (no history version, no drift "
            "check or retraining, no new forecasts); the champion and the latest forecasts stand")


def nothing_accepted(ingestion_report: dict | None) -> str | None:
    """Why a Day-N cycle stops after ingestion (its batches added no row to the history), or None.

    A drop folder that holds only rows the history already has (a re-sent file), only quarantined batches or
    only files the ingestion does not take changes nothing the models see: a retrain on the standing drift
    verdict would refit the same data and the forecasts would be the same.
    """
    if not ingestion_report or ingestion_report.get("rows_accepted", 0) > 0:
        return None
    return (f"nothing new after ingestion: {ingestion_report.get('n_batches', 0)} file(s) in the drop folder "
            f"added no row to the history ({ingestion_report.get('duplicate_rows_ignored', 0)} duplicate rows, "
            f"{ingestion_report.get('n_quarantined', 0)} quarantined and {ingestion_report.get('n_ignored', 0)} "
            "ignored file(s)); no retraining and no new forecasts: the champion and the latest forecasts stand")


def _newest_version(registered_model_name: str):
    """The newest registered version of ``registered_model_name`` (an MLflow ModelVersion), or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        versions = list(MlflowClient().search_model_versions(f"name = '{registered_model_name}'"))
    except MlflowException as err:
        if _is_not_found(err):
            return None
        raise
    if not versions:
        return None
    return max(versions, key=lambda v: (int(v.creation_timestamp or 0), int(v.version)))


@dataclass(frozen=True)
class NewestFit:
    """The newest registered version of the model, as one registry read gives it.

    Every full refit registers a version (Day 0 and every retrain, promoted or not), so this is the last refit,
    whether or not it became the champion. A Day-N cycle reads it once (``newest_fit``) and every retrain rule
    derives what it needs from it: the schedule (``refit``), the wait after a drift refit (``drift_refit``) and the
    growth rule (``fit_window``).
    """

    version: int
    registered: datetime  # registration time, UTC
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def refit(self) -> tuple[int, datetime]:
        """(version, registration time): ``decide_retrain``'s ``refit``, what ``retrain.every`` counts from."""
        return self.version, self.registered

    @property
    def drift_refit(self) -> dict[str, Any] | None:
        """``{version, data_window_end}`` when data drift triggered this version's refit (its ``REFIT_TRIGGERS_TAG``),
        else None: a later refit on a schedule, on growth or forced is not a drift refit."""
        if RETRAIN_DRIFT not in self.tags.get(REFIT_TRIGGERS_TAG, "").split(","):
            return None
        return {"version": self.version, "data_window_end": self.tags.get("meta.data_window_end")}

    @property
    def fit_window(self) -> dict[str, Any]:
        """What this version was fitted on: ``{version, data_window_start, data_window_end, median_series_steps}``
        from its ``meta.*`` tags (``median_series_steps`` is None for versions registered before it was recorded)."""
        median = self.tags.get("meta.median_series_steps")
        return {"version": self.version, "data_window_start": self.tags.get("meta.data_window_start"),
                "data_window_end": self.tags.get("meta.data_window_end"),
                "median_series_steps": float(median) if median not in (None, "") else None}


def newest_fit(registered_model_name: str) -> NewestFit | None:
    """The newest registered version of ``registered_model_name`` (one registry search), or None when there is none.

    Read with the MLflow URIs the cycle configured (``_configure_tracking``); the registry keeps it across restarts.
    """
    newest = _newest_version(registered_model_name)
    if newest is None:
        return None
    return NewestFit(int(newest.version),
                     datetime.fromtimestamp(int(newest.creation_timestamp) / 1000, tz=timezone.utc),
                     dict(newest.tags or {}))


def tag_refit_triggers(registered_model_name: str, previous_version: int | None, triggers: list[str]) -> int | None:
    """Record on the version a Day-N retrain registered why it was refitted (tag ``REFIT_TRIGGERS_TAG``).

    ``previous_version`` is the newest version before the retrain; when no newer one exists (the retrain
    registered nothing) nothing is tagged. Returns the tagged version or None.
    """
    from mlflow import MlflowClient

    newest = _newest_version(registered_model_name)
    if newest is None or (previous_version is not None and int(newest.version) <= previous_version):
        return None
    MlflowClient().set_model_version_tag(registered_model_name, str(newest.version), REFIT_TRIGGERS_TAG,
                                         ",".join(triggers))
    return int(newest.version)


def growth_since_fit(fit: dict[str, Any] | None, history_end: dict[str, Any] | None, freq: str,
                     share: float) -> dict[str, Any] | None:
    """How far the history has grown since the newest registered fit, against ``share`` times what it was fitted on.

    ``new_steps``: steps of ``freq`` from the fit's data end to the history's latest end (``ingestion_report``'s
    ``history_end``); ``fitted_steps``: the median series length of the fit (``meta.median_series_steps``), or, for
    a version registered before that was recorded, the steps of its whole data window (longer, so no earlier refit
    than intended). Returns those with ``due`` (``new_steps >= share * fitted_steps``) and ``steps_left``, or None
    when the registry or the report lacks what is needed (then this rule does not refit).
    """
    if not fit or not fit.get("data_window_end") or not history_end:
        return None
    fitted = fit.get("median_series_steps")
    if fitted is None and fit.get("data_window_start"):
        fitted = steps_between(fit["data_window_start"], fit["data_window_end"], freq) + 1
    if not fitted:
        return None
    new = steps_between(fit["data_window_end"], max(map(str, history_end.values())), freq)
    needed = int(math.ceil(float(share) * float(fitted)))
    return {"version": fit["version"], "data_window_end": fit["data_window_end"], "fitted_steps": float(fitted),
            "new_steps": new, "share": float(share), "due": new >= needed, "steps_left": max(needed - new, 0)}


def steps_between(start: Any, end: Any, freq: str) -> int:
    """Whole steps of ``freq`` from ``start`` to ``end`` (0 when ``end`` is not later)."""
    import pandas as pd

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        return 0
    return len(pd.date_range(start, end, freq=freq)) - 1


def persisting_drift(drift_summary: dict[str, Any], drift_refit: dict[str, Any] | None,
                     history_end: dict[str, Any] | None, freq: str) -> dict[str, Any] | None:
    """Whether this cycle's data drift is the one a drift refit already answered: the wait, or None.

    After data drift triggered a refit on data up to E, the verdict's reference window keeps holding data from
    before E, that is from before the change, until ``reach_steps`` new steps have arrived (``drift_summary``'s
    ``windows``: the reference window, plus the seasonal lag when the series feature is the seasonal difference,
    which looks that far back); until then the verdict compares the new regime with the old one and flags drift
    cycle after cycle. Returns ``{version, data_window_end, steps_since, reach_steps}`` while that holds, else
    None (also when the summary, the refit or the ingestion report lacks what is needed: then drift refits).
    """
    reach = (drift_summary.get("windows") or {}).get("reach_steps")
    if (not drift_summary.get("data_drift") or drift_refit is None or not drift_refit.get("data_window_end")
            or not reach or not history_end):
        return None
    since = steps_between(drift_refit["data_window_end"], max(map(str, history_end.values())), freq)
    if since >= int(reach):
        return None
    return {**drift_refit, "steps_since": since, "reach_steps": int(reach)}


def decide_retrain(
    drift: bool,
    drift_reasons: list[Any] | None = None,
    forced: bool = False,
    every: str | None = None,
    refit: tuple[int, datetime] | None = None,
    now: datetime | None = None,
    waiting: dict[str, Any] | None = None,
    growth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Whether a Day-N cycle (one that accepted new rows) refits, and why.

    Args:
        drift: ``drift_summary.drift`` of this cycle's monitoring.
        drift_reasons: ``drift_summary.reasons``, quoted in the reason.
        forced: ``orchestration.cycle.retrain.force``, ``--retrain`` or the flow parameter ``force_retrain``.
        every: ``orchestration.cycle.retrain.every`` (a duration such as ``"30D"``) or None.
        refit: ``NewestFit.refit``: the newest registered version and when it was registered.
        now: the current time (UTC); default: now.
        waiting: ``persisting_drift(...)`` when ``retrain.after_drift_refit`` is ``wait`` and no performance
            drift was found: the drift is not a trigger this cycle.
        growth: ``growth_since_fit(...)`` when ``retrain.after_growth`` is set: its ``due`` is a trigger.

    Returns:
        ``retrain`` (bool), ``triggers`` (a subset of ``forced``, ``drift``, ``schedule``, ``growth``, in that order),
        ``reason`` (one sentence), ``last_refit_version``, ``last_refit_at`` and ``next_scheduled_at``
        (ISO strings or None), and ``growth`` (what ``growth_since_fit`` measured, or None).
    """
    now = now or datetime.now(timezone.utc)
    triggers, notes = [], []
    if forced:
        triggers.append(RETRAIN_FORCED)
        notes.append("forced (orchestration.cycle.retrain.force, --retrain or force_retrain)")
    waited = None
    if drift and waiting:
        left = waiting["reach_steps"] - waiting["steps_since"]
        waited = (f"data drift persists since the drift refit of version {waiting['version']} (data to "
                  f"{waiting['data_window_end']}): the drift windows still reach before that refit's data "
                  f"({waiting['steps_since']} of {waiting['reach_steps']} steps since), so they compare the new "
                  f"data with the old regime; data drift refits again after {left} more steps "
                  "(orchestration.cycle.retrain.after_drift_refit: wait)")
    elif drift:
        triggers.append(RETRAIN_DRIFT)
        notes.append("drift (" + "; ".join(map(str, drift_reasons or [])) + ")")
    due_at = None
    schedule_note = f"no schedule ({EVERY_KEY} is null)"
    if every is not None:
        interval = parse_duration(every, EVERY_KEY)
        if refit is None:
            triggers.append(RETRAIN_SCHEDULE)
            notes.append(f"schedule ({EVERY_KEY}={every}: no registered version records a previous fit)")
        else:
            version, registered = refit
            due_at = registered + interval
            since = f"the last full refit (version {version}) was registered {registered.isoformat()}"
            if now >= due_at:
                triggers.append(RETRAIN_SCHEDULE)
                notes.append(f"schedule ({since}, {_age(now - registered)} ago, {EVERY_KEY}={every})")
            else:
                schedule_note = f"the next scheduled refit is due at {due_at.isoformat()} ({since}, {EVERY_KEY}={every})"
    if growth is not None:
        grown = (f"{growth['new_steps']} steps since the data end {growth['data_window_end']} of version "
                 f"{growth['version']}, fitted on a median of {growth['fitted_steps']:g} steps per series, "
                 f"{GROWTH_KEY}={growth['share']:g}")
        if growth["due"]:
            triggers.append(RETRAIN_GROWTH)
            notes.append(f"growth ({grown})")
        else:
            schedule_note += f"; the next growth refit after {growth['steps_left']} more steps ({grown})"
    if triggers:
        reason = "retrain: " + "; ".join(notes) + (f" ({waited})" if waited else "")
    elif waited:
        reason = f"no retrain: {waited}; not forced, {schedule_note}; the champion is updated with the new data"
    else:
        reason = (f"no retrain: no drift, not forced, {schedule_note}; the champion is updated with the new data "
                  "(no refit)")
    return {
        "retrain": bool(triggers),
        "triggers": triggers,
        "reason": reason,
        "waiting_after_drift_refit": waiting if drift and waiting else None,
        "last_refit_version": refit[0] if refit else None,
        "last_refit_at": refit[1].isoformat() if refit else None,
        "next_scheduled_at": due_at.isoformat() if due_at else None,
        "growth": growth,
    }


def _age(delta: timedelta) -> str:
    """A wall-clock age for messages: hours below two days, days above."""
    if delta >= timedelta(days=2):
        return f"{delta / timedelta(days=1):.1f} days"
    return f"{delta / timedelta(hours=1):.1f} h"


def stale_after() -> timedelta:
    raw = os.environ.get(STALE_AFTER_HOURS_ENV, str(DEFAULT_STALE_AFTER_HOURS))
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours > 0:
        raise ValueError(f"{STALE_AFTER_HOURS_ENV}={raw!r} must be a number of hours > 0")
    return timedelta(hours=hours)


def crash_stale_runs(client, current_flow_run_id: str | None, current_deployment_id: str | None,
                     older_than: timedelta, now: datetime | None = None) -> list[str]:
    """Mark flow runs (and their task runs) that a killed process left RUNNING as Crashed.

    Stale: a RUNNING ``ts_kedro_cycle`` or ``kedro-pipeline`` run that started more than ``older_than``
    ago, or any other RUNNING run of this run's deployment (its ``concurrency_limit: 1`` lets only one
    run hold the slot, so while this one runs any other RUNNING one is a dead process's). The current
    run and its ancestors are never touched. ``client`` is a synchronous Prefect client.

    Returns:
        The ids of the flow runs marked Crashed.
    """
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType,
        TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    now = now or datetime.now(timezone.utc)
    running = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[CYCLE_FLOW_NAME, PIPELINE_FLOW_NAME])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
    )
    by_id = {str(run.id): run for run in running}
    protected, cursor = set(), current_flow_run_id
    while cursor is not None and cursor not in protected:  # the current run and the runs above it
        protected.add(cursor)
        parent = by_id.get(cursor)
        cursor = _parent_flow_run_id(client, parent) if parent is not None else None
    stale = []
    for run_id, run in by_id.items():
        if run_id in protected:
            continue
        started = run.start_time or run.expected_start_time
        same_deployment = current_deployment_id is not None and str(run.deployment_id) == str(current_deployment_id)
        if same_deployment or (started is not None and now - started > older_than):
            stale.append(run_id)
    for run_id in stale:
        message = (f"marked crashed by cycle {current_flow_run_id}: still RUNNING since {by_id[run_id].start_time}, "
                   "its process was killed")
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[by_id[run_id].id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))),
        )
        for task_run in tasks:
            client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
        client.set_flow_run_state(by_id[run_id].id, Crashed(message=message), force=True)
        logger.warning("flow run %s (%s) %s", run_id, by_id[run_id].name, message)
    return stale


def _parent_flow_run_id(client, run) -> str | None:
    if run.parent_task_run_id is None:
        return None
    return str(client.read_task_run(run.parent_task_run_id).flow_run_id)


def remove_old_intermediates(folder: Path, older_than: timedelta, now: float | None = None) -> list[str]:
    """Delete ``<intermediate_dir>/<run_id>/`` folders not modified for ``older_than`` (left by killed or
    failed runs; a finished run deletes its own). Returns the names removed."""
    if not folder.is_dir():
        return []
    cutoff = (now if now is not None else time.time()) - older_than.total_seconds()
    removed = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and _newest_mtime(child) < cutoff:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    if removed:
        logger.info("removed %d intermediate folder(s) older than %s under %s: %s",
                    len(removed), older_than, folder, ", ".join(removed[:5]))
    return removed


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


def clean_up_after_killed_runs(root: Path, env: str | None) -> dict[str, list[str]]:
    """At the start of a cycle: crash stale Prefect runs and remove old intermediate folders.

    A failure here (Prefect API unreachable) is logged, never fatal: the cycle itself matters more.
    """
    from ts_kedro.orchestration.config import load_orchestration_config

    older_than = stale_after()
    result: dict[str, list[str]] = {"crashed_flow_runs": [], "removed_intermediates": []}
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            result["crashed_flow_runs"] = crash_stale_runs(
                client, _current("id"), _current("deployment_id"), older_than
            )
    except Exception as exc:  # noqa: BLE001 - cleanup must not stop the cycle
        logger.warning("could not check for stale Prefect runs: %s: %s", type(exc).__name__, exc)
    try:
        intermediate_dir = load_orchestration_config(root, env).pipeline_run.intermediate_dir
    except Exception:  # noqa: BLE001
        intermediate_dir = "data/05_model_input/_prefect"
    result["removed_intermediates"] = remove_old_intermediates(root / intermediate_dir, older_than)
    return result


def _current(attribute: str) -> str | None:
    value = getattr(prefect_runtime.flow_run, attribute, None)
    return str(value) if value else None


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
    force_retrain: bool = False,
) -> dict[str, Any]:
    """One scheduled cycle: read the registry, then run the Day-0 or Day-N Kedro pipeline as a subflow.

    Args:
        project_path: Kedro project root (default: the project containing the working directory).
        env: Kedro environment (default: orchestration.cycle.env, then KEDRO_ENV, then "local").
        runtime_params: Kedro runtime parameters, as `kedro run --params`.
        config_overrides: Overrides of the orchestration block (grouping, task_runner, ...).
        force_retrain: refit on this cycle (Day N) whatever the drift verdict and the schedule say, also when
            its batches added no row; like `orchestration.cycle.retrain.force`, for this cycle only.

    Returns:
        `day`, `pipeline`, and the subflow summary (`run_id`, `tasks`); on Day N also `retrain`, the
        decision of `decide_retrain` (`retrain`, `triggers`, `reason`).
    """
    root = resolve_project_path(project_path)
    cycle = load_orchestration_config(root, env).cycle
    env = env or cycle.env
    # each start-up step is logged: a cycle once hung here for 15 minutes in the test suite without saying where
    # (Kedro's first logging set-up inside the flow deadlocked with Prefect's log worker: code in flows calls
    # kedro_prefect.bootstrap_in_flow, which leaves logging alone)
    logger.info("cycle start-up: crashing stale Prefect runs, removing old intermediates")
    cleanup = clean_up_after_killed_runs(root, env)
    logger.info("cycle start-up: configuring MLflow tracking")
    incoming = _configure_tracking(root, env)
    logger.info("cycle start-up: repairing and reading the registry")
    day, pipeline_name = choose_cycle_pipeline(cycle)
    forced = bool(force_retrain) or cycle.retrain.force
    skipped = nothing_new(incoming) if day == DAY_N else None
    if skipped:
        if forced:
            skipped += ("; the forced refit did not run either: a cycle refits after it has ingested a batch "
                        "(`kedro run --pipeline retrain` refits on the history as it is)")
        logger.info(skipped)
        return {"day": day, "cycle_flow_run_id": _current("id"), "skipped": True, "reason": skipped,
                "steps": [], "cleanup": cleanup}
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
    result: dict[str, Any] = {"day": day, "cycle_flow_run_id": str(prefect_runtime.flow_run.id), **steps[0],
                              "cleanup": cleanup}
    if day == DAY_N:
        ingestion_report = _load_dataset(root, env, cycle.ingestion_report_dataset)
        idle = nothing_accepted(ingestion_report)
        if idle and not forced:
            logger.info(idle)
            result.update(skipped_after_ingestion=True, reason=idle,
                          steps=[{"pipeline": cycle.day_n_pipeline, **steps[0]}])
            return result
        if idle:  # forced: refit on the history as it is
            result["nothing_accepted"] = idle
        drift = _load_dataset(root, env, cycle.drift_dataset) or {}
        result["drift"] = bool(drift.get("drift"))
        result["drift_reasons"] = drift.get("reasons", [])
        every = cycle.retrain.every
        history_end = (ingestion_report or {}).get("history_end")
        panel_freq: list[str] = []  # read once, and only when a rule counts steps (a Kedro session per read)

        def freq() -> str:
            if not panel_freq:
                panel_freq.append(_load_dataset(root, env, "params:panel", runtime_params)["freq"])
            return panel_freq[0]

        fit = newest_fit(cycle.registered_model_name)  # one registry read for every rule below
        waiting = None
        if result["drift"] and cycle.retrain.after_drift_refit == "wait" and not drift.get("performance_drift"):
            if fit is not None and fit.drift_refit is not None:
                waiting = persisting_drift(drift, fit.drift_refit, history_end, freq())
        refit = fit.refit if fit is not None and every is not None else None
        growth = None
        if cycle.retrain.after_growth is not None and fit is not None:
            growth = growth_since_fit(fit.fit_window, history_end, freq(), cycle.retrain.after_growth)
        result["retrain"] = decide_retrain(
            result["drift"], result["drift_reasons"], forced=forced, every=every, refit=refit, waiting=waiting,
            growth=growth,
        )
        logger.info("%s", result["retrain"]["reason"])
        if result["retrain"]["retrain"]:
            logger.info("running '%s' (%s)", cycle.retrain_pipeline, ", ".join(result["retrain"]["triggers"]))
            steps.append(_run_step(cycle.retrain_pipeline, alerts_config, run))
            # the registry remembers why this version was refitted (after_drift_refit reads it next cycles)
            result["retrain"]["tagged_version"] = tag_refit_triggers(
                cycle.registered_model_name, fit.version if fit else None, result["retrain"]["triggers"])
        steps.append(_run_step(cycle.inference_pipeline, alerts_config, run))
    result["steps"] = [{"pipeline": name, **summary} for name, summary in zip(_step_names(day, cycle, result), steps)]
    return result


def _step_names(day: str, cycle: CycleConfig, result: dict[str, Any]) -> list[str]:
    if day == DAY_0:
        return [cycle.day0_pipeline]
    middle = [cycle.retrain_pipeline] if result.get("retrain", {}).get("retrain") else []
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


def _load_dataset(root: Path, env: str | None, name: str, runtime_params: dict[str, Any] | None = None) -> Any:
    """Load one catalog dataset of the project (the Day-N drift verdict), or a ``params:`` entry as the cycle's
    pipelines see it: with the cycle's runtime parameters (``--params panel.freq=D`` overrides conf)."""
    bootstrap_in_flow(root)
    with KedroSession.create(project_path=root, env=env, save_on_close=False,
                             runtime_params=runtime_params or None) as session:
        return session.load_context().catalog.load(name)


def _configure_tracking(root: Path, env: str | None) -> Path | None:
    """Point MLflow at the project's tracking/registry URI before reading the registry.

    Loading a Kedro context fires `after_context_created`, where kedro-mlflow applies conf/<env>/mlflow.yml
    (tracking URI, registry URI): the registry is then read exactly where `kedro run` would write it.

    Returns:
        The Day-N drop folder (the catalog's `incoming_batches` path), or None when the catalog has none.
    """
    bootstrap_in_flow(root)
    with KedroSession.create(project_path=root, env=env, save_on_close=False) as session:
        context = session.load_context()
        try:
            entry = context.config_loader["catalog"].get(INCOMING_DATASET) or {}
        except Exception:  # noqa: BLE001 - a catalog that cannot be read fails the pipeline run itself
            entry = {}
    path = entry.get("path") if isinstance(entry, dict) else None
    return (root / path) if path else None


def _is_not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(err).lower()
