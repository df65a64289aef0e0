"""Chunked reading of a raw long CSV into canonical columns, with the schema checks done chunk by chunk."""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterable
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
LAYOUTS = ("long", "wide")  # long: one row per (series, timestamp); wide: one column per series
COVARIATE_KINDS = ("known_in_advance", "observed")
DUPLICATE_POLICIES = ("fail", "keep_first", "keep_last")
# pandas' documented default missing-value markers. They apply to timestamps and numbers only: a series
# may well be called "NA" or "null", so for the id column only an empty cell is missing.
# "NAN" and "-NAN" are added: refusing the upper-case spelling of a marker whose other spellings are missing
# values made no sense.
MISSING_MARKERS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                   "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "NAN", "-NAN"]
# Data rows are numbered from 0 by pandas; line 1 of the file is the header. Only a fallback: real file lines
# come from the source (blank lines and quoted newlines shift them).
_HEADER_LINES = 2
# What an error or log message quotes of one id, cell or name: a 1,000,000-character id must not reach a log
# highlighter (it hung rich for minutes), nor a 5 MB cell a 5 MB exception message.
QUOTE_CHARS = 60
# Fields past the header's last column are read into these extra columns, so a surplus field is seen, not
# dropped. A missing and an empty field read the same (""), so an empty surplus field (a trailing separator)
# is allowed; three columns make a lost field need three empty surplus fields in front of it.
_SURPLUS = tuple(f"__ts_kedro_surplus_field_{i}__" for i in (1, 2, 3))
# Distinct timestamps the format is guessed from (the first ones of the file), and how many of them are guessed on.
_FORMAT_SAMPLE, _FORMAT_GUESSES = 5_000, 200
_TWO_DIGIT_DATE = re.compile(r"^\s*(\d{1,2})([-/.])(\d{1,2})\2(\d{1,2})(?!\d)")


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters with the full length said."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class FileLines:
    """Maps data-row numbers (0-based, as pandas numbers them) to the file lines they start on.

    Built from the source when it can re-read the file (``CSVChunkSource.line_numbers``), else row + 2.
    """

    def __init__(self, source: Any) -> None:
        self.filepath = str(getattr(source, "filepath", source))
        self._lookup = getattr(source, "line_numbers", None)

    def __call__(self, rows: Iterable[int]) -> list[int]:
        rows = [int(row) for row in rows]
        mapping = self._lookup(rows) if self._lookup is not None and rows else {}
        return [int(mapping.get(row, row + _HEADER_LINES)) for row in rows]


def _lines_of(source_or_path: Any) -> FileLines:
    return source_or_path if isinstance(source_or_path, FileLines) else FileLines(source_or_path)


STEPS = "steps"  # timestamp_format of files whose time column holds integer time steps (1, 2, 3, ...)
#: timestamp_format of Unix epoch times (seconds or milliseconds since 1970-01-01 UTC), as logs and IoT exports write
EPOCH_UNITS = {"unix_s": "s", "unix_ms": "ms"}
#: timestamp_format of ISO week labels ('2020-W01'): each week is dated by its Monday (panel.freq W-MON)
ISO_WEEK = "iso_week"
#: timestamp_format of spreadsheet serial dates: days since 1899-12-30 (Excel, LibreOffice), a fraction for the time
EXCEL_DAYS = "excel_days"
_EXCEL_ORIGIN = pd.Timestamp("1899-12-30")
#: formats read by ts_kedro itself, not strftime: a future_covariates file's time column is read the same way
OWN_FORMATS = (*EPOCH_UNITS, ISO_WEEK, EXCEL_DAYS)
_ISO_WEEK_LABEL = re.compile(r"^\s*\d{4}-?W\d{2}\s*$")
# whole numbers in these ranges look like epoch times (1973-2286 in seconds, 1973-2286 in milliseconds)
_EPOCH_RANGES = {"unix_s": (1e8, 1e10), "unix_ms": (1e11, 1e13)}
DEFAULT_STEP_ORIGIN = "2000-01-01"


@dataclass(frozen=True)
class StepClock:
    """Integer time steps read as dates: step ``k`` is the ``k``-th stamp of ``pd.date_range(origin, freq=freq)``
    (step 0 the first). Panels such as M3's "other" series or a simulation's output number their periods instead
    of dating them; every later stage (grid, frequency profile, backtest, Day N) works on dates, so the steps are
    given dates once, at reading, and the same origin and frequency date every later batch the same way."""

    origin: pd.Timestamp
    freq: str

    @classmethod
    def from_params(cls, origin: str, freq: str) -> "StepClock":
        try:
            stamp = pd.Timestamp(origin)
            first = pd.date_range(stamp, periods=1, freq=freq)[0]
        except (ValueError, TypeError) as error:
            raise DataProcessingConfigError(
                f"data_processing.source.step_origin {origin!r} with panel.freq {freq!r} gives no date range "
                f"({error}); set step_origin to a date such as '{DEFAULT_STEP_ORIGIN}'") from error
        return cls(origin=first, freq=freq)

    def dates(self, steps: np.ndarray) -> np.ndarray:
        """datetime64[ns] of the integer ``steps`` (all >= 0)."""
        steps = np.asarray(steps, dtype=np.int64)
        if not len(steps):
            return np.array([], dtype="datetime64[ns]")
        try:
            grid = pd.date_range(self.origin, periods=int(steps.max()) + 1, freq=self.freq).to_numpy()
        except (pd.errors.OutOfBoundsDatetime, OverflowError) as error:
            raise DataProcessingConfigError(
                f"step {int(steps.max())} at panel.freq {self.freq!r} from data_processing.source.step_origin "
                f"{self.origin.date()} passes {pd.Timestamp.max.date()}, the last date the panel's clock holds; set "
                f"step_origin earlier (e.g. '1700-01-01' for a few centuries of yearly steps)") from error
        return grid[steps]


