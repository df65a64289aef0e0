"""Append-only history store: a Kedro dataset over one DuckDB file of observations, batches and their lineage.

Why: the versioned Parquet ``history_panel`` writes a full copy of the whole history every cycle (storage grows
with the square of the cycles). Here an accepted batch is appended once and never rewritten; reading the history
"as of batch N" is a query (``WHERE batch_id <= N``), not a copy.

Tables (created on the first save):

- ``batches``: ``batch_id`` (1, 2, ...), ``parent_batch_id`` (the batch it was appended after: the lineage),
  ``source`` (e.g. the ingested file name; ``frame.attrs["source"]`` of the saved frame), ``sha256`` of the
  appended rows (canonical CSV of the rows sorted by series and time), ``arrived_at`` (UTC), ``n_rows``,
  ``n_series``, ``first_timestamp``, ``last_timestamp``.
- ``observations``: ``batch_id`` plus the columns of the first saved frame (``series_id``, ``timestamp``,
  ``value`` and any other, e.g. covariates), one row per (series_id, timestamp), never updated.
- ``batch_files``: ``sha256`` of a source file (the raw batch CSV, byte for byte), its ``file`` name, the
  ``batch_id`` after which all of its rows are stored, ``recorded_at``. Filled from ``frame.attrs["files"]``
  (``[{"file": ..., "sha256": ...}]``) in the same transaction as the rows; a file whose rows were all stored
  already (a re-delivery, a retried cycle) is recorded against the newest batch. Retention deletes an archived
  raw file only when its sha256 is here (``recorded_files``).

``save(frame)`` takes the full history (a drop-in for ``history_panel``: the ingestion node saves what it always
saved) or only the new rows: the rows whose (series_id, timestamp) are not stored yet become one new batch, in
one transaction (a process killed during the save leaves the store as it was). Saving the same data again adds
nothing, so a retried cycle stores its batch exactly once. A stored row with a different value is refused
(``DatasetError``): the history is append-only; a revision is a data problem for ingestion's quarantine.
``load()`` returns the history (``as_of_batch``: as it was after that batch) sorted by series and time;
``series_range: [first, last]`` narrows it to the series whose ids lie in that closed range (string order, either
end null for open): one partition of a partition-by-partition run (``ts_kedro.orchestration.partitioned``), read
by the query itself so memory follows the partition. ``series_rows()`` gives the rows and observed span per
series that partitioning is planned from. ``load_as: index`` makes ``load`` return a ``HistoryIndex``
(``history_index.py``) instead of the frame: per-series bounds, the row count, and the stored rows at given keys
by a query: what Day-N ingestion checks a batch against, in memory that follows the series count and the batch.

Migration: with ``migrate_from`` (the old versioned Parquet folder ``history_panel.parquet``), the first load or
save finds no DuckDB file but Parquet versions there, and imports the newest version first
(``migrate_versioned_parquet``, logged); the Parquet folder is only read, never changed or deleted. With
``missing_ok: true`` a load of a store that does not exist (and has nothing to migrate) returns an empty frame
instead of failing: the read side of Day-N ingestion, where "no history yet" means "seed with Day 0".

``compact()`` rewrites the store into a fresh file (temporary file + ``os.replace``), which gives back the space
of rolled-back appends; a kill during it leaves the old file in place.

Server database: DuckDB is the embedded default; the same tables work on a server database through
kedro-datasets' ``ibis.TableDataset`` (documented in docs/operations.md, not wired here).
"""
from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from ts_kedro.datasets.history_index import HistoryIndex, make_bounds

logger = logging.getLogger(__name__)

KEY = ("series_id", "timestamp")
_BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id BIGINT PRIMARY KEY, parent_batch_id BIGINT, source VARCHAR, sha256 VARCHAR NOT NULL,
    arrived_at TIMESTAMP NOT NULL, n_rows BIGINT NOT NULL, n_series BIGINT NOT NULL,
    first_timestamp TIMESTAMP, last_timestamp TIMESTAMP)
"""
_FILES_DDL = """
CREATE TABLE IF NOT EXISTS batch_files (
    sha256 VARCHAR PRIMARY KEY, file VARCHAR, batch_id BIGINT, recorded_at TIMESTAMP NOT NULL)
