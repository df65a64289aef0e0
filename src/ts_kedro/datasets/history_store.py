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

``save(frame)`` takes the full history (a drop-in for ``history_panel``: the ingestion node saves what it always
saved) or only the new rows: the rows whose (series_id, timestamp) are not stored yet become one new batch, in
one transaction (a process killed during the save leaves the store as it was). Saving the same data again adds
nothing, so a retried cycle stores its batch exactly once. A stored row with a different value is refused
(``DatasetError``): the history is append-only; a revision is a data problem for ingestion's quarantine.
``load()`` returns the history (``as_of_batch``: as it was after that batch) sorted by series and time.

Server database: DuckDB is the embedded default; the same tables work on a server database through
kedro-datasets' ``ibis.TableDataset`` (documented in docs/operations.md, not wired here).
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

KEY = ("series_id", "timestamp")
_BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id BIGINT PRIMARY KEY, parent_batch_id BIGINT, source VARCHAR, sha256 VARCHAR NOT NULL,
    arrived_at TIMESTAMP NOT NULL, n_rows BIGINT NOT NULL, n_series BIGINT NOT NULL,
    first_timestamp TIMESTAMP, last_timestamp TIMESTAMP)
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
        metadata: free (kedro-viz layer and the like).
    """

    def __init__(self, filepath: str, as_of_batch: int | None = None, metadata: dict[str, Any] | None = None):
        self.filepath = Path(filepath)
        if as_of_batch is not None and (isinstance(as_of_batch, bool) or int(as_of_batch) < 1):
            raise DatasetError(f"{type(self).__name__}: as_of_batch must be null or a batch id >= 1, got "
                               f"{as_of_batch!r}")
        self.as_of_batch = None if as_of_batch is None else int(as_of_batch)
        self.metadata = metadata

    # -- Kedro interface ----------------------------------------------------------------------------------------
    def load(self) -> pd.DataFrame:
        if not self.filepath.exists():
            raise DatasetError(f"history store {self.filepath} does not exist yet: the first save creates it "
                               "(Day-N ingestion, or migrate_versioned_parquet for an existing Parquet history)")
        with self._connect(read_only=True) as connection:
            columns = self._columns(connection)
            where = "" if self.as_of_batch is None else f"WHERE batch_id <= {self.as_of_batch}"
            frame = connection.execute(
                f"SELECT {', '.join(_quoted(c) for c in columns)} FROM observations {where} "
                "ORDER BY series_id, timestamp").df()
        return frame

    def save(self, data: pd.DataFrame) -> None:
        self.append(data, source=data.attrs.get("source") if isinstance(data, pd.DataFrame) else None)

    def _exists(self) -> bool:
        return self.filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self.filepath), "as_of_batch": self.as_of_batch}

    # -- the store ------------------------------------------------------------------------------------------------
    def append(self, frame: pd.DataFrame, source: str | None = None, arrived_at: datetime | None = None) -> int | None:
        """Append the rows of ``frame`` not stored yet as one batch; return its id (None: nothing new)."""
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
            if new.empty:
                logger.info("history store %s: nothing new to append (%d rows already stored)", self.filepath,
                            len(frame))
                return None
            arrived = (arrived_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
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

    def compact(self) -> None:
        """Reclaim the space of rolled-back transactions and rewrite the file's blocks (DuckDB ``CHECKPOINT``)."""
        with self._connect(read_only=False) as connection:
            _run(connection, "FORCE CHECKPOINT")

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
