"""Orchestration settings: the `orchestration` block of conf/<env>/orchestration.yml, validated."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

logger = logging.getLogger(__name__)

GROUPINGS = ("node", "namespace")
TASK_RUNNERS = ("sequential", "thread", "dask")
CROSSING_POLICIES = ("persist", "fail")
TASK_OPTION_KEYS = ("retries", "retry_delay_seconds", "timeout_seconds")


# Why a Day-N cycle refits (summary["retrain"]["triggers"], and the tag on the version a retrain registered). Kept
# here, free of Prefect, so that benchmarks/day_n_replay.py reads the same names as the flow (flows re-exports them).
RETRAIN_FORCED, RETRAIN_DRIFT, RETRAIN_SCHEDULE, RETRAIN_GROWTH = "forced", "drift", "schedule", "growth"
# planned refits: retrain.every and retrain.after_growth, not answers to a change in the data
SCHEDULED_TRIGGERS = frozenset({RETRAIN_SCHEDULE, RETRAIN_GROWTH})


# Kill-test hook, like the registry's TS_KEDRO_REGISTRY_PAUSE_AT: with TS_KEDRO_PAUSE_AT=before_task:<group>
# the flow process says so on stderr and sleeps just before that Prefect task group runs its Kedro nodes
# (tests/orchestration/test_cycle_sigkill.py SIGKILLs it there). Unset: one environment lookup per task.
PAUSE_AT_ENV = "TS_KEDRO_PAUSE_AT"


def pause_at(step: str) -> None:
    """Sleep for an hour at ``step`` when ``TS_KEDRO_PAUSE_AT`` names it (kill tests only)."""
    if os.environ.get(PAUSE_AT_ENV) == step:
        import time

        # straight to file descriptor 2: inside a flow with log_prints, print() would become a Prefect log record
        os.write(2, f"ts_kedro paused at {step}\n".encode())
        time.sleep(3600)


class OrchestrationConfigError(ValueError):
    """The orchestration configuration is invalid; the message names the key and the file."""


@dataclass(frozen=True)
class PipelineRunConfig:
    """How a Kedro pipeline is mapped onto Prefect tasks and executed."""

    grouping: str = "namespace"
    task_runner: str = "thread"
    max_workers: int = 4
    dask_address: str | None = None
    dask_n_workers: int = 2
    crossing_memory_datasets: str = "persist"
    intermediate_dir: str = "data/05_model_input/_prefect"
    keep_intermediate: bool = False
    retries: int = 0
    retry_delay_seconds: float = 30
    timeout_seconds: float | None = 7200
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("grouping", self.grouping, GROUPINGS)
        _check_choice("task_runner", self.task_runner, TASK_RUNNERS)
        _check_choice("crossing_memory_datasets", self.crossing_memory_datasets, CROSSING_POLICIES)
        if self.max_workers < 1:
            raise OrchestrationConfigError(f"orchestration.max_workers must be >= 1, got {self.max_workers}")
        if self.retries < 0:
            raise OrchestrationConfigError(f"orchestration.retries must be >= 0, got {self.retries}")
        for task_name, options in self.task_overrides.items():
            unknown = set(options) - set(TASK_OPTION_KEYS)
            if unknown:
                raise OrchestrationConfigError(
                    f"orchestration.task_overrides.{task_name} has unknown key(s) {sorted(unknown)}; "
                    f"allowed: {list(TASK_OPTION_KEYS)}"
                )

    def task_options(self, task_name: str) -> dict[str, Any]:
        """Retries and timeout of one task: the defaults, overridden by `task_overrides[task_name]`."""
        options = {
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
        }
        options.update(self.task_overrides.get(task_name, {}))
        return options

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineRunConfig:
        """Build from the YAML block, refusing misspelt keys (they would otherwise be silently ignored)."""
        return cls(**_known_keys(cls, values, "orchestration"))


DURATION_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "D": "days", "W": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|h|D|W)\s*$")


def parse_duration(value: Any, key: str) -> timedelta:
    """A duration such as ``"30D"``, ``"12h"``, ``"90min"``, ``"2W"``, ``"3600s"`` (> 0); ``key`` names the setting.

    A bare number is refused: whether 30 means days, hours or cycles would be a guess.
    """
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise OrchestrationConfigError(
            f"{key} must be null or a duration > 0 written as <number><unit> with unit one of "
            f"{list(DURATION_UNITS)} (e.g. '30D', '12h', '90min'); got {value!r}"
        )
    return timedelta(**{DURATION_UNITS[match.group(2)]: float(match.group(1))})


@dataclass(frozen=True)
class RetrainConfig:
    """When a Day-N cycle refits the models besides drift (``orchestration.cycle.retrain``).

    ``every``: null, or a duration (``"30D"``, ``"12h"``): a cycle refits when the newest version of the
    registered model (the last full refit: Day 0 or a retrain, promoted or not) was registered at least this
    long ago, read from the MLflow registry. ``force``: every cycle refits while it is true (for one cycle,
    use ``python -m ts_kedro.orchestration cycle --retrain`` or the flow parameter ``force_retrain``).
    ``after_drift_refit``: ``"wait"`` (default): after a refit that data drift triggered, data drift alone does
    not refit again until the drift reference window has moved past that refit's data (the verdict and its
    alerts still stand; performance drift, the schedule and force still refit); ``"retrain"``: every cycle with
    drift refits.
    ``after_growth``: null, or a share g > 0: a cycle refits once the steps that arrived since the newest
    registered version's data end reach g times the median series length that version was fitted on (g = 1: the
    history has doubled since the last fit). Refits on this rule come ever further apart (geometrically), so
    parameters estimated on a short Day 0 do not stay in service for years while their cost stays bounded.
    """

    every: str | None = None
    force: bool = False
    after_drift_refit: str = "wait"
    after_growth: float | None = None

    def __post_init__(self) -> None:
        if self.every is not None:
            parse_duration(self.every, "orchestration.cycle.retrain.every")
        growth = self.after_growth
        if growth is not None and (isinstance(growth, bool) or not isinstance(growth, (int, float))
                                   or not 0 < float(growth) < float("inf")):
            raise OrchestrationConfigError(
                f"orchestration.cycle.retrain.after_growth must be null or a number > 0 (1: refit when the history "
                f"has doubled since the last fit), got {growth!r}")
        if not isinstance(self.force, bool):
            raise OrchestrationConfigError(f"orchestration.cycle.retrain.force must be true or false, got {self.force!r}")
        _check_choice("cycle.retrain.after_drift_refit", self.after_drift_refit, ("wait", "retrain"))

    @property
    def interval(self) -> timedelta | None:
        """``every`` as a timedelta, or None when there is no schedule."""
        return None if self.every is None else parse_duration(self.every, "orchestration.cycle.retrain.every")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetrainConfig:
        return cls(**_known_keys(cls, values, "orchestration.cycle.retrain"))


@dataclass(frozen=True)
class CycleConfig:
    """Which pipeline the scheduled cycle runs, decided from the MLflow registry."""

    registered_model_name: str = "ts_kedro_panel"
    champion_alias: str = "champion"
    day0_pipeline: str = "__default__"
    day_n_pipeline: str = "day_n"
    retrain_pipeline: str = "retrain"
    inference_pipeline: str = "inference"
    drift_dataset: str = "drift_summary"
    ingestion_report_dataset: str = "ingestion_report"
    env: str | None = None
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CycleConfig:
        values = _known_keys(cls, values, "orchestration.cycle")
        retrain = values.pop("retrain", None)
        if retrain is not None and not isinstance(retrain, dict):
            raise OrchestrationConfigError(
                f"orchestration.cycle.retrain must be a mapping such as {{every: '30D', force: false}}, got {retrain!r}"
            )
        return cls(**values, retrain=RetrainConfig.from_dict(dict(retrain or {})))


@dataclass(frozen=True)
class DeploymentConfig:
    """Schedule of the served / deployed cycle."""

    name: str = "ts-kedro-hourly"
    cron: str = "5 * * * *"
    timezone: str = "UTC"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DeploymentConfig:
        return cls(**_known_keys(cls, values, "orchestration.deployment"))


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go: an append-only JSONL log, and a Prefect notification block."""

    log_path: str = "data/08_reporting/alerts.jsonl"
    notification_block: str | None = "ts-kedro-alerts"
    webhook_url: str | None = None
    timeout_seconds: float = 10

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AlertConfig:
        return cls(**_known_keys(cls, values, "orchestration.alerts"))