def _integer_steps(values: pd.Series) -> tuple[pd.Series, pd.Index]:
    """``values`` as int64 where each is a whole number >= 0 (``'12'``, ``' 3 '``, ``'4.0'``), and the rows that
    are not."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text.str.fullmatch(r"\+?\d+(\.0*)?")), errors="coerce")
    bad = values.index[numbers.isna().to_numpy()]
    return numbers.fillna(0).astype(np.int64), bad


def _as_numbers(values: pd.Series) -> pd.Series:
    """Cells as numbers (NaN where a cell is not one): how epoch times and serial dates are read."""
    return pd.to_numeric(values.astype(str).str.strip(), errors="coerce")


def _looks_like_epoch(sample: pd.Series) -> str | None:
    """'unix_s' or 'unix_ms' when every sampled stamp is a whole number in that unit's plausible range."""
    numbers, bad = _integer_steps(sample)
    if not len(sample) or len(bad):
        return None
    for fmt, (low, high) in _EPOCH_RANGES.items():
        if low <= int(numbers.min()) and int(numbers.max()) < high:
            return fmt
    return None


def _looks_like_excel_days(sample: pd.Series) -> bool:
    """Every sampled stamp a number of days since 1899-12-30 between 1954 and 2119 (20000 to 80000), a fraction
    allowed for the time of day: how a spreadsheet's dates reach a CSV when they lost their date format."""
    numbers = _as_numbers(sample)
    return len(sample) > 0 and bool(numbers.notna().all()) and 20_000 <= numbers.min() and numbers.max() < 80_000


def _looks_like_steps(sample: pd.Series) -> bool:
    """Every sampled stamp a small whole number (not a compact date such as 20200131)."""
    numbers, bad = _integer_steps(sample)
    return len(sample) > 0 and not len(bad) and int(numbers.max()) < 10_000_000


@dataclass(frozen=True)
class SourceSpec:
    """Which raw columns play which canonical role (``data_processing.source`` parameters)."""

    id_column: str | None
    timestamp_column: str
    target_column: str
    timestamp_format: str | None
    covariates: list[str] | str
    series_id_constant: str | None
    #: covariate -> ``known_in_advance`` (future values come from ``future_covariates``) or ``observed`` (used
    #: lagged only); a plain list of covariates declares every one observed
    covariate_kinds: dict[str, str] | None = None
    #: with ``timestamp_format: steps``: the date that step 0 stands for (step k: the k-th stamp from it)
    step_origin: str = DEFAULT_STEP_ORIGIN
    #: ``long`` (a row per series and timestamp) or ``wide`` (a timestamp column and one column per series, named
    #: by its header: ETTh1, sensor exports, spreadsheets)
    layout: str = "long"
    #: date each stamp by the last ``panel.freq`` stamp at or before it (monthly data stamped on the 15th, daily
    #: readings at 09:00) instead of refusing stamps off the grid
    snap_to_freq: bool = False

    def clock(self, panel: dict[str, Any] | None) -> "str | StepClock | None":
        """What the timestamp column is read with: the configured format, or for ``steps`` the ``StepClock`` of
        ``step_origin`` and ``panel.freq`` (refused, naming the parameter, when the panel's frequency is missing)."""
        if self.timestamp_format != STEPS:
            return self.timestamp_format
        freq = (panel or {}).get("freq")
        if not freq:
            raise DataProcessingConfigError(
                "data_processing.source.timestamp_format is 'steps' (integer time steps), which reads step k as the "
                "k-th stamp from data_processing.source.step_origin at panel.freq: set panel.freq")
        return StepClock.from_params(self.step_origin, str(freq))

    @classmethod
    def from_params(cls, source: dict[str, Any]) -> "SourceSpec":
        known = {"id_column", "timestamp_column", "target_column", "timestamp_format", "covariates",
                 "series_id_constant", "step_origin", "layout", "snap_to_freq"}
        unknown = set(source) - known
        if unknown:
            raise DataProcessingConfigError(
                f"unknown key(s) {sorted(unknown)} in data_processing.source; known keys: {sorted(known)}"
            )
        covariates = source.get("covariates") or []
        kinds = None
        if isinstance(covariates, dict):
            kinds = {str(name): kind for name, kind in covariates.items()}
            bad = {name: kind for name, kind in kinds.items() if kind not in COVARIATE_KINDS}
            if bad:
                name, kind = next(iter(bad.items()))
                raise DataProcessingConfigError(
                    f"data_processing.source.covariates.{name}: kind {kind!r} is not one of {list(COVARIATE_KINDS)} "
                    "(known_in_advance: planned prices, promotions, holidays with future values in future_covariates; "
                    "observed: weather, upstream volumes, used only lagged)")
            covariates = list(kinds)
        if isinstance(covariates, str) and covariates != "all":
            covariates = [covariates]
        layout = str(source.get("layout") or "long")
        if layout not in LAYOUTS:
            raise DataProcessingConfigError(
                f"data_processing.source.layout must be one of {list(LAYOUTS)}, got {layout!r} (long: columns "
                "series_id, timestamp, value; wide: a timestamp column and one column per series)")
        if layout == "wide" and covariates:
            raise DataProcessingConfigError(
                "data_processing.source.covariates needs layout: long (a wide file's columns other than the "
                "timestamp are all series); write covariates as columns of a long file")
        snap = source.get("snap_to_freq", False)
        if not isinstance(snap, bool):
            raise DataProcessingConfigError(f"data_processing.source.snap_to_freq must be true or false, got {snap!r}")
        return cls(
            id_column=source.get("id_column"),
            timestamp_column=source.get("timestamp_column", TIMESTAMP),
            target_column=source.get("target_column", VALUE),
            timestamp_format=source.get("timestamp_format"),
            covariates=covariates if covariates == "all" else list(covariates),
            series_id_constant=source.get("series_id_constant"),
            covariate_kinds=kinds,
            step_origin=str(source.get("step_origin") or DEFAULT_STEP_ORIGIN),
            layout=layout,
            snap_to_freq=snap,
        )

    def known_in_advance(self) -> list[str]:
        """Covariates declared ``known_in_advance`` (their future values must cover the horizon)."""
        return [name for name, kind in (self.covariate_kinds or {}).items() if kind == "known_in_advance"]

    def resolve_covariates(self, header: list[str]) -> list[str]:
        """Covariate columns: the configured list, or every non-key column for ``covariates: all``."""
        keys = {self.id_column, self.timestamp_column, self.target_column}
        if self.covariates == "all":
            return [column for column in header if column not in keys]
        return list(self.covariates)


def offending_rows(rows: pd.Index, limit: int, lines: Callable[[Iterable[int]], list[int]] | None = None) -> str:
    """'lines 5, 9, 12 (and 40 more)' for the first ``limit`` data rows (0-based) given, as file lines."""
    first = list(rows[:limit])
    numbers = lines(first) if lines is not None else [int(row) + _HEADER_LINES for row in first]
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"line{'s' if len(rows) > 1 else ''} {', '.join(str(n) for n in numbers)}{more}"


