"""Chunked reading of a raw long CSV into canonical columns, with the schema checks done chunk by chunk."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.errors import EmptyDataError, ParserError
from pandas.tseries.api import guess_datetime_format

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError

logger = logging.getLogger(__name__)

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
IS_IMPUTED, IS_ANOMALY = "is_imputed", "is_anomaly"
NON_NUMERIC_POLICIES = ("fail", "coerce")
DUPLICATE_POLICIES = ("fail", "keep_first", "keep_last")
# pandas' documented default missing-value markers. They apply to timestamps and numbers only: a series
# may well be called "NA" or "null", so for the id column only an empty cell is missing.
MISSING_MARKERS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                   "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
# Data rows are numbered from 0 by pandas; line 1 of the file is the header.
_HEADER_LINES = 2


@dataclass(frozen=True)
class SourceSpec:
    """Which raw columns play which canonical role (``data_processing.source`` parameters)."""

    id_column: str | None
    timestamp_column: str
    target_column: str
    timestamp_format: str | None
    covariates: list[str] | str
    series_id_constant: str | None

    @classmethod
    def from_params(cls, source: dict[str, Any]) -> "SourceSpec":
        known = {"id_column", "timestamp_column", "target_column", "timestamp_format", "covariates",
                 "series_id_constant"}
        unknown = set(source) - known
        if unknown:
            raise DataProcessingConfigError(
                f"unknown key(s) {sorted(unknown)} in data_processing.source; known keys: {sorted(known)}"
            )
        covariates = source.get("covariates") or []
        if isinstance(covariates, str) and covariates != "all":
            covariates = [covariates]
        return cls(
            id_column=source.get("id_column"),
            timestamp_column=source.get("timestamp_column", TIMESTAMP),
            target_column=source.get("target_column", VALUE),
            timestamp_format=source.get("timestamp_format"),
            covariates=covariates if covariates == "all" else list(covariates),
            series_id_constant=source.get("series_id_constant"),
        )

    def resolve_covariates(self, header: list[str]) -> list[str]:
        """Covariate columns: the configured list, or every non-key column for ``covariates: all``."""
        keys = {self.id_column, self.timestamp_column, self.target_column}
        if self.covariates == "all":
            return [column for column in header if column not in keys]
        return list(self.covariates)


def offending_rows(rows: pd.Index, limit: int) -> str:
    """'lines 5, 9, 12 (and 40 more)' for the first ``limit`` data rows (0-based) given."""
    lines = [str(int(row) + _HEADER_LINES) for row in rows[:limit]]
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"line{'s' if len(rows) > 1 else ''} {', '.join(lines)}{more}"


def read_header(source: CSVChunkSource) -> list[str]:
    """Column names of the raw file; an empty or unreadable file is a ``SchemaError``."""
    try:
        return source.header()
    except EmptyDataError as error:
        raise SchemaError(
            f"{source.filepath} is empty (no header line): expected a CSV with a header such as "
            f"'series_id,timestamp,value'; point raw_panel at a non-empty file"
        ) from error
    except (ParserError, UnicodeDecodeError, OSError) as error:
        raise SchemaError(f"{source.filepath} cannot be read as CSV ({error}); check the file and its encoding") from error


def check_columns(filepath: str, header: list[str], spec: SourceSpec) -> list[str]:
    """Fail if a configured column is missing; return the covariate columns to carry."""
    roles = {
        "id_column": spec.id_column,
        "timestamp_column": spec.timestamp_column,
        "target_column": spec.target_column,
    }
    covariates = spec.resolve_covariates(header)
    for role, column in [*roles.items(), *(("covariates", c) for c in covariates)]:
        if column is not None and column not in header:
            hint = (" (a single-series file without an id column needs `id_column: null`)"
                    if role == "id_column" else "")
            raise SchemaError(
                f"column {column!r} missing in {filepath} (header: {header}); set "
                f"data_processing.source.{role} to one of the header's columns{hint}"
            )
    return covariates


def resolve_timestamp_format(first_values: pd.Series, configured: str | None) -> str:
    """The configured format, else the one pandas guesses from the first non-empty timestamp, else 'mixed'.

    Guessing once for the whole file (not per chunk) keeps every chunk parsed the same way.
    """
    if configured:
        return configured
    non_empty = first_values.dropna()
    guessed = guess_datetime_format(str(non_empty.iloc[0])) if not non_empty.empty else None
    if guessed is None:
        logger.warning("could not guess the timestamp format; parsing each timestamp on its own (slow). "
                       "Set data_processing.source.timestamp_format to speed this up")
        return "mixed"
    return guessed


def parse_timestamps(raw: pd.Series, fmt: str, filepath: str, column: str, limit: int) -> pd.Series:
    """Timestamps as naive datetime64[ns]; any empty or unparseable cell is a ``SchemaError``."""
    parsed = pd.to_datetime(raw, format=fmt, errors="coerce")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        # A panel grid needs one clock: compare everything in UTC, without the zone.
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.index[parsed.isna().to_numpy()]
    if len(bad):
        examples = [repr(raw.loc[row]) for row in bad[:limit]]
        raise SchemaError(
            f"column {column!r} in {filepath}: {len(bad)} timestamp(s) empty or not parseable with format "
            f"{fmt!r} at {offending_rows(bad, limit)} (values {', '.join(examples)}); fix those rows or set "
            f"data_processing.source.timestamp_format to the file's format"
        )
    return parsed.astype("datetime64[ns]")


def parse_numbers(
    raw: pd.Series, filepath: str, column: str, policy: str, limit: int
) -> tuple[pd.Series, pd.Index]:
    """Float64 values; non-numeric cells fail (policy ``fail``) or become missing (``coerce``).

    Empty cells are missing values, not faults. Returns the values and the rows that were non-numeric.
    """
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = raw.index[(numbers.isna() & raw.notna()).to_numpy()]
    if len(bad) and policy == "fail":
        examples = [repr(raw.loc[row]) for row in bad[:limit]]
        raise SchemaError(
            f"column {column!r} in {filepath}: {len(bad)} non-numeric value(s) at {offending_rows(bad, limit)} "
            f"(values {', '.join(examples)}); fix those rows or set data_processing.non_numeric_policy: coerce "
            f"to treat them as missing"
        )
    # float64 on purpose: float32 would change real values (e.g. 5.97635090929793) before any model sees them.
    return numbers.astype("float64"), bad


def _parse_chunk(chunk: pd.DataFrame, spec: SourceSpec, numeric_columns: dict[str, str], fmt: str,
                 filepath: str, non_numeric_policy: str, limit: int, non_numeric: dict) -> dict[str, Any]:
    """One chunk as compact arrays: ids (categorical), datetime64 timestamps, float64 numbers, file rows."""
    arrays: dict[str, Any] = {}
    if spec.id_column is not None:
        ids = chunk[spec.id_column]
        empty = ids.index[ids.isna().to_numpy()]
        if len(empty):
            raise SchemaError(f"column {spec.id_column!r} in {filepath}: empty series id at "
                              f"{offending_rows(empty, limit)}; fill in the id of those rows")
        arrays[SERIES_ID] = ids.array
    arrays[TIMESTAMP] = parse_timestamps(chunk[spec.timestamp_column], fmt, filepath, spec.timestamp_column,
                                         limit).to_numpy()
    for raw_column, canonical in numeric_columns.items():
        numbers, bad = parse_numbers(chunk[raw_column], filepath, raw_column, non_numeric_policy, limit)
        arrays[canonical] = numbers.to_numpy()
        if len(bad):
            found = non_numeric.setdefault(raw_column, {"count": 0, "first_lines": []})
            found["count"] += len(bad)
            room = max(limit - len(found["first_lines"]), 0)
            found["first_lines"] += [int(r) + _HEADER_LINES for r in bad[:room]]
    # int32 row numbers where they fit: a quarter of what the kept columns would otherwise weigh.
    arrays["source_row"] = chunk.index.to_numpy(dtype=np.int32 if len(chunk) == 0 or chunk.index[-1] < 2**31 else np.int64)
    return arrays


def read_canonical_chunks(
    source: CSVChunkSource, spec: SourceSpec, chunk_size: int, non_numeric_policy: str, limit: int
) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Read the file chunk by chunk into canonical column arrays.

    Returns ``columns`` (``series_id`` as integer codes into ``categories``, which are sorted, plus
    ``timestamp``, ``value``, covariates and ``source_row``), ``categories`` and what was found. Only one
    chunk of text is alive at a time; what is kept is 8 bytes per cell.
    """
    header = read_header(source)
    covariates = check_columns(source.filepath, header, spec)
    numeric_columns = {spec.target_column: VALUE, **{c: c for c in covariates}}
    usecols = [c for c in (spec.id_column, spec.timestamp_column, *numeric_columns) if c is not None]
    # Ids as categories and everything else as text: numbers are parsed by us so non-numeric cells can be
    # reported with their rows instead of turning the whole column into objects.
    dtype: dict[str, Any] = {c: str for c in usecols}
    if spec.id_column is not None:
        dtype[spec.id_column] = "category"
    na_values = {column: MISSING_MARKERS for column in usecols}
    if spec.id_column is not None:
        na_values[spec.id_column] = [""]
    constant_id = spec.series_id_constant or Path(source.filepath).stem

    pieces, non_numeric, fmt = [], {}, None
    try:
        for chunk in source.chunks(chunk_size, usecols=usecols, dtype=dtype, keep_default_na=False,
                                   na_values=na_values):
            fmt = fmt or resolve_timestamp_format(chunk[spec.timestamp_column], spec.timestamp_format)
            pieces.append(_parse_chunk(chunk, spec, numeric_columns, fmt, source.filepath, non_numeric_policy,
                                       limit, non_numeric))
    except ParserError as error:
        raise SchemaError(f"{source.filepath} cannot be parsed as CSV ({error}); fix the malformed line") from error
    rows_read = sum(len(piece["source_row"]) for piece in pieces)
    if rows_read == 0:
        raise SchemaError(f"{source.filepath} has a header but no data rows; point raw_panel at a file with data")

    if spec.id_column is None:
        categories = [constant_id]
        for piece in pieces:
            piece[SERIES_ID] = np.zeros(len(piece["source_row"]), dtype=np.int32)
    else:
        categories = sorted(set().union(*(piece[SERIES_ID].categories for piece in pieces)))
        for piece in pieces:
            piece[SERIES_ID] = pd.Categorical(piece[SERIES_ID], categories=categories).codes.astype(np.int32)
    columns = {}
    for name in list(pieces[0]):
        # Column by column, dropping each chunk's piece as it is copied: peak is the result plus one column.
        columns[name] = np.concatenate([piece.pop(name) for piece in pieces])
    found = {
        "file": source.filepath,
        "rows_read": int(rows_read),
        "timestamp_format": fmt,
        "columns": {"series_id": spec.id_column or f"<constant {constant_id!r}>",
                    "timestamp": spec.timestamp_column, "value": spec.target_column, "covariates": covariates},
        "non_numeric": non_numeric,
    }
    return columns, categories, found


