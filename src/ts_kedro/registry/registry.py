"""Champion/challenger registry over MLflow: register, promote by margin, roll back, append-only history.

Aliases: ``champion`` is the version served as ``models:/<name>@champion``; ``challenger`` is the last
candidate that was evaluated and not promoted (it is removed when its version is promoted).

Every decision is one record (the fields of ``PromotionRecord``, returned as a plain dict so Kedro can
save it as JSON) with a model-wide ``sequence`` number. It is
appended to a JSONL file (never rewritten) and stored as the tag ``promotion_history.<sequence>`` on
every version it concerns (the candidate, and the champion it replaced or restored). Tags use a new key
per record, so earlier records are never overwritten; the registry tags are the source of truth that
``rollback`` replays, the JSONL file is the local, human-readable audit trail.

Rollback replays the champion stack: each promotion pushes a version, each rollback pops one. So a
second rollback goes one champion further back, and a rollback with a single champion in the stack
fails with ``RegistryError``.

A decision is written so that a kill at any point leaves a state the next registry operation repairs
(write-ahead): (1) the decision, with its sequence number, is stored as the registered model's tag
``promotion_pending`` (the intent); (2) the aliases move; (3) the record tags are written on the
versions; (4) the record is appended to the JSONL file; (5) the intent tag is deleted (done). Every
operation that changes aliases (promotion, recorded decision, rollback, and ``repair_pending`` itself,
which ``ts-kedro registry repair`` and the cycle flow call) first finishes a pending decision: it
re-applies the aliases, writes the missing tags and JSONL line, and deletes the intent. Every step is
idempotent, so a kill during a repair is repaired the same way. Sequence numbers are taken after the
repair, so a half-done decision's number is never reused.
"""
from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException

from ts_kedro.registry.panel_model import SelectedPanelModel
from ts_kedro.registry.pyfunc import load_registered_panel_model, log_panel_model

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG_PREFIX = "promotion_history."
PENDING_TAG = "promotion_pending"  # registered-model tag: the decision being applied (write-ahead intent)
# Test hook for kill tests: the process sleeps at the named step of a decision (see _checkpoint).
PAUSE_AT_ENV = "TS_KEDRO_REGISTRY_PAUSE_AT"
PAUSE_STEPS = ("after_intent", "after_aliases", "after_tags", "after_jsonl")
DEFAULT_HISTORY_PATH = Path("data/08_reporting/promotion_history.jsonl")


class RegistryError(RuntimeError):
    """A registry operation cannot be done: unknown model or version, nothing to roll back to, bad scores."""


@dataclass(frozen=True)
class PromotionRecord:
    """One registry decision; ``event`` is ``promotion`` (promoted or not) or ``rollback``."""

    model_name: str
    sequence: int
    event: str
    time: str
    promoted: bool
    champion_version_before: int | None
    champion_version_after: int | None
    challenger_version: int | None
    champion_score: float | None = None
    challenger_score: float | None = None
    margin: float | None = None
    higher_is_better: bool | None = None
    relative_improvement: float | None = None
    metric: str | None = None
    reason: str = ""
    #: the tie-break (``promote_if_better``): mean interval score of each on the same window, and the gain
    champion_interval_score: float | None = None
    challenger_interval_score: float | None = None
    interval_improvement: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# -- clients and lookups ------------------------------------------------------------------------