def bad_bytes_error(source: CSVChunkSource, error: UnicodeDecodeError) -> SchemaError:
    """A clean error for bytes the encoding cannot decode, at their file line and column."""
    where = source.locate_bad_bytes() if hasattr(source, "locate_bad_bytes") else f"byte {error.start}"
    encoding = (getattr(source, "read_args", {}) or {}).get("encoding") or "utf-8"
    return SchemaError(
        f"{source.filepath} is not valid {encoding} at {where}: {error.reason}; re-save the file as {encoding} "
        f"or set load_args: {{encoding: <the file's encoding>}} on its catalog entry"
    )


def read_header(source: CSVChunkSource) -> list[str]:
    """Column names of the raw file as written; an empty, unreadable or ambiguous header is a ``SchemaError``."""
    try:
        header = source.raw_header() if hasattr(source, "raw_header") else source.header()
    except EmptyDataError as error:
        raise SchemaError(
            f"{source.filepath} is empty (no header line): expected a CSV with a header such as "
            f"'series_id,timestamp,value'; point raw_panel at a non-empty file"
        ) from error
    except UnicodeDecodeError as error:
        raise bad_bytes_error(source, error) from error
    except (ParserError, OSError) as error:
        raise SchemaError(f"{source.filepath} cannot be read as CSV ({quote(str(error), 300)}); check the file "
                          f"and its encoding") from error
    if not header:
        raise SchemaError(f"{source.filepath} is empty (no header line): expected a CSV with a header such as "
                          f"'series_id,timestamp,value'; point raw_panel at a non-empty file")
    # pandas' names for empty header cells, so the frame and the messages agree
    header = [name if name != "" else f"Unnamed: {i}" for i, name in enumerate(header)]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SchemaError(
            f"{source.filepath}: the header repeats column name(s) {', '.join(quote(n) for n in repeated)} (line 1); "
            f"pandas would silently keep the first and rename the others: give every column a distinct name"
        )
    return header


def check_columns(filepath: str, header: list[str], spec: SourceSpec, sep: str = ",") -> list[str]:
    """Fail if a configured column is missing; return the covariate columns to carry (with ``layout: wide``, the
    series columns: every column but the timestamp).

    The refusal says what the header suggests: another separator (the header is one field holding ';', a tab or
    '|'), a column named with other case or spaces, or a wide file (a timestamp column and numeric-looking
    series columns) read as long.
    """
    if spec.layout == "wide":
        series = [column for column in header if column != spec.timestamp_column]
        if spec.timestamp_column not in header or not series:
            raise SchemaError(
                f"{filepath} is read as wide (data_processing.source.layout: wide) but its header "
                f"[{_shown(header)}] has {'no column ' + quote(spec.timestamp_column) if series else 'no series column'}"
                f"; set data_processing.source.timestamp_column to the header's time column")
        return series
    roles = {
        "id_column": spec.id_column,
        "timestamp_column": spec.timestamp_column,
        "target_column": spec.target_column,
    }
    covariates = spec.resolve_covariates(header)
    for role, column in [*roles.items(), *(("covariates", c) for c in covariates)]:
        if column is not None and column not in header:
            raise SchemaError(f"column {quote(column)} missing in {filepath} (header: [{_shown(header)}]); "
                              + _missing_column_hint(role, column, header, spec, sep))
    return covariates


_OTHER_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _shown(header: list[str]) -> str:
    return ", ".join(quote(name) for name in header[:20]) + (", ..." if len(header) > 20 else "")


def _missing_column_hint(role: str, column: str, header: list[str], spec: SourceSpec, sep: str) -> str:
    """What to set for a configured column the header lacks."""
    if len(header) == 1:
        found = [mark for mark in _OTHER_SEPARATORS if mark != sep and mark in header[0]]
        if found:
            mark = found[0]
            return (f"the header is one field holding {mark!r}: the file looks {_OTHER_SEPARATORS[mark]}-separated. "
                    f"Give its catalog entry (raw_panel in conf/local/catalog.yml, or incoming_batches for Day-N "
                    f"batches) load_args: {{sep: {mark!r}}}, with decimal: ',' if its numbers use decimal commas")
    close = [name for name in header if name.strip().casefold() == str(column).strip().casefold()]
    if close:
        return f"set data_processing.source.{role}: {close[0]!r} (the header's spelling, spaces included)"
    time = spec.timestamp_column if spec.timestamp_column in header else next(
        (name for name in header if name.strip().casefold() in _TIME_NAMES), None)
    also = f", timestamp_column: {time!r}" if time is not None and time != spec.timestamp_column else ""
    others = [name for name in header if name != time]
    if role == "id_column" and time is not None and spec.target_column not in header:
        if len(others) == 1:
            return (f"the file looks like one series (a time column {quote(time)} and one value column "
                    f"{quote(others[0])}): set data_processing.source.id_column: null{also}, target_column: "
                    f"{others[0]!r}")
        if len(others) >= 2:
            return (f"the file looks wide (a time column {quote(time)} and one column per series: "
                    f"{_shown(others[:5])}): set data_processing.source.layout: wide{also}, or id_column: null and "
                    f"target_column to one column for a single series")
    if role == "timestamp_column" and time is not None:
        return f"set data_processing.source.timestamp_column: {time!r} (the header's time column)"
    hint = " (a single-series file without an id column needs `id_column: null`)" if role == "id_column" else ""
    return f"set data_processing.source.{role} to one of the header's columns{hint}"


# Header names a time column goes by (compared without case or surrounding spaces); only used for hints.
_TIME_NAMES = {"timestamp", "ds", "date", "datetime", "date_time", "time", "period", "month", "week", "year",
               "quarter", "day", "hour"}


def _year_then_day(fmt: str) -> bool:
    """'%Y-%d-%m' and the like: what guessing day-first makes of ISO dates, never a real file's layout."""
    order = [code for code in re.findall(r"%([YydmbB])", fmt)]
    return len(order) >= 2 and order[0] in "Yy" and order[1] == "d"