"""


def rows_sha256(rows: pd.DataFrame) -> str:
    """sha256 of the rows as canonical CSV (sorted by series and time, columns in name order)."""
    canonical = rows.sort_values(list(KEY), kind="stable")[sorted(rows.columns)]
    return hashlib.sha256(canonical.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f").encode()).hexdigest()


class DuckDBHistoryDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """The append-only history store (see the module docstring).

    Args:
        filepath: the DuckDB database file (created with its folder on the first save).
        as_of_batch: ``load`` returns the history as it was after this batch (None: all batches).
        migrate_from: versioned Parquet history folder imported (newest version) when the DuckDB file is missing.
        missing_ok: ``load`` returns an empty frame when there is no store (and nothing to migrate) yet.
        series_range: ``[first, last]`` series ids (inclusive, string order; null: open end): ``load`` returns
            only those series.
        load_as: ``frame`` (the history, sorted) or ``index`` (a ``HistoryIndex`` over the store; see above).
        metadata: free (kedro-viz layer and the like).
    """

    def __init__(self, filepath: str, as_of_batch: int | None = None, migrate_from: str | None = None,
                 missing_ok: bool = False, series_range: list[str | None] | None = None,
                 load_as: str = "frame", metadata: dict[str, Any] | None = None):
        self.filepath = Path(filepath)
        self.migrate_from = Path(migrate_from) if migrate_from else None
        self.missing_ok = bool(missing_ok)
        if as_of_batch is not None and (isinstance(as_of_batch, bool) or int(as_of_batch) < 1):
            raise DatasetError(f"{type(self).__name__}: as_of_batch must be null or a batch id >= 1, got "
                               f"{as_of_batch!r}")
        self.as_of_batch = None if as_of_batch is None else int(as_of_batch)
        if series_range is not None and (isinstance(series_range, str) or len(series_range) != 2):
            raise DatasetError(f"{type(self).__name__}: series_range must be [first, last] (either may be null), "
                               f"got {series_range!r}")
        self.series_range = None if series_range is None else [None if v is None else str(v) for v in series_range]
        if load_as not in ("frame", "index"):
            raise DatasetError(f"{type(self).__name__}: load_as must be 'frame' or 'index', got {load_as!r}")
        self.load_as = load_as
        self.metadata = metadata

    # -- Kedro interface ----------------------------------------------------------------------------------------
    def load(self) -> pd.DataFrame | HistoryIndex:
        self._migrate_if_needed()
        if not self.filepath.exists() and self.missing_ok:
            logger.info("history store %s does not exist yet: an empty history is loaded", self.filepath)
            return pd.DataFrame() if self.load_as == "frame" else HistoryIndex.from_frame(pd.DataFrame())
        if not self.filepath.exists():
            raise DatasetError(f"history store {self.filepath} does not exist yet: the first save creates it "
                               "(Day-N ingestion, or migrate_versioned_parquet for an existing Parquet history)")
        if self.load_as == "index":
            return self.index()
        with self._connect(read_only=True) as connection:
            columns = self._columns(connection)
            where, parameters = self._where()
            frame = connection.execute(
                f"SELECT {', '.join(_quoted(c) for c in columns)} FROM observations {where} "
                "ORDER BY series_id, timestamp", parameters).df()
        return frame

    def series_rows(self) -> pd.DataFrame:
        """Per series (index: id, string order): stored ``rows``, and the ``first`` and ``last`` timestamps with a
        value, as of ``as_of_batch``, within ``series_range``."""
        with self._connect(read_only=True) as connection:
            self._columns(connection)
            where, parameters = self._where()
            counts = connection.execute(
                "SELECT CAST(series_id AS VARCHAR) AS series_id, count(*) AS rows, "
                "min(timestamp) FILTER (WHERE value IS NOT NULL AND NOT isnan(value)) AS first, "
                "max(timestamp) FILTER (WHERE value IS NOT NULL AND NOT isnan(value)) AS last "
                f"FROM observations {where} GROUP BY 1 ORDER BY 1", parameters).df()
        return counts.set_index("series_id")

    def index(self) -> HistoryIndex:
        """A ``HistoryIndex`` of the stored history (as of ``as_of_batch``, within ``series_range``): bounds and
        row count now, stored rows at given keys on demand (each a query of its own)."""
        with self._connect(read_only=True) as connection:
            columns = self._columns(connection)
            where, parameters = self._where()
            empty = connection.execute(
                f"SELECT {', '.join(_quoted(c) for c in columns)} FROM observations LIMIT 0").df()
            bounds = connection.execute(
                "SELECT CAST(series_id AS VARCHAR) AS series_id, min(timestamp) AS start, max(timestamp) AS \"end\", "
                f"count(*) AS n FROM observations {where} GROUP BY 1", parameters).df().set_index("series_id")
        n_rows = int(bounds["n"].sum())
        return HistoryIndex(columns, empty.dtypes, n_rows, make_bounds(bounds["start"], bounds["end"]),
                            self._rows_at, attrs={"source_file": f"history_panel (history store {self.filepath})"})

    def _rows_at(self, keys: pd.DataFrame) -> pd.DataFrame:
        """The stored rows (as of ``as_of_batch``, within ``series_range``) at the keys' series and timestamps."""
        with self._connect(read_only=True) as connection:
            columns = self._columns(connection)
            where, parameters = self._where()
            connection.register("wanted_keys", keys[list(KEY)].reset_index(drop=True))
            inner = f"SELECT * FROM observations {where}"
            return connection.execute(
                f"SELECT {', '.join('o.' + _quoted(c) for c in columns)} FROM ({inner}) o JOIN wanted_keys k "
                "ON CAST(o.series_id AS VARCHAR) = CAST(k.series_id AS VARCHAR) AND o.timestamp = k.timestamp "
                "ORDER BY o.series_id, o.timestamp", parameters).df()

    def _where(self) -> tuple[str, list[Any]]:
        conditions, parameters = [], []
        if self.as_of_batch is not None:
            conditions.append("batch_id <= ?")
            parameters.append(self.as_of_batch)
        if self.series_range is not None:
            first, last = self.series_range
            if first is not None:
                conditions.append("CAST(series_id AS VARCHAR) >= ?")
                parameters.append(first)
            if last is not None:
                conditions.append("CAST(series_id AS VARCHAR) <= ?")
                parameters.append(last)
        return ("WHERE " + " AND ".join(conditions) if conditions else ""), parameters

    def save(self, data: pd.DataFrame) -> None:
        self._migrate_if_needed()
        attrs = data.attrs if isinstance(data, pd.DataFrame) else {}
        self.append(data, source=attrs.get("source"), files=attrs.get("files"))

    def _exists(self) -> bool:
        return self.filepath.exists() or bool(self._parquet_versions())

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self.filepath), "as_of_batch": self.as_of_batch,
                "migrate_from": None if self.migrate_from is None else str(self.migrate_from),
                "missing_ok": self.missing_ok, "series_range": self.series_range, "load_as": self.load_as}

    def _parquet_versions(self) -> list[Path]:
        root = self.migrate_from
        return sorted(p for p in root.iterdir() if p.is_dir()) if root is not None and root.is_dir() else []

    def _migrate_if_needed(self) -> None:
        """Import the old versioned Parquet history once, when there is no DuckDB file yet (see module docstring)."""
        if self.filepath.exists() or not self._parquet_versions():
            return
        versions = self._parquet_versions()
        logger.warning("history store %s does not exist but %d versioned Parquet history version(s) do under %s: "
                       "migrating the newest, %s (the Parquet folder is left as it is)", self.filepath,
                       len(versions), self.migrate_from, versions[-1].name)
        writer = DuckDBHistoryDataset(str(self.filepath))
        batch_id = migrate_versioned_parquet(self.migrate_from, writer)
        logger.warning("history store %s: migration done (batch %s, %d rows)", self.filepath, batch_id,
                       int(writer.batches()["n_rows"].sum()))

    # -- the store ------------------------------------------------------------------------------------------------
    def append(self, frame: pd.DataFrame, source: str | None = None, arrived_at: datetime | None = None,
               files: list[dict[str, str]] | None = None) -> int | None:
        """Append the rows of ``frame`` not stored yet as one batch; return its id (None: nothing new).

        ``files`` (``[{"file": name, "sha256": hex}]``): the source files whose rows are all in ``frame``; each one
        not recorded yet is recorded in ``batch_files`` against this batch (or the newest, when nothing is new).
        """
        files = _checked_files(files, self.filepath)
        if not isinstance(frame, pd.DataFrame):
            raise DatasetError(f"history store {self.filepath}: save expects a DataFrame, got {type(frame).__name__}")
        missing = [c for c in KEY if c not in frame.columns]
        if missing:
            raise DatasetError(f"history store {self.filepath}: the saved frame lacks column(s) {missing}")
        if frame.duplicated(list(KEY)).any():
            first = frame[frame.duplicated(list(KEY))].iloc[0]
            raise DatasetError(f"history store {self.filepath}: the saved frame holds series {first['series_id']!r} "
                               f"at {first['timestamp']} more than once; deduplicate before saving")
        frame = frame.reset_index(drop=True)
        self.filepath.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as connection:
            connection.register("incoming", frame)
            _run(connection, _BATCHES_DDL)
            _run(connection, _FILES_DDL)
            if not _has_table(connection, "observations"):
                _run(connection, "CREATE TABLE observations AS SELECT CAST(NULL AS BIGINT) AS batch_id, * "
                                 "FROM incoming LIMIT 0")
            columns = self._columns(connection)
            if sorted(columns) != sorted(frame.columns):
                raise DatasetError(
                    f"history store {self.filepath}: the saved frame has columns {sorted(frame.columns)}, the store "
                    f"{sorted(columns)}; the history's columns are fixed at its first batch")
            others = [c for c in columns if c not in KEY]
            select = ", ".join(f"i.{_quoted(c)}" for c in columns)
            join = " AND ".join(f"i.{_quoted(c)} = o.{_quoted(c)}" for c in KEY)
            if others:
                differs = " OR ".join(f"i.{_quoted(c)} IS DISTINCT FROM o.{_quoted(c)}" for c in others)
                conflict = _one(connection, f"SELECT i.series_id, i.timestamp FROM incoming i JOIN observations o "
                                            f"ON {join} WHERE {differs} LIMIT 1")
                if conflict:
                    raise DatasetError(
                        f"history store {self.filepath}: series {conflict[0]!r} at {conflict[1]} is stored with "
                        "another value; the history is append-only (a revised value must go through ingestion's "
                        "quarantine and a retrain, not overwrite the record)")
            new = connection.execute(
                f"SELECT {select} FROM incoming i ANTI JOIN observations o ON {join}").df()
            arrived = (arrived_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
            if new.empty:
                recorded = _record_files(connection, files, _one(connection, "SELECT max(batch_id) FROM batches")[0],
                                         arrived)
                logger.info("history store %s: nothing new to append (%d rows already stored)%s", self.filepath,
                            len(frame), f"; {recorded} file(s) recorded" if recorded else "")
                return None
            connection.begin()
            try:
                parent = _one(connection, "SELECT max(batch_id) FROM batches")[0]
                batch_id = (parent or 0) + 1
                connection.register("new_rows", new)
                _run(connection,
                     f"INSERT INTO observations (batch_id, {', '.join(_quoted(c) for c in columns)}) "
                     f"SELECT {batch_id}, {', '.join(_quoted(c) for c in columns)} FROM new_rows")
                digest = rows_sha256(new)
                _run(connection,
                     "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, parent, source, digest, arrived, len(new), int(new["series_id"].nunique()),
                     new["timestamp"].min(), new["timestamp"].max()])
                _record_files(connection, files, batch_id, arrived)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
        logger.info("history store %s: batch %d appended (%d rows, %d series, sha256 %s...)", self.filepath, batch_id,
                    len(new), new["series_id"].nunique(), digest[:12])
        return batch_id

    def batches(self) -> pd.DataFrame:
        """The batches table (lineage: ``parent_batch_id``), oldest first."""
        with self._connect(read_only=True) as connection:
            return connection.execute("SELECT * FROM batches ORDER BY batch_id").df()

    def recorded_files(self) -> pd.DataFrame:
        """The ``batch_files`` table (source files whose rows are all stored), oldest first; empty if none."""
        if not self.filepath.exists():
            return pd.DataFrame(columns=["sha256", "file", "batch_id", "recorded_at"])
        with self._connect(read_only=True) as connection:
            if not _has_table(connection, "batch_files"):
                return pd.DataFrame(columns=["sha256", "file", "batch_id", "recorded_at"])
            return connection.execute("SELECT * FROM batch_files ORDER BY recorded_at, file").df()

    def compact(self) -> dict[str, int]:
        """Rewrite the store into a fresh file and swap it in atomically; return the sizes before and after.

        DuckDB reuses but never shrinks the blocks of rolled-back or superseded data; copying every table into a new
        file (``COPY FROM DATABASE``) writes only what is live. The copy goes to ``<file>.compact.tmp``, is fsynced,
        checked (same tables, same row counts), and replaces the store with ``os.replace``: a kill before that leaves
        the old store untouched (a stale temporary file is removed by the next compaction).
        """
        if not self.filepath.exists():
            raise DatasetError(f"history store {self.filepath} does not exist: nothing to compact")
        temporary = self.filepath.with_name(self.filepath.name + ".compact.tmp")
        for stale in (temporary, Path(f"{temporary}.wal")):
            stale.unlink(missing_ok=True)
        with self._connect(read_only=False) as connection:
            _run(connection, "CHECKPOINT")  # fold the write-ahead log in, so the size below is the store's
        before = self.filepath.stat().st_size
        with self._connect(read_only=False) as connection:
            source = _one(connection, "SELECT current_database()")[0]
            _run(connection, f"ATTACH {_literal(str(temporary))} AS compacted")
            try:
                _run(connection, f"COPY FROM DATABASE {_quoted(source)} TO compacted")
                counts = {}
                for table in ("observations", "batches", "batch_files"):
                    if _has_table(connection, table):
                        counts[table] = (_one(connection, f"SELECT count(*) FROM {_quoted(source)}.{table}")[0],
                                         _one(connection, f"SELECT count(*) FROM compacted.{table}")[0])
            finally:
                _run(connection, "DETACH compacted")
        differs = {table: pair for table, pair in counts.items() if pair[0] != pair[1]}
        if differs:
            temporary.unlink(missing_ok=True)
            raise DatasetError(f"history store {self.filepath}: the compacted copy differs ({differs}); kept the store")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.filepath)
        _fsync_dir(self.filepath.parent)
        after = self.filepath.stat().st_size
        logger.info("history store %s compacted: %d -> %d bytes", self.filepath, before, after)
        return {"bytes_before": before, "bytes_after": after}

    # -- helpers ------------------------------------------------------------------------------------------------
    def _connect(self, read_only: bool):
        import duckdb

        if read_only and not self.filepath.exists():
            raise DatasetError(f"history store {self.filepath} does not exist yet")
        return duckdb.connect(str(self.filepath), read_only=read_only)

    def _columns(self, connection) -> list[str]:
        if not _has_table(connection, "observations"):
            raise DatasetError(f"history store {self.filepath} holds no observations table: it was not created by "
                               f"{type(self).__name__}")
        names = [row[0] for row in connection.execute("DESCRIBE observations").fetchall()]
        return [name for name in names if name != "batch_id"]


