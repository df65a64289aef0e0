"""Retention at the end of Day-N ingestion: old raw batch files, old quarantine folders, old registry versions.

What may go, and what never goes:

- ``archive/<stamp>/``: the newest ``keep_last`` stamp folders stay (and any younger than ``max_age_days`` when
  that is set). In an older folder a file is deleted only when its sha256 is recorded in the history store's
  ``batch_files`` table (``DuckDBHistoryDataset.recorded_files``): then every row it held is in the history. A
  file without that record (archived before the store existed, or never stored) is kept and named in the result.
  The check is made by the dataset right before it deletes, on the bytes it deletes, not taken from a plan.
- ``quarantine/<stamp>/``: the same count/age rule; a whole folder (batch file and its report) goes, since
  quarantined rows are by definition not in the history: set ``keep_last: null`` to keep them all.
- registry versions of the registered model: the newest ``keep_last`` versions stay, and always every version
  holding an alias (``champion``, ``challenger``), every version of the champion stack that ``rollback`` can return
  to, and every version that is the last holder of a promotion-history record (the history lives in version tags:
  deleting its last copy would change what rollback replays). Nothing is deleted unless ``delete: true``; by
  default the result is a dry run naming what would go. With ``keep_last: null`` the registry is not queried.

The deletions are done by two catalog datasets (``RawBatchRetentionDataset``, ``ModelRegistryRetentionDataset``):
the ingestion node only hands them the policy. Each save appends what it did to a JSONL log; ``load`` returns the
newest entry, which the last ingestion node puts into ``ingestion_report["retention"]``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset

logger = logging.getLogger(__name__)

STAMP_FORMAT = "%Y-%m-%dT%H.%M.%S.%fZ"  # BatchFileRouterDataset's folder names


class RetentionConfigError(ValueError):
    """An ``ingestion.retention`` setting has a value retention does not know."""


def _keep_last(value: Any, label: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RetentionConfigError(f"ingestion.retention.{label} must be null or an integer >= 0, got {value!r}")
    return value


def retention_policy(retention: dict[str, Any] | None) -> dict[str, Any]:
    """Checked settings with their defaults (see ``conf/base/parameters_ingestion.yml``)."""
    retention = retention or {}
    unknown = set(retention) - {"archive", "quarantine", "models"}
    if unknown:
        raise RetentionConfigError(f"ingestion.retention has unknown key(s) {sorted(unknown)}; "
                                   "expected archive, quarantine, models")
    policy: dict[str, Any] = {}
    for kind in ("archive", "quarantine"):
        block = retention.get(kind) or {}
        age = block.get("max_age_days")
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or age < 0):
            raise RetentionConfigError(f"ingestion.retention.{kind}.max_age_days must be null or >= 0, got {age!r}")
        policy[kind] = {"keep_last": _keep_last(block.get("keep_last"), f"{kind}.keep_last"), "max_age_days": age}
    models = retention.get("models") or {}
    delete = models.get("delete", False)
    if not isinstance(delete, bool):
        raise RetentionConfigError(f"ingestion.retention.models.delete must be true or false, got {delete!r}")
    policy["models"] = {"keep_last": _keep_last(models.get("keep_last"), "models.keep_last"), "delete": delete,
                        "registered_model_name": models.get("registered_model_name")}
    if policy["models"]["keep_last"] is not None and not policy["models"]["registered_model_name"]:
        raise RetentionConfigError("ingestion.retention.models.registered_model_name is needed when keep_last is set")
    return policy


def expired_stamps(names: list[str], keep_last: int | None, max_age_days: float | None,
                   now: datetime) -> list[str]:
    """Stamp folder names that retention may empty: outside the newest ``keep_last`` and older than the age limit.

    Names that are not stamps are never returned. ``keep_last`` and ``max_age_days`` both null: none.
    """
    stamps = {}
    for name in names:
        try:
            stamps[name] = datetime.strptime(name, STAMP_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    if keep_last is None and max_age_days is None:
        return []
    ordered = sorted(stamps, key=stamps.__getitem__)
    candidates = ordered if keep_last is None else ordered[:max(len(ordered) - keep_last, 0)]
    if max_age_days is not None:
        limit = now - timedelta(days=max_age_days)
        candidates = [name for name in candidates if stamps[name] < limit]
    return candidates


def plan_version_retention(versions: list[int], aliases: dict[str, int], champion_stack: list[int],
                           records: dict[int, set[int]], keep_last: int) -> dict[str, Any]:
    """Which registry versions to keep (with why) and which may be deleted.

    Args:
        versions: every version number of the registered model.
        aliases: alias -> version (``champion``, ``challenger``, ...).
        champion_stack: the champions rollback replays (``registry.champion_stack``), oldest first.
        records: version -> sequence numbers of the promotion-history records tagged on it.
        keep_last: how many of the newest versions to keep whatever they are.
    """
    keep: dict[int, list[str]] = {}
    for version in sorted(versions)[len(versions) - keep_last:] if keep_last else []:
        keep.setdefault(version, []).append(f"one of the newest {keep_last}")
    for alias, version in aliases.items():
        keep.setdefault(int(version), []).append(f"alias {alias}")
    for version in champion_stack:
        keep.setdefault(int(version), []).append("rollback stack")
    # the promotion history lives in version tags: keep a holder of every record, so rollback replays the same
    held = set().union(*(records.get(v, set()) for v in keep)) if keep else set()
    for sequence in sorted(set().union(*records.values()) - held if records else set()):
        holder = max(v for v, seqs in records.items() if sequence in seqs)
        keep.setdefault(holder, []).append(f"last holder of promotion record {sequence}")
        held |= records[holder]
    delete = sorted(set(versions) - set(keep))
    return {"keep": {str(v): reasons for v, reasons in sorted(keep.items())}, "delete": delete}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _JsonlLog:
    """Append-only JSONL log; ``last()`` is the newest entry ({} when there is none)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def last(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        with open(self.path, encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip()]
        return json.loads(lines[-1]) if lines else {}


class RawBatchRetentionDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Deletes old archived batch files (only those whose rows the history store holds) and old quarantine folders.

    ``save({"archive": {...}, "quarantine": {...}})`` takes ``retention_policy(...)``'s blocks; ``load`` returns what
    the newest save removed and kept. Example::

        raw_batch_retention:
          type: ts_kedro.pipelines.ingestion.retention.RawBatchRetentionDataset
          archive_path: data/01_raw/archive
          quarantine_path: data/01_raw/quarantine
          history_filepath: data/02_intermediate/history.duckdb
          log_path: data/08_reporting/retention_log.jsonl
    """

    def __init__(self, archive_path: str, quarantine_path: str, history_filepath: str, log_path: str,
                 filename_suffix: str = ".csv", metadata: dict[str, Any] | None = None):
        self._archive = Path(archive_path)
        self._quarantine = Path(quarantine_path)
        self._history = history_filepath
        self._log = _JsonlLog(log_path)
        self._suffix = filename_suffix
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"archive_path": str(self._archive), "quarantine_path": str(self._quarantine),
                "history_filepath": self._history, "log_path": str(self._log.path)}

    def _exists(self) -> bool:
        return self._log.path.exists()

    def load(self) -> dict[str, Any]:
        return self._log.last()

    def save(self, data: dict[str, Any]) -> None:
        from ts_kedro.datasets.history_store import DuckDBHistoryDataset

        now = datetime.now(timezone.utc)
        result: dict[str, Any] = {"kind": "raw_batches", "at": now.isoformat(), "policy": data}
        recorded = set(DuckDBHistoryDataset(self._history).recorded_files()["sha256"])
        removed, kept = [], []
        archive = data.get("archive") or {}
        for stamp in expired_stamps(_folders(self._archive), archive.get("keep_last"), archive.get("max_age_days"), now):
            folder = self._archive / stamp
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest = _sha256(path) if path.name.endswith(self._suffix) else None
                if digest is not None and digest in recorded:
                    size = path.stat().st_size
                    path.unlink()
                    removed.append({"file": str(path), "sha256": digest, "bytes": size})
                else:
                    kept.append({"file": str(path), "sha256": digest,
                                 "why": "its rows are not recorded in the history store (no batch_files entry for "
                                        "this sha256)" if digest else "not a batch file"})
            _remove_empty(folder)
        quarantine = data.get("quarantine") or {}
        removed_quarantine = []
        for stamp in expired_stamps(_folders(self._quarantine), quarantine.get("keep_last"),
                                    quarantine.get("max_age_days"), now):
            folder = self._quarantine / stamp
            files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
            removed_quarantine.append({"folder": str(folder), "files": files})
        result |= {"archive_files_removed": removed, "archive_files_kept": kept,
                   "quarantine_folders_removed": removed_quarantine,
                   "bytes_removed": int(sum(r["bytes"] for r in removed))}
        self._log.append(result)
        for entry in removed:
            logger.info("retention: removed archived batch %s (rows in the history store)", entry["file"])
        for entry in kept:
            logger.warning("retention: kept %s: %s", entry["file"], entry["why"])
        for entry in removed_quarantine:
            logger.info("retention: removed quarantine folder %s (%d file(s))", entry["folder"], len(entry["files"]))


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _remove_empty(folder: Path) -> None:
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


class ModelRegistryRetentionDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Keeps the newest registry versions plus every alias, rollback target and promotion-record holder.

    ``save(policy["models"])``: with ``keep_last: null`` nothing is queried; otherwise the plan
    (``plan_version_retention``) is made and, only with ``delete: true``, the other versions are deleted. A
    decision left half done (``promotion_pending`` tag) blocks deletion. ``load`` returns the newest result.
    """

    def __init__(self, log_path: str, tracking_uri: str | None = None, metadata: dict[str, Any] | None = None):
        self._log = _JsonlLog(log_path)
        self._tracking_uri = tracking_uri
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"log_path": str(self._log.path), "tracking_uri": self._tracking_uri}

    def _exists(self) -> bool:
        return self._log.path.exists()

    def load(self) -> dict[str, Any]:
        return self._log.last()

    def save(self, data: dict[str, Any]) -> None:
        result: dict[str, Any] = {"kind": "model_versions", "at": datetime.now(timezone.utc).isoformat(),
                                  "policy": data}
        if data.get("keep_last") is None:
            result |= {"status": "off", "deleted": [], "would_delete": []}
            self._log.append(result)
            return
        from ts_kedro.registry.registry import HISTORY_TAG_PREFIX, PENDING_TAG, champion_stack, get_client

        name = data["registered_model_name"]
        client = get_client(self._tracking_uri)
        try:
            model = client.get_registered_model(name)
        except Exception as error:  # noqa: BLE001 - no model yet (Day 0 not run) is a state, not a failure
            result |= {"status": "no_model", "message": f"{type(error).__name__}: {error}", "deleted": [],
                       "would_delete": []}
            self._log.append(result)
            logger.info("retention: registered model %r not found; no version considered", name)
            return
        found = client.search_model_versions(f"name = '{name}'")
        records: dict[int, set[int]] = {}
        history: dict[int, dict[str, Any]] = {}
        for version in found:
            for key, value in version.tags.items():
                if key.startswith(HISTORY_TAG_PREFIX):
                    record = json.loads(value)
                    records.setdefault(int(version.version), set()).add(int(record["sequence"]))
                    history[int(record["sequence"])] = record
        plan = plan_version_retention([int(v.version) for v in found], {k: int(v) for k, v in model.aliases.items()},
                                      champion_stack([history[s] for s in sorted(history)]), records,
                                      data["keep_last"])
        result |= {"keep": plan["keep"]}
        if PENDING_TAG in (model.tags or {}):
            result |= {"status": "blocked", "message": "a registry decision is half done (promotion_pending): run "
                       "`ts-kedro registry repair` first", "deleted": [], "would_delete": plan["delete"]}
        elif not data.get("delete"):
            result |= {"status": "dry_run", "deleted": [], "would_delete": plan["delete"]}
        else:
            deleted = []
            for version in plan["delete"]:
                client.delete_model_version(name, str(version))
                deleted.append(version)
                logger.info("retention: deleted registry version %s of %r", version, name)
            result |= {"status": "deleted", "deleted": deleted, "would_delete": []}
        if result["would_delete"]:
            logger.info("retention (%s): registry versions %s of %r would be deleted with delete: true",
                        result["status"], result["would_delete"], name)
        self._log.append(result)  # "blocked" is reported, not raised: the ingestion itself succeeded