def _to_datetime(values: pd.Series, fmt: "str | StepClock") -> pd.Series:
    """``pd.to_datetime`` that takes changing UTC offsets (DST) by converting aware stamps to UTC; a
    ``StepClock`` dates integer steps (anything else becomes NaT)."""
    if isinstance(fmt, StepClock):
        steps, bad = _integer_steps(values)
        dates = pd.Series(fmt.dates(steps.to_numpy()), index=values.index)
        dates.loc[bad] = pd.NaT
        return dates
    if fmt == ISO_WEEK:  # '2020-W01' or '2020W01': the Monday of that ISO week
        labels = values.astype(str).str.strip().str.replace(r"^(\d{4})-?W(\d{2})$", r"\1-W\2-1", regex=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, UserWarning))
            return pd.to_datetime(labels, format="%G-W%V-%u", errors="coerce")
    if fmt == EXCEL_DAYS:  # 44197 is 2021-01-01, 44197.5 its noon
        numbers = _as_numbers(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, UserWarning, RuntimeWarning))
            # to the second: a spreadsheet keeps seconds, and a float day count's last digits would put an hourly
            # stamp microseconds off its grid
            return (_EXCEL_ORIGIN + pd.to_timedelta(numbers, unit="D", errors="coerce")).dt.round("s")
    if fmt in EPOCH_UNITS:  # UTC by definition: naive UTC, as aware stamps become
        numbers = _as_numbers(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, UserWarning, RuntimeWarning))
            return pd.to_datetime(numbers, unit=EPOCH_UNITS[fmt], errors="coerce")
    utc = "%z" in fmt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))
        parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=utc)
        if parsed.dtype == object:  # 'mixed' met offsets that change (e.g. +02:00 then +01:00 across DST)
            parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    return parsed


def _two_digit_year_error(sample: pd.Series, filepath: str, column: str) -> SchemaError | None:
    """Dates such as '21-03-01' (three groups of at most two digits) could be year-, day- or month-first."""
    match = next((m for m in map(_TWO_DIGIT_DATE.match, sample[:_FORMAT_GUESSES]) if m), None)
    if match is None:
        return None
    sep = match.group(2)
    candidates = [sep.join(order) for order in (("%y", "%m", "%d"), ("%d", "%m", "%y"), ("%m", "%d", "%y"))]
    return SchemaError(
        f"column {quote(column)} in {filepath}: timestamps such as {quote(match.string)} have a two-digit year, so "
        f"the date could be read as {', '.join(repr(c) for c in candidates)} (each with the time after it); set "
        f"data_processing.source.timestamp_format to the file's format, e.g. '{candidates[0]} %H:%M'"
    )


def resolve_timestamp_format(first_values: pd.Series, configured: str | None, filepath: str = "the file",
                             column: str = TIMESTAMP) -> str:
    """The configured format, else the one format that reads every sampled timestamp, else 'mixed'.

    The format is guessed (month-first and day-first) on the first distinct timestamps of the file and checked
    against up to ``_FORMAT_SAMPLE`` of them. When two formats read them all but to different dates (e.g. a
    day-first file whose days are all <= 12), or the year has two digits, the file is refused with the
    candidates: a silent month-first reading inflated a 150-row series to 4,350 grid rows. Guessing once for
    the whole file (not per chunk) keeps every chunk parsed the same way.
    """
    if isinstance(configured, str) and configured == STEPS:
        raise DataProcessingConfigError(
            "data_processing.source.timestamp_format 'steps' needs panel.freq to date the steps; set panel.freq")
    if configured:
        return configured
    sample = pd.Series(first_values.dropna().unique()[:_FORMAT_SAMPLE], dtype=object).astype(str)
    if sample.empty:
        return "mixed"
    two_digit = _two_digit_year_error(sample, filepath, column)
    if two_digit is not None:
        raise two_digit
    candidates: list[str] = []
    for value in sample[:_FORMAT_GUESSES]:
        for dayfirst in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "dates in %d/%m format when dayfirst=False"
                guessed = guess_datetime_format(value, dayfirst=dayfirst)
            if guessed and guessed not in candidates and not _year_then_day(guessed):
                candidates.append(guessed)
    if not candidates and sample.str.match(_ISO_WEEK_LABEL).all():
        raise SchemaError(
            f"column {quote(column)} in {filepath} holds ISO week labels such as {quote(sample.iloc[0])}: set "
            f"data_processing.source.timestamp_format: {ISO_WEEK} (each week is dated by its Monday) and "
            f"panel.freq: W-MON")
    epoch = _looks_like_epoch(sample) if not candidates else None
    if epoch is not None:
        raise SchemaError(
            f"column {quote(column)} in {filepath} holds whole numbers such as {quote(sample.iloc[0])}, which read as "
            f"Unix epoch {'seconds' if epoch == 'unix_s' else 'milliseconds'} "
            f"({_to_datetime(sample[:1], epoch).iloc[0]} UTC): if they are, set "
            f"data_processing.source.timestamp_format: {epoch}; if they number time steps, set it to steps")
    if not candidates and _looks_like_excel_days(sample):
        raise SchemaError(
            f"column {quote(column)} in {filepath} holds numbers such as {quote(sample.iloc[0])}, which read as "
            f"spreadsheet serial dates ({_to_datetime(sample[:1], EXCEL_DAYS).iloc[0]}: days since 1899-12-30, as "
            f"Excel stores them): if they are, set data_processing.source.timestamp_format: {EXCEL_DAYS}; if they "
            f"number time steps, set it to steps")
    if not candidates and _looks_like_steps(sample):
        raise SchemaError(
            f"column {quote(column)} in {filepath} holds whole numbers ({', '.join(map(quote, sample[:3]))}, ...), "
            f"not dates: if they number time steps, set data_processing.source.timestamp_format: steps (step k "
            f"is then dated as the k-th stamp from data_processing.source.step_origin, default "
            f"{DEFAULT_STEP_ORIGIN}, at panel.freq); otherwise set timestamp_format to the file's date format")
    if not candidates:
        logger.warning("could not guess the timestamp format of %s; parsing each timestamp on its own (slow). "
                       "Set data_processing.source.timestamp_format to speed this up", filepath)
        return "mixed"
    parsed = {fmt: _to_datetime(sample, fmt) for fmt in candidates}
    readable = {fmt: int(values.notna().sum()) for fmt, values in parsed.items()}
    complete = [fmt for fmt in candidates if readable[fmt] == len(sample)]
    if len(complete) > 1:
        reference = parsed[complete[0]]
        differing = [fmt for fmt in complete[1:] if not parsed[fmt].equals(reference)]
        if differing:
            other = parsed[differing[0]]
            row = int(np.flatnonzero((reference != other).to_numpy())[0])
            raise SchemaError(
                f"column {quote(column)} in {filepath}: the timestamp format is ambiguous: every sampled timestamp "
                f"reads with {complete[0]!r} and with {differing[0]!r}, to different dates (e.g. "
                f"{quote(sample.iloc[row])} is {reference.iloc[row]} or {other.iloc[row]}); set "
                f"data_processing.source.timestamp_format to the one the file uses"
            )
    if complete:
        return complete[0]
    # No candidate reads every sampled value: take the one reading most; parse_timestamps names the rest.
    return max(candidates, key=lambda fmt: readable[fmt])


