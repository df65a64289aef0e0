"""What Day-N ingestion needs to know about the history, without holding the history.

Checking a batch against the history needs, per series, the first and last stored timestamp (``bounds``), the
stored rows at the batch's own (series_id, timestamp) keys (``rows_at``: exact duplicates and conflicting
revisions), the history's columns and dtypes, and its row count. ``HistoryIndex`` gives exactly that, either
over a DataFrame (``from_frame``: the Day-0 seed, node tests) or over the append-only store
(``DuckDBHistoryDataset(load_as="index")``, whose bounds are one GROUP BY and whose ``rows_at`` is a join of the
batch's keys with the stored observations). Memory then follows the number of series and the batch, not the
history: on a history of 9.8 million rows the whole frame cost ingestion 4.3 GB (docs/benchmarks.md).

``extended(rows)`` is the history with a just-accepted batch added (the next batch of the same run is checked
against it), kept as an overlay: the stored part is never copied.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

SERIES_ID, TIMESTAMP = "series_id", "timestamp"
KEYS = [SERIES_ID, TIMESTAMP]


class HistoryIndex:
    """Bounds, keyed rows, columns and size of a history (see the module docstring); immutable.

    Args:
        columns: the history's columns, in order.
        dtypes: their dtypes (a Series indexed by column).
        n_rows: stored rows.
        bounds: index ``series_id`` (str, sorted); columns ``start`` and ``end``: the first and last stored
            timestamp of the series (rows with a missing value included, as in the history frame).
        lookup: ``lookup(keys)`` -> the stored rows (all columns) at those ``series_id, timestamp`` keys.
        added: rows added by ``extended`` (not in ``lookup``).
    """

    def __init__(self, columns: list[str], dtypes: pd.Series, n_rows: int, bounds: pd.DataFrame,
                 lookup: Callable[[pd.DataFrame], pd.DataFrame], added: tuple[pd.DataFrame, ...] = (),
                 attrs: dict | None = None):
        # timestamps in nanoseconds whatever the source (DuckDB hands back microseconds), as batches are read
        dtypes = pd.Series({c: _ns(pd.Series(dtype=dtypes[c])).dtype for c in columns}, dtype=object)
        self.columns, self.dtypes, self.n_rows = list(columns), dtypes, int(n_rows)
        self.bounds, self._lookup, self._added = bounds, lookup, tuple(added)
        self.attrs = dict(attrs or {})

    # a node output of Kedro's MemoryDataset is deep-copied unless it says otherwise: this object never changes
    def __deepcopy__(self, memo) -> "HistoryIndex":
        return self

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return f"HistoryIndex({self.n_rows} rows, {len(self.bounds)} series, columns {self.columns})"

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "HistoryIndex":
        """The index of a history held as a frame (the Day-0 seed; tests)."""
        if len(frame) == 0 or SERIES_ID not in frame:
            bounds = pd.DataFrame({"start": pd.Series(dtype="datetime64[ns]"),
                                   "end": pd.Series(dtype="datetime64[ns]")}, index=pd.Index([], name=SERIES_ID))
        else:
            grouped = frame.groupby(frame[SERIES_ID].astype(str), sort=True)[TIMESTAMP]
            bounds = make_bounds(grouped.min(), grouped.max())
        return cls(list(frame.columns), frame.dtypes, len(frame), bounds, _FrameLookup(frame), attrs=frame.attrs)

    def empty_frame(self) -> pd.DataFrame:
        """A frame with the history's columns and dtypes and no row."""
        return pd.DataFrame({c: pd.Series(dtype=self.dtypes[c]) for c in self.columns})

    def rows_at(self, keys: pd.DataFrame) -> pd.DataFrame:
        """The history's rows (all columns, the history's dtypes) at the ``series_id, timestamp`` of ``keys``."""
        keys = keys[KEYS].drop_duplicates()
        parts = [self._lookup(keys), *(added.merge(keys, on=KEYS, how="inner") for added in self._added)]
        parts = [part[self.columns] for part in parts if len(part)]
        if not parts:
            return self.empty_frame()
        rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        return rows.astype(self.dtypes.to_dict())

    def extended(self, rows: pd.DataFrame) -> "HistoryIndex":
        """This history with ``rows`` (new keys only: ingestion's accepted batch) added."""
        if len(rows) == 0:
            return self
        grouped = rows.groupby(rows[SERIES_ID].astype(str), sort=True)[TIMESTAMP]
        new = make_bounds(grouped.min(), grouped.max())
        both = self.bounds.join(new, how="outer", rsuffix="_new")
        bounds = make_bounds(both[["start", "start_new"]].min(axis=1), both[["end", "end_new"]].max(axis=1))
        return HistoryIndex(self.columns, self.dtypes, self.n_rows + len(rows), bounds, self._lookup,
                            (*self._added, rows[self.columns].copy()), self.attrs)

    def series_end(self) -> dict[str, str]:
        """Last stored timestamp per series, ISO text, in series order (what the ingestion report records)."""
        return {str(series_id): pd.Timestamp(end).isoformat() for series_id, end in self.bounds["end"].items()}


class _FrameLookup:
    """``rows_at`` of a history frame (a class, not a closure, so that the index pickles like the frame)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def __call__(self, keys: pd.DataFrame) -> pd.DataFrame:
        return self.frame.merge(keys[KEYS].drop_duplicates(), on=KEYS, how="inner")


def make_bounds(start: pd.Series, end: pd.Series) -> pd.DataFrame:
    """The ``bounds`` frame: index ``series_id`` (str, sorted), ``start`` / ``end`` in nanoseconds (DuckDB hands
    back microseconds; one unit keeps the comparisons with a batch's timestamps exact and cheap)."""
    bounds = pd.DataFrame({"start": _ns(start), "end": _ns(end)})
    bounds.index = bounds.index.astype(str)
    bounds.index.name = SERIES_ID
    return bounds.sort_index()


def _ns(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_dtype(values.dtype) and values.dtype != "datetime64[ns]":
        return values.astype("datetime64[ns]")
    return values


def as_history_index(history: "HistoryIndex | pd.DataFrame") -> HistoryIndex:
    """``history`` as a ``HistoryIndex`` (a frame is indexed; an index is returned as it is)."""
    return history if isinstance(history, HistoryIndex) else HistoryIndex.from_frame(history)
