"""Read-only dataset over every saved drift summary, so reporting can draw drift over time (empty before Day N)."""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class DriftSummaryHistoryDataset(AbstractDataset[None, list[dict[str, Any]]]):
    """Loads all versions of monitoring's ``drift_summary`` JSON as a list of ``{"version", **summary}``, oldest first.

    Works with both layouts: versioned (``<filepath>/<version>/<name>``, one per Day-N run) and a plain file (one
    entry). A missing path loads ``[]``: no Day-N run has happened yet, which is a normal state.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> list[dict[str, Any]]:
        path = Path(self._filepath)
        if path.is_file():
            files = [("unversioned", path)]
        elif path.is_dir():
            files = sorted((child.name, child / path.name) for child in path.iterdir() if (child / path.name).is_file())
        else:
            return []
        history = []
        for version, file in files:
            try:
                summary = json.loads(file.read_text())
            except json.JSONDecodeError as exc:
                raise DatasetError(f"drift summary {file} is not valid JSON ({exc}); delete or repair that version") from exc
            history.append({"version": version, **summary})
        return history

    def save(self, data: None) -> None:
        raise DatasetError("DriftSummaryHistoryDataset is read-only: monitoring writes drift_summary")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return True  # an absent history is the empty history