def _outside_clock(values: pd.Series) -> str | None:
    """The first of ``values`` that is a real date outside pandas' nanosecond range (a yearly series from 1500),
    which every reader turns into 'not parseable'; None when there is none."""
    for value in values.dropna().astype(str):
        try:
            stamp = pd.Timestamp(value.strip())  # pandas 2 keeps such dates at second resolution
        except (ValueError, TypeError, OverflowError):
            continue
        if stamp is not pd.NaT and not pd.Timestamp.min <= stamp <= pd.Timestamp.max:
            return value
    return None


def parse_timestamps(raw: pd.Series, fmt: "str | StepClock", filepath: str, column: str, limit: int,
                     lines: Callable[[Iterable[int]], list[int]] | None = None) -> pd.Series:
    """Timestamps as naive datetime64[ns] (aware ones converted to UTC); empty or unparseable cells fail."""
    parsed = _to_datetime(raw, fmt)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        # A panel grid needs one clock: compare everything in UTC, without the zone.
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.index[parsed.isna().to_numpy()]
    if len(bad):
        examples = [quote(raw.loc[row]) for row in bad[:limit]]
        if isinstance(fmt, StepClock):
            raise SchemaError(
                f"column {quote(column)} in {filepath}: {len(bad)} time step(s) empty or not a whole number >= 0 at "
                f"{offending_rows(bad, limit, lines)} (values {', '.join(examples)}); timestamp_format is 'steps': "
                f"fix those rows, or set data_processing.source.timestamp_format to the file's date format")
        outside = _outside_clock(raw.loc[bad[:limit]])
        if outside is not None:
            raise SchemaError(
                f"column {quote(column)} in {filepath}: {quote(outside)} at {offending_rows(bad, limit, lines)} is a "
                f"date outside what the panel's nanosecond clock holds ({pd.Timestamp.min.date()} to "
                f"{pd.Timestamp.max.date()}); number the periods instead (a column 0, 1, 2, ... read with "
                f"data_processing.source.timestamp_format: steps and step_origin), or drop the rows before "
                f"{pd.Timestamp.min.year + 1}")
        raise SchemaError(
            f"column {quote(column)} in {filepath}: {len(bad)} timestamp(s) empty or not parseable with format "
            f"{fmt!r} at {offending_rows(bad, limit, lines)} (values {', '.join(examples)}); fix those rows or set "
            f"data_processing.source.timestamp_format to the file's format"
        )
    return parsed.astype("datetime64[ns]")


def parse_numbers(
    raw: pd.Series, filepath: str, column: str, policy: str, limit: int,
    lines: Callable[[Iterable[int]], list[int]] | None = None, decimal: str = ".", thousands: str | None = None,
) -> tuple[pd.Series, pd.Index]:
    """Float64 values; non-numeric or infinite cells fail (policy ``fail``) or become missing (``coerce``).

    Empty cells (and the missing markers) are missing values, not faults. ``inf``, ``Infinity`` and the like
    are refused: no grid, model or metric can use them, and kept they stay in every later history version.
    ``decimal``/``thousands`` are the catalog entry's ``load_args`` (numbers are parsed here, not by pandas).
    Returns the values and the rows that were refused.
    """
    text = raw
    if thousands:
        text = text.str.replace(thousands, "", regex=False)
    if decimal and decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce")
    infinite = np.isinf(numbers.to_numpy(dtype="float64"))
    bad = raw.index[((numbers.isna() & raw.notna()).to_numpy()) | infinite]
    if len(bad) and policy == "fail":
        examples = [quote(raw.loc[row]) for row in bad[:limit]]
        raise SchemaError(
            f"column {quote(column)} in {filepath}: {len(bad)} non-numeric or infinite value(s) at "
            f"{offending_rows(bad, limit, lines)} (values {', '.join(examples)}); "
            + (_number_format_hint(raw.loc[bad[:limit]], decimal, thousands)
               or _mostly_text_hint(raw.loc[bad[:limit]], len(bad), int(raw.notna().sum()))
               or "fix those rows or set data_processing.non_numeric_policy: coerce to treat them as missing")
        )
    # float64 on purpose: float32 would change real values (e.g. 5.97635090929793) before any model sees them.
    numbers = numbers.astype("float64")
    if infinite.any():
        numbers = numbers.mask(infinite)
    return numbers, bad


_GROUPED = {",": re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"), ".": re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$"),
            " ": re.compile(r"^[+-]?\d{1,3}( \d{3})+([.,]\d+)?$")}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+$")


def _number_format_hint(values: pd.Series, decimal: str, thousands: str | None) -> str:
    """What to set when every refused value is a number written with thousands separators or a decimal comma
    ('' otherwise): coercing them would drop every value of the column."""
    text = values.astype(str).str.strip()
    entry = "give the file's catalog entry (raw_panel in conf/local/catalog.yml, or incoming_batches) load_args: "
    for mark, pattern in _GROUPED.items():
        if mark != thousands and len(text) and text.str.match(pattern).all():
            point = ", decimal: ','" if mark == "." else ""
            also = " (or decimal: ',' if the comma is the decimal point)" if mark == "," else ""
            return (f"they are numbers with {mark!r} as thousands separator: {entry}{{thousands: {mark!r}{point}}}"
                    f"{also}")
    if decimal != "," and len(text) and text.str.match(_DECIMAL_COMMA).all():
        return f"they are numbers with a decimal comma: {entry}{{decimal: ','}} (and sep: ';' if commas also separate fields)"
    return ""


_SIGNED = re.compile(r"^\s*[$€£¥]\s*[+-]?[\d.,\s]+$|^\s*[+-]?[\d.,\s]+\s*%\s*$")


