"""A read-only Kedro dataset that hands a node a lazy CSV source to read in bounded chunks."""
from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError, get_filepath_str, get_protocol_and_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CSVChunkSource:
    """Where a raw CSV lives and how to read it; nothing is read until ``header`` or ``chunks`` is called.

    Loading the whole file in one ``read_csv`` call would hold every id and timestamp as a Python string
    at once; handing the node this source instead lets it parse and downcast chunk by chunk.
    """

    filepath: str
    read_args: dict[str, Any] = field(default_factory=dict)
    storage_options: dict[str, Any] = field(default_factory=dict)

    def _open(self):
        return fsspec.open(self.filepath, mode="rb", **self.storage_options)

    def header(self) -> list[str]:
        """Column names of the file (first line). Raises ``pandas.errors.EmptyDataError`` on an empty file."""
        with self._open() as handle:
            return list(pd.read_csv(handle, nrows=0, **self.read_args).columns)

    def raw_header(self) -> list[str]:
        """The header line's fields exactly as written (``header`` de-duplicates repeated names as ``x.1``)."""
        with self._open() as handle:
            first = pd.read_csv(handle, nrows=1, header=None, dtype=str, keep_default_na=False,
                                **{k: v for k, v in self.read_args.items() if k not in ("header", "names")})
        return [str(name) for name in first.iloc[0].tolist()] if len(first) else []

    def chunks(self, chunk_size: int, surplus_columns: tuple[str, ...] = (), **read_args: Any) -> Iterator[pd.DataFrame]:
        """Yield the data rows in chunks of at most ``chunk_size`` rows, indexed by data-row number (0-based).

        With ``surplus_columns`` the header is read with those extra columns, so a row with more fields than
        the header shows its first surplus fields there: pandas alone drops surplus fields silently when
        ``usecols`` is given, or when the long row is the first of a chunk. Rows of the header's length read
        them as missing (empty). Only for encodings that write the header in ASCII-compatible bytes.
        """
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        with self._open() as handle:
            if surplus_columns and self._ascii_compatible:
                sep = self._separator.encode(self._encoding)
                handle = _with_extra_header_field(handle, b"".join(sep + name.encode() for name in surplus_columns))
            reader = pd.read_csv(handle, chunksize=int(chunk_size), **{**self.read_args, **read_args})
            with reader:
                yield from reader

    # What follows re-reads the file only to describe a fault (real line numbers, a bad byte, a long row):
    # it runs when an error or warning is written, never on the happy path.

    @property
    def _separator(self) -> str:
        return str(self.read_args.get("sep", self.read_args.get("delimiter", ",")) or ",")

    @property
    def _encoding(self) -> str:
        return str(self.read_args.get("encoding") or "utf-8")

    @property
    def _ascii_compatible(self) -> bool:
        name = codecs.lookup(self._encoding).name
        return name in {"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"} or name.startswith("cp125")

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """(first file line, fields) of every non-blank record, header included, as pandas tokenises them."""
        sep = self._separator
        quotechar = self.read_args.get("quotechar", '"')
        with self._open() as binary:
            text = io.TextIOWrapper(binary, encoding=self._encoding, errors="replace", newline=None)
            reader = csv.reader(text, delimiter=sep, quotechar=quotechar)
            end = 0
            for fields in reader:
                start, end = end + 1, reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # pandas skips blank (and whitespace-only) lines
                yield start, fields

    def line_numbers(self, rows: Iterable[int]) -> dict[int, int]:
        """File line (1-based) on which each data row (0-based, as in ``chunks``) starts.

        Blank lines and quoted newlines make the line differ from row + 2; a file without either (checked up
        to the last row asked for) is answered without tokenising it.
        """
        wanted = sorted({int(row) for row in rows})
        if not wanted:
            return {}
        if self._plain_up_to(wanted[-1] + 2):
            return {row: row + 2 for row in wanted}
        found, data_row, targets = {}, -2, set(wanted)
        for start, _ in self._records():
            data_row += 1  # the first record is the header (-1)
            if data_row in targets:
                found[data_row] = start
                if data_row >= wanted[-1]:
                    break
        return {row: found.get(row, row + 2) for row in wanted}

    def _plain_up_to(self, lines: int) -> bool:
        """True if the first ``lines`` lines hold no quote character and no blank line."""
        if not self._ascii_compatible:
            return False
        quote = str(self.read_args.get("quotechar", '"')).encode(self._encoding)
        blank = re.compile(rb"(?:^|\n)[ \t\r]*\n")
        seen, carry = 0, b""
        with self._open() as handle:
            while seen < lines and (block := handle.read(1 << 20)):
                block = carry + block
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    carry = block
                    continue
                body, carry = block[:cut], block[cut:]
                if quote in body or blank.search(body):
                    return False
                seen += body.count(b"\n")
            if seen < lines and carry:
                return quote not in carry
        return True

    def first_long_record(self, max_fields: int) -> tuple[int, int] | None:
        """(line, field count) of the first record with more than ``max_fields`` fields, if any."""
        for start, fields in self._records():
            if len(fields) > max_fields:
                return start, len(fields)
        return None

    def locate_bad_bytes(self) -> str:
        """'line L, column C (byte 0xNN)' of the first byte the file's encoding cannot decode."""
        encoding = self._encoding
        if not self._ascii_compatible:
            return f"somewhere in the file (encoding {encoding!r})"
        with self._open() as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as error:
                    column = len(raw[:error.start].decode(encoding, errors="replace")) + 1
                    return f"line {number}, column {column} (byte 0x{raw[error.start]:02x})"
        return f"an unknown position (encoding {encoding!r})"