@dataclass(frozen=True)
class PerSeriesConfig:
    """Where the local families' per-series fits, backtests, updates and predictions run.

    ``cluster``: null = joblib processes on the machine that runs the node (the default); ``local`` = a
    ``distributed.LocalCluster`` started for the run (or, inside a Dask worker, the cluster that worker
    belongs to); ``tcp://host:8786`` (any Dask scheduler address) = that cluster, whose workers must have
    this project installed.
    """

    cluster: str | None = None
    local_n_workers: int | None = None       # LocalCluster processes; null = Dask's choice (one per core group)
    local_threads_per_worker: int = 1         # per-series fits are single-threaded: one thread per process
    chunks_per_worker: int = 4                # chunks of series per worker thread (see _per_series.DaskTarget)
    connect_timeout_seconds: float = 30

    def __post_init__(self) -> None:
        where = "orchestration.per_series"
        if self.cluster is not None:
            if not isinstance(self.cluster, str) or not self.cluster.strip():
                raise OrchestrationConfigError(
                    f"{where}.cluster must be null, 'local' or a Dask scheduler address such as "
                    f"tcp://host:8786, got {self.cluster!r}"
                )
            if self.cluster != "local" and "://" not in self.cluster:
                raise OrchestrationConfigError(
                    f"{where}.cluster {self.cluster!r} is neither 'local' nor a scheduler address with a protocol "
                    "(tcp://host:8786, tls://host:8786): write the protocol, or null to run on this machine"
                )
        if self.local_n_workers is not None and (
            isinstance(self.local_n_workers, bool) or int(self.local_n_workers) < 1
        ):
            raise OrchestrationConfigError(f"{where}.local_n_workers must be null or >= 1, got {self.local_n_workers!r}")
        for key in ("local_threads_per_worker", "chunks_per_worker"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise OrchestrationConfigError(f"{where}.{key} must be a positive integer, got {value!r}")
        if self.connect_timeout_seconds <= 0:
            raise OrchestrationConfigError(
                f"{where}.connect_timeout_seconds must be > 0, got {self.connect_timeout_seconds!r}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PerSeriesConfig:
        return cls(**_known_keys(cls, values, "orchestration.per_series"))


@dataclass(frozen=True)
class PartitionedConfig:
    """Partition-by-partition runs (``python -m ts_kedro.orchestration partitioned``; see
    ``ts_kedro.orchestration.partitioned``): rows per partition (whole series), where partitions are written."""

    rows_per_partition: int = 2_000_000
    work_dir: str = "data/02_intermediate/_partitions"
    keep_partitions: bool = False

    def __post_init__(self) -> None:
        value = self.rows_per_partition
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OrchestrationConfigError(
                f"orchestration.partitioned.rows_per_partition must be a positive integer, got {value!r}")
        if not isinstance(self.work_dir, str) or not self.work_dir.strip():
            raise OrchestrationConfigError(
                f"orchestration.partitioned.work_dir must be a folder path, got {self.work_dir!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PartitionedConfig:
        return cls(**_known_keys(cls, values, "orchestration.partitioned"))


@dataclass(frozen=True)
class OrchestrationConfig:
    """The whole `orchestration` block."""

    pipeline_run: PipelineRunConfig
    cycle: CycleConfig
    deployment: DeploymentConfig
    alerts: AlertConfig
    per_series: PerSeriesConfig = field(default_factory=PerSeriesConfig)
    partitioned: PartitionedConfig = field(default_factory=PartitionedConfig)

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> OrchestrationConfig:
        block = dict(block or {})
        cycle = CycleConfig.from_dict(block.pop("cycle", None) or {})
        deployment = DeploymentConfig.from_dict(block.pop("deployment", None) or {})
        alerts = AlertConfig.from_dict(block.pop("alerts", None) or {})
        per_series = PerSeriesConfig.from_dict(block.pop("per_series", None) or {})
        partitioned = PartitionedConfig.from_dict(block.pop("partitioned", None) or {})
        return cls(PipelineRunConfig.from_dict(block), cycle, deployment, alerts, per_series, partitioned)


def load_orchestration_config(project_path: Path | str, env: str | None = None) -> OrchestrationConfig:
    """Read `orchestration` from conf/base/orchestration.yml, overridden by conf/<env>/orchestration.yml.

    Uses Kedro's OmegaConfigLoader (same env layering as the catalog) with its own pattern, so the
    project's settings.py needs no entry for it. A missing file gives the documented defaults.
    """
    conf_source = Path(project_path) / "conf"
    if not conf_source.is_dir():
        raise OrchestrationConfigError(f"no conf/ folder in {project_path}: is this a Kedro project root?")
    loader = OmegaConfigLoader(
        conf_source=str(conf_source),
        base_env="base",
        default_run_env="local",
        env=env or os.getenv("KEDRO_ENV"),
        config_patterns={"orchestration": ["orchestration*", "orchestration*/**"]},
        # Same `${env:NAME,default}` resolver as the project's settings.py, e.g. for the alert webhook URL.
        custom_resolvers={"env": lambda name, default=None: os.environ.get(name, default)},
    )
    try:
        raw = loader["orchestration"]
    except Exception as err:  # MissingConfigException when no file exists in any env
        if type(err).__name__ != "MissingConfigException":
            raise
        logger.info("no orchestration*.yml under %s: using defaults", conf_source)
        raw = {}
    return OrchestrationConfig.from_dict(raw.get("orchestration", {}))


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OrchestrationConfigError(f"orchestration.{key} must be one of {list(choices)}, got {value!r}")


def _known_keys(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    allowed = {f.name for f in fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise OrchestrationConfigError(
            f"unknown key(s) {sorted(unknown)} in {where} (conf/*/orchestration.yml); allowed: {sorted(allowed)}"
        )
    return dict(values)