def _mostly_text_hint(values: pd.Series, refused: int, read: int) -> str:
    """When most of a column is refused, coercing would empty it: say so, and what the values carry ('' when
    only a few rows are refused)."""
    if refused * 2 <= read:
        return ""
    signed = len(values) and values.astype(str).str.match(_SIGNED).all()
    what = "carry a currency or percent sign" if signed else "are not numbers"
    return (f"{refused} of the {read} values in this chunk of the file {what}, so non_numeric_policy: coerce would "
            "leave the column empty: write plain numbers (e.g. 1200.5), or check that data_processing.source names "
            "the numeric column")


def _surplus_error(chunk: pd.DataFrame, rows: pd.Index, header: list[str], spec: SourceSpec, filepath: str,
                   limit: int, lines: FileLines, sep: str) -> SchemaError:
    """Rows with more fields than the header: refused (pandas would silently drop the surplus)."""
    surplus = chunk.loc[rows, _SURPLUS[0]].fillna("")
    first = next((v for v in chunk.loc[rows[0], list(_SURPLUS)] if isinstance(v, str) and v), "")
    message = (f"{filepath}: {len(rows)} row(s) have more fields than the header's {len(header)} at "
               f"{offending_rows(rows, limit, lines)} (first surplus field {quote(first)}); ")
    target_last = header[-1] == spec.target_column
    digits = surplus.astype(str).str.fullmatch(r"\d+").all()
    values_integral = chunk.loc[rows, spec.target_column].astype(str).str.fullmatch(r"[+-]?\d+").all()
    if target_last and digits and values_integral:
        value = f"{chunk.loc[rows[0], spec.target_column]},{first}"
        return SchemaError(
            message + f"the values look like decimal commas ({quote(value)} read as two fields): write the file "
            f"with another separator, e.g. ';', and set load_args: {{sep: ';', decimal: ','}} on its catalog "
            f"entry (raw_panel or incoming_batches), or quote the values"
        )
    return SchemaError(message + f"remove the surplus fields, or quote the cells that contain the separator {sep!r}")


def _parse_chunk(chunk: pd.DataFrame, spec: SourceSpec, numeric_columns: dict[str, str], fmt: str,
                 filepath: str, non_numeric_policy: str, limit: int, non_numeric: dict,
                 lines: FileLines | None = None, number_format: dict[str, Any] | None = None) -> dict[str, Any]:
    """One chunk as compact arrays: ids (categorical), datetime64 timestamps, float64 numbers, file rows."""
    lines = lines or FileLines(filepath)
    arrays: dict[str, Any] = {}
    if spec.id_column is not None:
        ids = chunk[spec.id_column]
        empty = ids.index[ids.isna().to_numpy()]
        if len(empty):
            raise SchemaError(f"column {quote(spec.id_column)} in {filepath}: empty series id at "
                              f"{offending_rows(empty, limit, lines)}; fill in the id of those rows")
        arrays[SERIES_ID] = ids.array
    arrays[TIMESTAMP] = parse_timestamps(chunk[spec.timestamp_column], fmt, filepath, spec.timestamp_column,
                                         limit, lines).to_numpy()
    for raw_column, canonical in numeric_columns.items():
        numbers, bad = parse_numbers(chunk[raw_column], filepath, raw_column, non_numeric_policy, limit, lines,
                                     **(number_format or {}))
        arrays[canonical] = numbers.to_numpy()
        _count_refused(non_numeric, raw_column, bad, limit, lines)
    arrays["source_row"] = _file_rows(chunk)
    return arrays


def _file_rows(chunk: pd.DataFrame) -> np.ndarray:
    # int32 row numbers where they fit: a quarter of what the kept columns would otherwise weigh.
    return chunk.index.to_numpy(dtype=np.int32 if len(chunk) == 0 or chunk.index[-1] < 2**31 else np.int64)


def _count_refused(non_numeric: dict, column: str, bad: pd.Index, limit: int, lines: FileLines) -> None:
    """Add the rows ``coerce`` turned into missing values to the report (count and first file lines)."""
    if len(bad):
        found = non_numeric.setdefault(column, {"count": 0, "first_lines": []})
        found["count"] += len(bad)
        room = max(limit - len(found["first_lines"]), 0)
        found["first_lines"] += lines(bad[:room]) if room else []


def _parse_wide_chunk(chunk: pd.DataFrame, spec: SourceSpec, series_columns: list[str], fmt: str, filepath: str,
                      non_numeric_policy: str, limit: int, non_numeric: dict, lines: FileLines,
                      number_format: dict[str, Any]) -> dict[str, Any]:
    """One chunk of a wide file (a timestamp column, one column per series) as the long arrays of
    ``_parse_chunk``: series by series, each with every timestamp of the chunk (an empty cell is a missing
    value; the grid cuts a series' empty start and end)."""
    stamps = parse_timestamps(chunk[spec.timestamp_column], fmt, filepath, spec.timestamp_column, limit,
                              lines).to_numpy()
    values = []
    for column in series_columns:
        numbers, bad = parse_numbers(chunk[column], filepath, column, non_numeric_policy, limit, lines,
                                     **number_format)
        values.append(numbers.to_numpy())
        _count_refused(non_numeric, column, bad, limit, lines)
    count = len(series_columns)
    codes = np.repeat(np.arange(count, dtype=np.int32), len(chunk))
    return {SERIES_ID: pd.Categorical.from_codes(codes, categories=series_columns),
            TIMESTAMP: np.tile(stamps, count), VALUE: np.concatenate(values) if values else np.array([], float),
            "source_row": np.tile(_file_rows(chunk), count)}


def _parser_error(source: CSVChunkSource, error: ParserError, header: list[str]) -> SchemaError:
    """A tokenizer fault as a file line: too many fields (found by re-reading the file), or pandas' own words."""
    long_record = (source.first_long_record(len(header)) if "saw" in str(error) and hasattr(source, "first_long_record")
                   else None)
    if long_record is not None:
        line, fields = long_record
        return SchemaError(f"{source.filepath}: line {line} has {fields} fields but the header has {len(header)}; "
                           f"remove the surplus fields, or quote the cells that contain the separator")
    return SchemaError(f"{source.filepath} cannot be parsed as CSV ({quote(str(error), 300)}); fix the malformed line")