def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """Client for ``tracking_uri`` (else ``MLFLOW_TRACKING_URI``, else MLflow's default); the model
    registry lives in the same store."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _is_not_found(exc):
            raise RegistryError(
                f"registered model {name!r} does not exist in {client.tracking_uri}: register one first "
                "(model_selection pipeline or log_and_register)"
            ) from exc
        raise


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        isinstance(exc, RestException) and exc.get_http_status_code() == 404
    )


def get_alias_version(name: str, alias: str, tracking_uri: str | None = None) -> int | None:
    """Version number that ``alias`` points at, or ``None`` when the alias is not set.

    Raises:
        RegistryError: the registered model does not exist.
    """
    client = get_client(tracking_uri)
    _require_model(client, name)
    aliases = client.get_registered_model(name).aliases
    return int(aliases[alias]) if alias in aliases else None


def champion_exists(name: str, tracking_uri: str | None = None) -> bool:
    """True when ``name`` is registered and has a ``champion`` alias."""
    try:
        return get_alias_version(name, CHAMPION, tracking_uri) is not None
    except RegistryError:
        return False


def _get_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _is_not_found(exc):
            raise RegistryError(f"version {version} of registered model {name!r} does not exist") from exc
        raise


# -- logging and loading ------------------------------------------------------------------------
@contextmanager
def _tracking_uri(uri: str | None):
    """Point the fluent API at ``uri`` for the block, then restore what was set before (also the env var)."""
    if uri is None:
        yield
        return
    from mlflow.tracking._tracking_service import utils as tracking_utils  # the only place the setting lives

    previous, previous_env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri = previous
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def log_and_register(
    panel_model: SelectedPanelModel,
    name: str,
    run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Log ``panel_model`` as a pyfunc model and register it as a new version of ``name``.

    The model goes into run ``run_id``, else the active run (e.g. kedro-mlflow's), else a new run.
    The version gets ``tags`` plus a summary (families, series count, levels, max horizon and the
    scalar metadata entries as ``meta.<key>``). No alias is set: call ``promote_if_better`` next.

    Returns:
        The new version number.
    """
    version_tags = {**_summary_tags(panel_model), **{str(k): str(v) for k, v in (tags or {}).items()}}
    with _tracking_uri(tracking_uri):
        active = mlflow.active_run()
        if active is not None and run_id is not None and active.info.run_id != run_id:
            raise RegistryError(
                f"run {active.info.run_id} is active but run_id={run_id!r} was requested: end the active run "
                "or pass run_id=None to log into it"
            )
        if active is not None:
            info = log_panel_model(panel_model)
        else:
            with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"register-{name}"):
                info = log_panel_model(panel_model)
        # registering separately sets all tags in the one create-version request
        registered = mlflow.register_model(
            info.model_uri, name, tags={key: value[:5000] for key, value in version_tags.items()}
        )
    version = int(registered.version)
    logger.info("registered %s version %d (run %s)", name, version, info.run_id)
    return version


def _summary_tags(panel_model: SelectedPanelModel) -> dict[str, str]:
    counts: dict[str, int] = {}
    for family in panel_model.choice.values():
        counts[family] = counts.get(family, 0) + 1
    tags = {
        "families": ",".join(sorted(panel_model.family_models)),
        "ensemble_members": ",".join(panel_model.ensemble_members),
        "choice_counts": json.dumps(counts, sort_keys=True),
        "n_series": str(len(panel_model.choice)),
        "levels": ",".join(map(str, panel_model.levels)),
        "max_horizon": str(panel_model.max_horizon),
    }
    for key, value in panel_model.metadata.items():
        if isinstance(value, (str, int, float, bool)):
            tags[f"meta.{key}"] = str(value)
    return tags


def load_panel_model(name: str, version: int, tracking_uri: str | None = None) -> SelectedPanelModel:
    """The pickled SelectedPanelModel of ``name`` version ``version`` (without the pyfunc wrapper)."""
    client = get_client(tracking_uri)
    _get_version(client, name, version)
    # only the pickle, not the whole model folder (code snapshot, environment files)
    return load_registered_panel_model(client, name, version)


def load_champion(name: str, tracking_uri: str | None = None) -> SelectedPanelModel:
    """The SelectedPanelModel that ``name@champion`` points at.

    Raises:
        RegistryError: the model is not registered or has no champion yet.
    """
    version = get_alias_version(name, CHAMPION, tracking_uri)
    if version is None:
        raise RegistryError(f"registered model {name!r} has no {CHAMPION!r} alias yet: promote a version first")
    return load_panel_model(name, version, tracking_uri)


