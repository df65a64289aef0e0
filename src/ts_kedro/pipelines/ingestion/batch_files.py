"""Catalog datasets for Day-N batch files: list the drop folder, and move handled files without ever losing one."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError
from kedro_datasets.partitions import PartitionedDataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnexpectedFile:
    """A file in the drop folder whose name does not end in the batch suffix (e.g. ``day3.CSV``, ``notes.txt``)."""

    filepath: str
    reason: str


class OptionalPartitionedDataset(PartitionedDataset):
    """A ``PartitionedDataset`` that loads an empty dict when the folder holds no partition (or does not exist).

    The stock dataset raises ``No partitions found``; on Day N "no new batch" and "no earlier history version"
    are normal states that the nodes handle, not faults.

    With ``report_other_files: true`` (the drop folder), every other non-hidden file in the folder is loaded
    too, under its file name, as an ``UnexpectedFile`` saying why it is not read: a ``day3.CSV`` or a
    ``day3.txt`` was otherwise ignored without a word.
    """

    def __init__(self, *args: Any, report_other_files: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report_other_files = report_other_files

    def load(self) -> dict[str, Callable[[], Any]]:
        self._invalidate_caches()
        loaders = super().load() if self._list_partitions() else {}
        if self._report_other_files:
            for path, name in self._other_files():
                reason = (f"{name} is not read: batch files must end in {self._filename_suffix!r}"
                          + (f" (lower case): rename it to {name[:-len(self._filename_suffix)]}"
                             f"{self._filename_suffix}" if name.lower().endswith(self._filename_suffix.lower())
                             else "; if it is a batch, write it as CSV with that suffix") + "; it was left in place")
                loaders[name] = partial(UnexpectedFile, self._join_protocol(path), reason)
        return loaders

    def _other_files(self) -> list[tuple[str, str]]:
        """(path, name relative to the folder) of files that are neither batches nor hidden."""
        try:
            found = self._filesystem.find(self._normalized_path)
        except FileNotFoundError:
            return []
        root = self._filesystem._strip_protocol(self._normalized_path).rstrip("/")
        others = []
        for path in found:
            name = path.split(root, 1).pop().lstrip("/")
            if path.endswith(self._filename_suffix) or any(part.startswith(".") for part in name.split("/")):
                continue
            others.append((path, name))
        return others


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    # the rename/creation of a file is durable only once its directory entry is flushed
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the file itself is already fsynced
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def move_file_safely(source: Path, destination: Path) -> dict[str, Any]:
    """Copy ``source`` to ``destination``, fsync, verify the sha256, then remove the source.

    Never overwrites: an existing destination is a ``DatasetError``. If anything fails before the check
    passes, the source is left in place, so a file is never lost.
    """
    if destination.exists():
        raise DatasetError(f"refusing to overwrite {destination} while moving {source}; rename or remove it first")
    destination.parent.mkdir(parents=True, exist_ok=True)
    expected = _sha256(source)
    shutil.copy2(source, destination)
    with open(destination, "rb") as handle:
        os.fsync(handle.fileno())
    _fsync_dir(destination.parent)
    actual = _sha256(destination)
    if actual != expected:
        raise DatasetError(
            f"copy of {source} to {destination} is corrupt (sha256 {actual} != {expected}); the source was kept"
        )
    source.unlink()
    _fsync_dir(source.parent)
    return {"from": str(source), "to": str(destination), "sha256": expected, "bytes": destination.stat().st_size}


class BatchFileRouterDataset(AbstractDataset[dict[str, Any], list[dict[str, Any]]]):
    """Write-side of batch ingestion: moves each handled incoming file to the archive or the quarantine.

    ``save({"archive": [partition_id, ...], "quarantine": {partition_id: report_dict}})`` moves
    ``<incoming_path>/<partition_id><filename_suffix>`` untouched into ``<archive_path>/<stamp>/`` or
    ``<quarantine_path>/<stamp>/`` (``stamp`` = UTC time of the save, so re-delivered file names never
    collide) and writes ``<name>.report.json`` next to each quarantined file. ``load`` returns the log of
    every move done so far (``moves.jsonl`` in the archive folder).

    Example::

        batch_file_moves:
          type: ts_kedro.pipelines.ingestion.batch_files.BatchFileRouterDataset
          incoming_path: data/01_raw/incoming
          archive_path: data/01_raw/archive
          quarantine_path: data/01_raw/quarantine
          filename_suffix: .csv
    """

    def __init__(
        self,
        incoming_path: str,
        archive_path: str,
        quarantine_path: str,
        filename_suffix: str = ".csv",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._incoming = Path(incoming_path)
        self._archive = Path(archive_path)
        self._quarantine = Path(quarantine_path)
        self._suffix = filename_suffix
        self.metadata = metadata

    @property
    def _log_path(self) -> Path:
        return self._archive / "moves.jsonl"

    def _describe(self) -> dict[str, Any]:
        return {"incoming_path": str(self._incoming), "archive_path": str(self._archive),
                "quarantine_path": str(self._quarantine), "filename_suffix": self._suffix}

    def _source(self, partition_id: str) -> Path:
        source = (self._incoming / f"{partition_id}{self._suffix}").resolve()
        if self._incoming.resolve() not in source.parents:
            raise DatasetError(f"partition id {partition_id!r} points outside {self._incoming}")
        if not source.is_file():
            raise DatasetError(f"incoming batch {source} vanished before it could be moved; nothing was moved for it")
        return source

    def save(self, data: dict[str, Any]) -> None:
        unknown = set(data) - {"archive", "quarantine"}
        if unknown:
            raise DatasetError(f"BatchFileRouterDataset.save expects keys 'archive' and 'quarantine', got {sorted(unknown)}")
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H.%M.%S.%fZ")
        moves = []
        for partition_id in sorted(data.get("archive", [])):
            source = self._source(partition_id)
            moved = move_file_safely(source, self._archive / stamp / f"{partition_id}{self._suffix}")
            moves.append({"batch": partition_id, "disposition": "archived", **moved})
        for partition_id, report in sorted(data.get("quarantine", {}).items()):
            source = self._source(partition_id)
            target = self._quarantine / stamp / f"{partition_id}{self._suffix}"
            # the report goes first: a quarantined file is never left without its reason
            report_path = target.with_name(f"{Path(partition_id).name}.report.json")
            report_path.parent.mkdir(parents=True, exist_ok=True)
            with open(report_path, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            moved = move_file_safely(source, target)
            moves.append({"batch": partition_id, "disposition": "quarantined", "report": str(report_path), **moved})
        if moves:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "a", encoding="utf-8") as handle:
                for move in moves:
                    handle.write(json.dumps({"moved_at": stamp, **move}) + "\n")
        for move in moves:
            logger.info("batch %s %s to %s", move["batch"], move["disposition"], move["to"])

    def load(self) -> list[dict[str, Any]]:
        if not self._log_path.exists():
            return []
        with open(self._log_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _exists(self) -> bool:
        return self._log_path.exists()
