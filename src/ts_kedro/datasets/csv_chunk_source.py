"""A read-only Kedro dataset that hands a node a lazy CSV source to read in bounded chunks."""
from __future__ import annotations

import logging
from collections.abc import Iterator
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

    def chunks(self, chunk_size: int, **read_args: Any) -> Iterator[pd.DataFrame]:
        """Yield the data rows in chunks of at most ``chunk_size`` rows, indexed by data-row number (0-based)."""
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        with self._open() as handle:
            reader = pd.read_csv(handle, chunksize=int(chunk_size), **{**self.read_args, **read_args})
            with reader:
                yield from reader


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