def read_canonical_chunks(
    source: CSVChunkSource, spec: SourceSpec, chunk_size: int, non_numeric_policy: str, limit: int,
    clock: "str | StepClock | None" = None,
) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Read the file chunk by chunk into canonical column arrays.

    Every row must have at most the header's fields: the file is read with one extra named column, so a
    surplus field (a decimal comma, an unquoted separator) is refused with its line instead of dropped.
    Returns ``columns`` (``series_id`` as integer codes into ``categories``, which are sorted, plus
    ``timestamp``, ``value``, covariates and ``source_row``), ``categories`` and what was found. Only one
    chunk of text is alive at a time; what is kept is 8 bytes per cell. ``clock``: how timestamps are read (the
    ``SourceSpec.clock``; default the configured ``timestamp_format``).
    """
    clock = spec.timestamp_format if clock is None else clock
    header = read_header(source)
    read_args = getattr(source, "read_args", {}) or {}
    number_format = {"decimal": read_args.get("decimal", "."), "thousands": read_args.get("thousands")}
    sep = read_args.get("sep", read_args.get("delimiter", ","))
    wide = spec.layout == "wide"
    carried = check_columns(source.filepath, header, spec, sep)
    series_columns, covariates = (carried, []) if wide else ([], carried)
    id_column = None if wide else spec.id_column
    numeric_columns = ({c: c for c in series_columns} if wide
                       else {spec.target_column: VALUE, **{c: c for c in covariates}})
    usecols = [c for c in (id_column, spec.timestamp_column, *numeric_columns) if c is not None]
    # Ids as categories and everything else as text: numbers are parsed by us so non-numeric cells can be
    # reported with their rows instead of turning the whole column into objects.
    names = [*header, *_SURPLUS]
    dtype: dict[str, Any] = {c: str for c in names}
    if id_column is not None:
        dtype[id_column] = "category"
    na_values = {column: MISSING_MARKERS for column in usecols}
    if id_column is not None:
        na_values[id_column] = [""]
    constant_id = spec.series_id_constant or Path(source.filepath).stem
    lines = FileLines(source)

    pieces, non_numeric, fmt, rows_read = [], {}, None, 0
    try:
        for chunk in source.chunks(chunk_size, surplus_columns=_SURPLUS, dtype=dtype, keep_default_na=False,
                                   na_values=na_values):
            present = [c for c in _SURPLUS if c in chunk]
            surplus = (chunk.index[(chunk[present].fillna("") != "").any(axis=1).to_numpy()] if present
                       else chunk.index[:0])
            if len(surplus):
                raise _surplus_error(chunk, surplus, header, spec, source.filepath, limit, lines, sep)
            chunk = chunk[usecols]
            fmt = fmt or resolve_timestamp_format(chunk[spec.timestamp_column], clock,
                                                  source.filepath, spec.timestamp_column)
            rows_read += len(chunk)
            if wide:
                pieces.append(_parse_wide_chunk(chunk, spec, series_columns, fmt, source.filepath,
                                                non_numeric_policy, limit, non_numeric, lines, number_format))
                continue
            pieces.append(_parse_chunk(chunk, spec, numeric_columns, fmt, source.filepath, non_numeric_policy,
                                       limit, non_numeric, lines, number_format))
    except ParserError as error:
        raise _parser_error(source, error, header) from error
    except UnicodeDecodeError as error:
        raise bad_bytes_error(source, error) from error
    unread = [c for c in header if c not in usecols]  # a price or promotion column the user may expect to be used
    if unread:
        logger.info("%s: column(s) %s are not read (declare them in data_processing.source.covariates to use them)",
                    source.filepath, ", ".join(quote(c) for c in unread[:10]) + (" ..." if len(unread) > 10 else ""))
    if rows_read == 0:
        raise SchemaError(f"{source.filepath} has a header but no data rows; point raw_panel at a file with data")

    if id_column is None and not wide:
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
        "timestamp_format": (f"steps: step k is the k-th {fmt.freq} stamp from {fmt.origin}"
                             if isinstance(fmt, StepClock) else fmt),
        "columns": ({"layout": "wide", "series_id": "<the header: one column per series>",
                     "timestamp": spec.timestamp_column, "value": f"<{len(series_columns)} series columns>",
                     "covariates": []} if wide else
                    {"series_id": spec.id_column or f"<constant {constant_id!r}>",
                     "timestamp": spec.timestamp_column, "value": spec.target_column, "covariates": covariates}),
        "columns_not_read": unread,
        "non_numeric": non_numeric,
    }
    return columns, categories, found


def snap_to_freq(stamps: np.ndarray, freq: str) -> np.ndarray:
    """Each stamp dated by the last ``freq`` stamp at or before it (``data_processing.source.snap_to_freq``).

    Monthly data stamped on the 15th becomes the 1st with ``MS``; a daily reading at 09:00 becomes midnight with
    ``D``; a Wednesday becomes the Sunday before with ``W-SUN``; a reading at 10:30 the 10:00 business hour and
    one at 18:20 (after closing) the 16:00 one with ``bh``. Fixed steps (hours, minutes, ``D``) are floored; every
    other offset is matched against its own grid (``pd.date_range``), so business hours keep their time of day
    and calendar offsets their midnight stamps. Two stamps of one series in one period then share a key, which
    the duplicate policy handles like any repeated key.
    """
    offset = pd.tseries.frequencies.to_offset(freq)
    index = pd.DatetimeIndex(stamps)
    if isinstance(offset, pd.offsets.Tick):
        return index.floor(offset).to_numpy("datetime64[ns]")
    if not len(index):
        return index.to_numpy("datetime64[ns]")
    # the offset's own grid, anchored at the midnight two steps before the first stamp (a business-hour grid then
    # starts at an opening time, not at the first stamp's minute), and each stamp's last grid point
    start = (index.min() - 2 * offset).normalize()
    grid = pd.date_range(start, index.max(), freq=offset).to_numpy("datetime64[ns]")
    return grid[np.searchsorted(grid, index.to_numpy("datetime64[ns]"), side="right") - 1]


def _take(columns: dict[str, np.ndarray], index: np.ndarray) -> None:
    """Reorder or filter every column in place, one at a time (no second copy of the whole panel)."""
    for name in columns:
        columns[name] = columns[name][index]


def sort_and_check_order(columns: dict[str, np.ndarray], filepath: Any, limit: int) -> dict[str, Any]:
    """Sort the columns by series and time in place; report (never fail on) rows that went back in time.

    ``filepath`` is the source (its lines are then real file lines) or just its path.
    """
    lines = _lines_of(filepath)
    filepath = lines.filepath
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
                       filepath, len(rows), offending_rows(pd.Index(rows), limit, lines))
    return {"rows_out_of_order": int(len(rows)),
            "first_out_of_order_lines": lines(rows[:limit]),
            "sorted_by_pipeline": bool(len(rows))}


def _same_key_as_next(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Per row but the last: whether the next row has the same (series_id, timestamp) (rows sorted by key)."""
    codes, timestamps = columns[SERIES_ID], columns[TIMESTAMP]
    return (codes[1:] == codes[:-1]) & (timestamps[1:] == timestamps[:-1])