def _take(columns: dict[str, np.ndarray], index: np.ndarray) -> None:
    """Reorder or filter every column in place, one at a time (no second copy of the whole panel)."""
    for name in columns:
        columns[name] = columns[name][index]


def sort_and_check_order(columns: dict[str, np.ndarray], filepath: str, limit: int) -> dict[str, Any]:
    """Sort the columns by series and time in place; report (never fail on) rows that went back in time."""
    # lexsort is stable: rows sharing a key stay in file order, which the duplicate policy relies on.
    order = np.lexsort((columns[TIMESTAMP], columns[SERIES_ID]))
    if (order[1:] < order[:-1]).any():
        _take(columns, order)
    del order
    # In time order, a row whose file position is below its predecessor's (same series) was written out of order.
    file_rows, codes = columns["source_row"], columns[SERIES_ID]
    backwards = file_rows[1:] < file_rows[:-1]
    backwards &= codes[1:] == codes[:-1]
    rows = np.sort(file_rows[:-1][backwards])
    if len(rows):
        logger.warning("%s: %d row(s) out of time order within their series (first at %s); sorted them",
                       filepath, len(rows), offending_rows(pd.Index(rows), limit))
    return {"rows_out_of_order": int(len(rows)),
            "first_out_of_order_lines": [int(r) + _HEADER_LINES for r in rows[:limit]],
            "sorted_by_pipeline": bool(len(rows))}


