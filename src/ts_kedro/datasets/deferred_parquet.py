"""A pandas Parquet dataset whose load can be deferred: the node receives a function that loads it.

Why: Day-N ingestion takes the Day-0 ``validated_panel`` only to seed the history store on its first run; every
later run would load the whole panel for nothing. In a bounded-memory ingestion run
(``python -m ts_kedro.orchestration partitioned --pipeline ingestion``) the entry is loaded with
``deferred: true`` (the runtime parameter ``defer_validated_panel``), and ``select_previous_history`` calls the
function only when the store is empty. Saving is unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from kedro.io.core import DatasetError
from kedro_datasets.pandas import ParquetDataset


class DeferrableParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` plus ``deferred`` (bool, or "true"/"false" from a runtime parameter): when true,
    ``load`` returns a zero-argument function that loads the frame."""

    # the parent's arguments spelled out: Kedro's catalog.to_config() rebuilds an entry from this signature
    def __init__(self, *, filepath: str, load_args: dict[str, Any] | None = None,
                 save_args: dict[str, Any] | None = None, version: Any = None,
                 credentials: dict[str, Any] | None = None, fs_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None, deferred: bool | str = False):
        super().__init__(filepath=filepath, load_args=load_args, save_args=save_args, version=version,
                         credentials=credentials, fs_args=fs_args, metadata=metadata)
        if isinstance(deferred, str):
            if deferred.strip().lower() not in ("true", "false"):
                raise DatasetError(f"{type(self).__name__}: deferred must be true or false, got {deferred!r}")
            deferred = deferred.strip().lower() == "true"
        self.deferred = bool(deferred)

    def load(self) -> pd.DataFrame | Callable[[], pd.DataFrame]:
        if self.deferred:
            return super().load
        return super().load()