def handle_duplicates(
    columns: dict[str, np.ndarray], categories: list[str], filepath: Any, policy: str, limit: int
) -> dict[str, Any]:
    """Fail on repeated (series_id, timestamp) keys, or keep the first/last occurrence in file order (in place).

    A row that repeats the row before it in every column (key, target and covariates: overlapping exports
    concatenated) carries nothing new: it is dropped under every policy, logged and counted
    (``identical_duplicates_dropped``). Only keys whose rows disagree are refused by ``fail``.
    ``filepath`` is the source (its lines are then real file lines) or just its path.
    """
    lines = _lines_of(filepath)
    filepath = lines.filepath
    same_as_next = _same_key_as_next(columns)
    if not same_as_next.any():
        return {"duplicate_rows": 0, "duplicates_dropped": 0}
    identical = same_as_next.copy()
    for name, values in columns.items():
        if name in (SERIES_ID, TIMESTAMP, "source_row"):
            continue
        equal = values[1:] == values[:-1]
        if values.dtype.kind == "f":
            equal |= np.isnan(values[1:]) & np.isnan(values[:-1])
        identical &= equal
    repeated = int(identical.sum())
    if repeated:
        logger.warning("%s: %d rows repeat the row before them exactly (same key and values): dropped",
                       filepath, repeated)
        _take(columns, ~np.r_[False, identical])
        same_as_next = _same_key_as_next(columns)
        if not same_as_next.any():
            return {"duplicate_rows": repeated, "duplicates_dropped": repeated,
                    "identical_duplicates_dropped": repeated}
    clashing = np.r_[same_as_next, False] | np.r_[False, same_as_next]
    rows = np.sort(columns["source_row"][clashing])
    first = int(np.flatnonzero(clashing)[np.argmin(columns["source_row"][clashing])])
    key = (categories[columns[SERIES_ID][first]], pd.Timestamp(columns[TIMESTAMP][first]))
    if policy == "fail":
        raise SchemaError(
            f"columns (series_id, timestamp) in {filepath}: {len(rows)} rows share a key with different values, "
            f"first ({quote(key[0])}, {key[1]}) at {offending_rows(pd.Index(rows), limit, lines)}; remove the repeated "
            f"rows or set data_processing.duplicate_policy: keep_first or keep_last"
        )
    # Rows of one key are in file order (stable sort): drop all but the first or all but the last.
    drop = np.r_[False, same_as_next] if policy == "keep_first" else np.r_[same_as_next, False]
    _take(columns, ~drop)
    logger.warning("%s: %d rows share a (series_id, timestamp) key; kept the %s of each (%d dropped)",
                   filepath, len(rows), policy.removeprefix("keep_"), int(drop.sum()))
    return {"duplicate_rows": int(len(rows)) + repeated, "duplicates_dropped": int(drop.sum()) + repeated,
            "identical_duplicates_dropped": repeated, "first_duplicate_lines": lines(rows[:limit])}


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


def check_future_covariates(future_covariates: pd.DataFrame | None, known_in_advance: list[str],
                            last_timestamps: pd.Series, horizon: int, freq: str,
                            source: str = "future_covariates") -> pd.DataFrame:
    """Fail unless ``future_covariates`` holds every known-in-advance covariate of every series for each of the
    ``horizon`` steps after the series' last timestamp; the error names covariate, series and first missing time.

    Args:
        future_covariates: ``series_id, timestamp, <covariates>`` (the ``future_covariates`` input).
        known_in_advance: the covariates declared ``known_in_advance`` in ``data_processing.source.covariates``.
        last_timestamps: each series' last observed timestamp (indexed by ``series_id``).
        horizon, freq: ``panel.horizon`` and ``panel.freq``.

    Returns:
        The rows of the horizon (``series_id, timestamp`` and the known covariates), sorted.
    """
    if not known_in_advance:
        return pd.DataFrame(columns=[SERIES_ID, TIMESTAMP])
    if future_covariates is None:
        raise SchemaError(f"{source}: missing; covariates {known_in_advance} are declared known_in_advance, so "
                          f"their values for the {horizon} steps after each series' end are required")
    absent = [c for c in (SERIES_ID, TIMESTAMP, *known_in_advance) if c not in future_covariates.columns]
    if absent:
        raise SchemaError(f"{source}: column(s) {absent} missing (have {list(future_covariates.columns)}); it needs "
                          f"series_id, timestamp and every known_in_advance covariate")
    indexed = future_covariates.assign(**{TIMESTAMP: pd.to_datetime(future_covariates[TIMESTAMP])}).set_index(
        [SERIES_ID, TIMESTAMP])
    if indexed.index.duplicated().any():
        sid, when = indexed.index[indexed.index.duplicated()][0]
        raise SchemaError(f"{source}: series {sid!r} has more than one row at {when}")
    parts = []
    for series_id, last in last_timestamps.items():
        grid = pd.date_range(last, periods=int(horizon) + 1, freq=freq)[1:]
        wanted = pd.MultiIndex.from_arrays([[series_id] * len(grid), grid], names=[SERIES_ID, TIMESTAMP])
        rows = indexed.reindex(wanted)[known_in_advance]
        for name in known_in_advance:
            gaps = rows[name].isna().to_numpy()
            if gaps.any():
                raise SchemaError(
                    f"{source}: known_in_advance covariate {name!r} of series {series_id!r} is missing from "
                    f"{grid[int(np.flatnonzero(gaps)[0])]} on ({int(gaps.sum())} of the {len(grid)} horizon steps "
                    f"after {last}); provide its planned values or declare it observed")
        parts.append(rows.reset_index())
    return pd.concat(parts, ignore_index=True)