def migrate_versioned_parquet(parquet_root: str | Path, store: DuckDBHistoryDataset) -> int | None:
    """Import today's versioned Parquet history (``history_panel.parquet/<version>/``) into ``store``.

    Only the newest version is read (every version is a full copy, the newest holds all the others); it becomes one
    batch whose source names that version. Running it again appends nothing.
    """
    root = Path(parquet_root)
    versions = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise DatasetError(f"no versions under {root}: expected history_panel.parquet/<version>/history_panel.parquet")
    newest = versions[-1]
    frame = pd.read_parquet(newest / root.name if (newest / root.name).exists() else newest)
    return store.append(frame, source=f"migration:{root.name}/{newest.name}")


def _checked_files(files, filepath: Path) -> list[dict[str, str]]:
    checked = []
    for entry in files or []:
        digest = str(entry.get("sha256", "")) if isinstance(entry, dict) else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DatasetError(f"history store {filepath}: a file record needs a sha256 hex digest, got {entry!r}")
        checked.append({"file": str(entry.get("file")), "sha256": digest})
    return checked


def _record_files(connection, files: list[dict[str, str]], batch_id: int | None, recorded_at: datetime) -> int:
    """Insert the file records not present yet (by sha256); return how many were new."""
    recorded = 0
    for entry in files:
        if _one(connection, "SELECT count(*) FROM batch_files WHERE sha256 = ?", [entry["sha256"]])[0]:
            continue
        _run(connection, "INSERT INTO batch_files VALUES (?, ?, ?, ?)",
             [entry["sha256"], entry["file"], batch_id, recorded_at])
        recorded += 1
    return recorded


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run(connection, sql: str, parameters: list | None = None) -> None:
    """Execute a statement and consume its result (DuckDB refuses further work on an unfinished result)."""
    connection.execute(sql, parameters).fetchall() if parameters is not None else connection.execute(sql).fetchall()


def _one(connection, sql: str, parameters: list | None = None):
    """The first row of a query (None: no row), with the result consumed."""
    rows = connection.execute(sql, parameters).fetchall() if parameters is not None else connection.execute(sql).fetchall()
    return rows[0] if rows else None


def _has_table(connection, name: str) -> bool:
    return bool(_one(connection, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])[0])


def _quoted(column: str) -> str:
    return '"' + str(column).replace('"', '""') + '"'
