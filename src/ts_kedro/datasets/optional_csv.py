"""A CSV input that may be absent: ``future_covariates`` (the planned values of known-in-advance covariates).

Why: a panel without known-in-advance covariates has no such file, and ``kedro run`` must not need one; a panel
with them must get a clear error naming the covariate (``data_processing.schema.check_future_covariates``), not a
``DatasetError`` about a path. ``load()`` returns the file's rows with ``timestamp`` (or the configured column)
parsed, or an empty frame without columns when the file does not exist. Read-only: nothing writes user inputs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError


class OptionalCSVDataset(AbstractDataset[None, pd.DataFrame]):
    """Read-only CSV; an absent file loads as an empty frame (``frame.attrs["source"]`` names the path)."""

    def __init__(self, filepath: str, load_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        if not self._filepath.exists():
            frame = pd.DataFrame()
        else:
            try:
                frame = pd.read_csv(self._filepath, **self._load_args)
            except (ValueError, pd.errors.ParserError) as error:
                raise DatasetError(f"{self._filepath}: not a readable CSV ({error}); fix the file") from error
        frame.attrs["source"] = str(self._filepath)
        return frame

    def _save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath} is a user input; ts_kedro never writes it")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "load_args": self._load_args}