# -- history ---------------------------------------------------------------------------------------
def read_history(name: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every record of ``name``, in sequence order, read from the version tags (the source of truth)."""
    client = get_client(tracking_uri)
    _require_model(client, name)
    records: dict[int, dict[str, Any]] = {}
    for version in client.search_model_versions(f"name = '{name}'"):
        for key, value in version.tags.items():
            if key.startswith(HISTORY_TAG_PREFIX):
                record = json.loads(value)
                records[record["sequence"]] = record  # the same record sits on every version it concerns
    return [records[sequence] for sequence in sorted(records)]


def _apply(client: MlflowClient, record: PromotionRecord, history_path: str | Path) -> dict[str, Any]:
    """Apply a decision with the write-ahead protocol (module docstring): intent, aliases, tags, JSONL, done."""
    pending = {"record": asdict(record), "history_path": str(history_path)}
    client.set_registered_model_tag(record.model_name, PENDING_TAG, json.dumps(pending, sort_keys=True))
    _checkpoint("after_intent")
    _finish(client, record, history_path)
    logger.info("registry %s: %s", record.event, record.reason)
    return asdict(record)


def _finish(client: MlflowClient, record: PromotionRecord, history_path: str | Path) -> None:
    """Steps 2-5 of a decision; each one idempotent, so a repair can run them again after a kill."""
    name = record.model_name
    if record.event == "rollback" or record.promoted:
        client.set_registered_model_alias(name, CHAMPION, str(record.champion_version_after))
        _drop_challenger_alias(client, name, record.champion_version_after)  # never champion and challenger at once
    elif record.challenger_version is not None:
        client.set_registered_model_alias(name, CHALLENGER, str(record.challenger_version))
    _checkpoint("after_aliases")
    versions = {record.challenger_version, record.champion_version_before, record.champion_version_after}
    for version in sorted(v for v in versions if v is not None):
        client.set_model_version_tag(name, str(version), f"{HISTORY_TAG_PREFIX}{record.sequence:06d}", record.to_json())
    _checkpoint("after_tags")
    path = Path(history_path)
    if record.sequence not in _jsonl_sequences(path, name):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:  # append only: past decisions are never rewritten
            handle.write(record.to_json() + "\n")
    _checkpoint("after_jsonl")
    client.delete_registered_model_tag(name, PENDING_TAG)


def _jsonl_sequences(path: Path, name: str) -> set[int]:
    if not path.exists():
        return set()
    sequences = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill mid-write: the record is appended again, whole
                continue
            if isinstance(record, dict) and record.get("model_name") == name:
                sequences.add(record.get("sequence"))
    return sequences


def _checkpoint(step: str) -> None:
    """Kill-test hook: with ``TS_KEDRO_REGISTRY_PAUSE_AT=<step>`` the process says so on stderr and sleeps."""
    if os.environ.get(PAUSE_AT_ENV) == step:
        import sys
        import time

        print(f"ts_kedro registry paused at {step}", file=sys.stderr, flush=True)
        time.sleep(3600)


def pending_decision(name: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The half-done decision of ``name`` (``record`` and ``history_path``), or None."""
    client = get_client(tracking_uri)
    _require_model(client, name)
    raw = client.get_registered_model(name).tags.get(PENDING_TAG)
    return json.loads(raw) if raw else None


def repair_pending(
    name: str, history_path: str | Path | None = None, tracking_uri: str | None = None
) -> dict[str, Any] | None:
    """Finish a decision a killed process left half done (aliases, record tags, JSONL line); None when none.

    ``history_path`` defaults to the file the interrupted decision was writing to.
    """
    client = get_client(tracking_uri)
    _require_model(client, name)
    return _repair(client, name, history_path)


def _repair(client: MlflowClient, name: str, history_path: str | Path | None = None) -> dict[str, Any] | None:
    raw = client.get_registered_model(name).tags.get(PENDING_TAG)
    if not raw:
        return None
    pending = json.loads(raw)
    record = PromotionRecord(**pending["record"])
    logger.warning(
        "registry: finishing decision #%d of %r that an earlier process left half done: %s",
        record.sequence, name, record.reason,
    )
    _finish(client, record, history_path or pending["history_path"])
    return asdict(record)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# -- promotion and rollback ---------------------------------------------------------------------------
def promote_if_better(
    name: str,
    challenger_version: int,
    champion_score: float | None,
    challenger_score: float | None,
    margin: float,
    higher_is_better: bool = False,
    metric: str | None = None,
    history_path: str | Path = DEFAULT_HISTORY_PATH,
    tracking_uri: str | None = None,
    champion_interval_score: float | None = None,
    challenger_interval_score: float | None = None,
) -> dict[str, Any]:
    """Make ``challenger_version`` the champion if it beats the champion by the relative ``margin``.

    Both scores must come from the same recent backtest windows (the caller computes them). The
    challenger wins when its relative improvement ``(champion - challenger) / |champion|`` (sign flipped
    when ``higher_is_better``) is positive and at least ``margin`` (0.02 = 2 %). Without a champion the
    version becomes champion whatever the scores. A challenger that loses keeps the ``challenger`` alias.

    Tie-break on the intervals: given both interval scores (lower is better: the mean MSIS over the interval
    levels on the same window), a challenger whose point forecasts tie with the champion's (relative improvement
    within the margin either way) also wins when its interval score improves by at least the margin beyond any
    point loss (interval gain + point improvement >= margin): no worse points need the margin, 0.5 % worse points
    need 2.5 %. Why: after a lasting
    change, a retrain of a model whose point forecast cannot move (seasonal naive, a re-estimation that lands on
    the same parameters) brings intervals calibrated on the new behaviour; without the tie-break it tied, lost,
    and the stale champion intervals raised the same drift verdict in every later cycle (the Day-N replay on
    M4 Hourly, ``docs/benchmarks.md``). Point accuracy still comes first: a challenger worse in points by the
    margin or more never wins on its intervals, and a smaller loss must be paid for by a larger interval gain.
    Why a loss inside the margin counts: in the M4 Hourly replay a challenger 0.46 % worse in points and 75 %
    better in intervals was kept, a stale champion beside a retrain calibrated on the new behaviour.

    Returns:
        The recorded decision as a dict (``PromotionRecord`` fields; also appended to ``history_path``
        and tagged on the versions).
    """
    client = get_client(tracking_uri)
    _require_model(client, name)
    _repair(client, name)
    challenger_version = int(challenger_version)
    _get_version(client, name, challenger_version)
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise RegistryError(f"margin must be a finite number >= 0 (relative, 0.02 = 2 %), got {margin!r}")
    champion_version = get_alias_version(name, CHAMPION, tracking_uri)
    if champion_version == challenger_version:
        raise RegistryError(f"version {challenger_version} of {name!r} already is the champion")

    sequence = _next_sequence(name, tracking_uri)
    common = dict(
        model_name=name, sequence=sequence, event="promotion", time=_now(), champion_version_before=champion_version,
        challenger_version=challenger_version, margin=float(margin), higher_is_better=higher_is_better, metric=metric,
        challenger_score=_optional_score(challenger_score, "challenger_score"),
        champion_score=_optional_score(champion_score, "champion_score"),
    )
    if champion_version is None:
        record = PromotionRecord(
            **common, promoted=True, champion_version_after=challenger_version,
            reason=f"no champion yet: version {challenger_version} becomes the first champion",
        )
        return _apply(client, record, history_path)

    if common["champion_score"] is None or common["challenger_score"] is None:
        raise RegistryError(
            f"{name!r} has champion version {champion_version}: both champion_score and challenger_score "
            "(on the same recent windows) are needed to decide"
        )
    improvement = relative_improvement(common["champion_score"], common["challenger_score"], higher_is_better)
    promoted = improvement > 0 and _reaches(improvement, margin)
    label = metric or "score"
    comparison = (
        f"{label} {common['challenger_score']:.6g} vs champion {common['champion_score']:.6g} "
        f"({'higher' if higher_is_better else 'lower'} is better): relative improvement {improvement:.4%}, margin {margin:.4%}"
    )
    champion_interval = _optional_score(champion_interval_score, "champion_interval_score")
    challenger_interval = _optional_score(challenger_interval_score, "challenger_interval_score")
    interval_gain = None
    if champion_interval is not None and challenger_interval is not None:
        common.update(champion_interval_score=champion_interval, challenger_interval_score=challenger_interval)
        interval_gain = relative_improvement(champion_interval, challenger_interval)
        common["interval_improvement"] = interval_gain
        if not promoted and improvement > -margin:
            # a point loss inside the margin is a tie too, but the intervals must then gain the margin beyond it
            tie_won = interval_gain > 0 and _reaches(interval_gain + min(improvement, 0.0), margin)
            comparison += (f"; a tie on points, broken by the interval score {challenger_interval:.6g} vs champion "
                           f"{champion_interval:.6g} (lower is better): relative improvement {interval_gain:.4%}"
                           + (f", less the point loss {-improvement:.4%}" if improvement < 0 else ""))
            promoted = tie_won
    if promoted:
        reason = f"promoted version {challenger_version} over version {champion_version}: {comparison}"
    else:
        reason = f"kept champion version {champion_version}, version {challenger_version} stays challenger: {comparison}"
    record = PromotionRecord(
        **common, promoted=promoted, relative_improvement=improvement,
        champion_version_after=challenger_version if promoted else champion_version, reason=reason,
    )
    return _apply(client, record, history_path)


def _reaches(improvement: float, margin: float) -> bool:
    """``improvement >= margin``, where (10 - 9.8) / 10, 0.0199999... in floating point, counts as the 2 % margin."""
    return improvement >= margin or math.isclose(improvement, margin, rel_tol=1e-9)


def relative_improvement(champion_score: float, challenger_score: float, higher_is_better: bool = False) -> float:
    """How much better the challenger is, relative to |champion| (a perfect champion of 0 cannot be beaten
    by a lower-is-better score; any gain over 0 is infinite when higher is better)."""
    gain = (challenger_score - champion_score) if higher_is_better else (champion_score - challenger_score)
    if champion_score == 0:
        return math.inf if gain > 0 else (0.0 if gain == 0 else -math.inf)
    return gain / abs(champion_score)


def record_decision(
    name: str,
    challenger_version: int,
    promoted: bool = False,
    reason: str = "",
    metric: str | None = None,
    history_path: str | Path = DEFAULT_HISTORY_PATH,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Record that ``challenger_version`` was not promoted for a reason other than scores (e.g. the
    champion and the challenger had no common recent window); it gets the ``challenger`` alias.

    Promotion itself only goes through ``promote_if_better``, so ``promoted=True`` is refused.
    """
    if promoted:
        raise RegistryError("record_decision only records non-promotions: promote with promote_if_better")
    if not reason:
        raise RegistryError("record_decision needs a reason: the history must say why the version was not promoted")
    client = get_client(tracking_uri)
    _require_model(client, name)
    _repair(client, name)
    challenger_version = int(challenger_version)
    _get_version(client, name, challenger_version)
    champion_version = get_alias_version(name, CHAMPION, tracking_uri)
    if champion_version == challenger_version:
        raise RegistryError(f"version {challenger_version} of {name!r} is the champion: nothing to decide")
    record = PromotionRecord(
        model_name=name, sequence=_next_sequence(name, tracking_uri), event="promotion", time=_now(), promoted=False,
        champion_version_before=champion_version, champion_version_after=champion_version,
        challenger_version=challenger_version, metric=metric,
        reason=f"kept champion version {champion_version}, version {challenger_version} stays challenger: {reason}",
    )
    return _apply(client, record, history_path)


def set_alias(name: str, alias: str, version: int, tracking_uri: str | None = None) -> None:
    """Point ``alias`` (e.g. ``challenger``, ``staging``) at ``version``.

    ``champion`` is refused: it moves only through ``promote_if_better`` and ``rollback``, so that the
    history that rollback replays stays complete.
    """
    if alias == CHAMPION:
        raise RegistryError("the champion alias moves only through promote_if_better or rollback (history is kept)")
    client = get_client(tracking_uri)
    _require_model(client, name)
    _get_version(client, name, int(version))
    client.set_registered_model_alias(name, alias, str(int(version)))


def rollback(
    name: str, history_path: str | Path = DEFAULT_HISTORY_PATH, tracking_uri: str | None = None
) -> dict[str, Any]:
    """Point ``champion`` back at the champion before the current one, in one step.

    Raises:
        RegistryError: no champion, only one champion in the history, the alias was moved outside this
            module (history and alias disagree), or the previous version was deleted.
    """
    client = get_client(tracking_uri)
    _require_model(client, name)
    _repair(client, name)  # a decision a kill left half done is finished first: then history and alias agree
    current = get_alias_version(name, CHAMPION, tracking_uri)
    if current is None:
        raise RegistryError(f"registered model {name!r} has no champion: nothing to roll back")
    history = read_history(name, tracking_uri)
    stack = champion_stack(history)
    if not stack or stack[-1] != current:
        raise RegistryError(
            f"{name!r}@champion is version {current} but the promotion history ends with "
            f"{stack[-1] if stack else 'no champion'}: the alias was moved outside ts_kedro; set it by hand"
        )
    if len(stack) < 2:
        raise RegistryError(
            f"{name!r} has had only one champion (version {current}) since its history began: nothing earlier to roll back to"
        )
    previous = stack[-2]
    _get_version(client, name, previous)
    record = PromotionRecord(
        model_name=name, sequence=history[-1]["sequence"] + 1, event="rollback", time=_now(), promoted=False,
        champion_version_before=current, champion_version_after=previous, challenger_version=None,
        reason=f"rolled back champion from version {current} to version {previous}",
    )
    return _apply(client, record, history_path)


def champion_stack(history: list[dict[str, Any]]) -> list[int]:
    """Champion versions in order of promotion after replaying the history (rollbacks pop)."""
    stack: list[int] = []
    for record in sorted(history, key=lambda r: r["sequence"]):
        if record["event"] == "promotion" and record["promoted"]:
            stack.append(record["champion_version_after"])
        elif record["event"] == "rollback" and stack:
            stack.pop()
    return stack


def _next_sequence(name: str, tracking_uri: str | None) -> int:
    history = read_history(name, tracking_uri)
    return (history[-1]["sequence"] + 1) if history else 1


def _optional_score(value, label: str) -> float | None:
    if value is None:
        return None
    try:
        score = float(value)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{label} must be a number, got {value!r}") from exc
    if not math.isfinite(score):
        raise RegistryError(f"{label} must be finite, got {value!r}: a failed backtest cannot be compared")
    return score


def _drop_challenger_alias(client: MlflowClient, name: str, version: int) -> None:
    aliases = client.get_registered_model(name).aliases
    if aliases.get(CHALLENGER) is not None and int(aliases[CHALLENGER]) == version:
        client.delete_registered_model_alias(name, CHALLENGER)


def registry_status(name: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """Champion, challenger, latest version and the last decision, for the CLI and dashboards."""
    client = get_client(tracking_uri)
    _require_model(client, name)
    versions = client.search_model_versions(f"name = '{name}'")
    aliases = client.get_registered_model(name).aliases
    history = read_history(name, tracking_uri)

    def describe(version) -> dict[str, Any] | None:
        if version is None:
            return None
        found = next(v for v in versions if int(v.version) == int(version))
        tags = {k: v for k, v in found.tags.items() if not k.startswith(HISTORY_TAG_PREFIX)}
        return {"version": int(found.version), "run_id": found.run_id, "created": found.creation_timestamp, "tags": tags}

    return {
        "name": name,
        "tracking_uri": client.tracking_uri,
        "n_versions": len(versions),
        "latest_version": max((int(v.version) for v in versions), default=None),
        CHAMPION: describe(aliases.get(CHAMPION)),
        CHALLENGER: describe(aliases.get(CHALLENGER)),
        "last_decision": history[-1] if history else None,
        "pending_decision": (json.loads(raw)["record"] if (raw := client.get_registered_model(name).tags.get(PENDING_TAG)) else None),
    }