class _Spliced(io.RawIOBase):
    """A binary stream that reads ``prefix`` first, then the rest of ``handle``."""

    def __init__(self, prefix: bytes, handle: Any) -> None:
        self._prefix, self._handle = prefix, handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            size = min(len(buffer), len(self._prefix))
            buffer[:size], self._prefix = self._prefix[:size], self._prefix[size:]
            return size
        data = self._handle.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


_LINE_END = re.compile(rb"\r\n|\n|\r")
_BLANK_LINES = re.compile(rb"(?:[ \t]*(?:\r\n|\n|\r))*")


def _with_extra_header_field(handle: Any, extra: bytes) -> io.BufferedReader:
    """``handle`` with ``extra`` (separator + names) appended to its header line (any line ending)."""
    buffer = b""
    while True:
        block = handle.read(1 << 16)
        buffer += block
        start = _BLANK_LINES.match(buffer).end()
        end = _LINE_END.search(buffer, start)
        # a '\r' at the end of what was read may be the first half of '\r\n': read on
        if not block or (end is not None and end.end() < len(buffer)):
            break
    cut = end.start() if end is not None else len(buffer)
    return io.BufferedReader(_Spliced(buffer[:cut] + extra + buffer[cut:], handle))


class CSVChunkSourceDataset(AbstractDataset[Any, CSVChunkSource]):
    """Catalog entry for a raw CSV that is read lazily in chunks; it can never be written (raw data stays as is).

    Example::

        raw_panel:
          type: ts_kedro.datasets.CSVChunkSourceDataset
          filepath: data/01_raw/m4_hourly_sample.csv
    """

    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._storage_options = {**(credentials or {}), **(fs_args or {})}
        self._fs = fsspec.filesystem(protocol, **self._storage_options)
        self._filepath = PurePosixPath(path)
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol, "load_args": self._load_args}

    def load(self) -> CSVChunkSource:
        path = get_filepath_str(self._filepath, self._protocol)
        if not self._fs.exists(path):
            raise DatasetError(f"raw CSV {path} does not exist: check `filepath` of this catalog entry")
        return CSVChunkSource(path if self._protocol == "file" else f"{self._protocol}://{path}",
                              dict(self._load_args), dict(self._storage_options))

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._filepath} is a raw source and is never written by the pipeline")

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))