def handle_duplicates(
    columns: dict[str, np.ndarray], categories: list[str], filepath: str, policy: str, limit: int
) -> dict[str, Any]:
    """Fail on repeated (series_id, timestamp) keys, or keep the first/last occurrence in file order (in place)."""
    codes, timestamps = columns[SERIES_ID], columns[TIMESTAMP]
    same_as_next = (codes[1:] == codes[:-1]) & (timestamps[1:] == timestamps[:-1])
    if not same_as_next.any():
        return {"duplicate_rows": 0, "duplicates_dropped": 0}
    clashing = np.r_[same_as_next, False] | np.r_[False, same_as_next]
    rows = np.sort(columns["source_row"][clashing])
    first = int(np.flatnonzero(clashing)[np.argmin(columns["source_row"][clashing])])
    key = (categories[codes[first]], pd.Timestamp(timestamps[first]))
    if policy == "fail":
        raise SchemaError(
            f"columns (series_id, timestamp) in {filepath}: {len(rows)} rows share a key, first "
            f"({key[0]!r}, {key[1]}) at {offending_rows(pd.Index(rows), limit)}; remove the repeated rows or set "
            f"data_processing.duplicate_policy: keep_first or keep_last"
        )
    # Rows of one key are in file order (stable sort): drop all but the first or all but the last.
    drop = np.r_[False, same_as_next] if policy == "keep_first" else np.r_[same_as_next, False]
    _take(columns, ~drop)
    logger.warning("%s: %d rows share a (series_id, timestamp) key; kept the %s of each (%d dropped)",
                   filepath, len(rows), policy.removeprefix("keep_"), int(drop.sum()))
    return {"duplicate_rows": int(len(rows)), "duplicates_dropped": int(drop.sum()),
            "first_duplicate_lines": [int(r) + _HEADER_LINES for r in rows[:limit]]}


def to_frame(columns: dict[str, np.ndarray], categories: list[str]) -> pd.DataFrame:
    """The canonical validated frame; ids become strings that share one object per series (8 bytes a row)."""
    # dtype=object given explicitly: letting pandas infer it scans the strings with temporaries 5x the column.
    ids = pd.Series(np.asarray(categories, dtype=object)[columns.pop(SERIES_ID)], dtype=object, copy=False)
    frame = pd.DataFrame({SERIES_ID: ids}, copy=False)
    columns.pop("source_row")
    # Column by column and popped from the dict, so no second copy of the panel is ever alive.
    for name in list(columns):
        frame[name] = columns.pop(name)
    return frame


def check_policy(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if allowed, else a config error naming the parameter."""
    if value not in allowed:
        raise DataProcessingConfigError(f"data_processing.{name} is {value!r}; choose one of {list(allowed)}")
    return value
