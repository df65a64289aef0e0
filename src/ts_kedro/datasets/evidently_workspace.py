"""The local Evidently workspace as a Kedro dataset: saving a run's snapshots adds them to the workspace.

Why a dataset: adding to the workspace writes outside the run's outputs (a folder ``evidently ui`` reads across
runs), and nodes stay pure (``docs/architecture.md``). It belongs to the monitoring pipeline, the only place
that uses Evidently.

``save({name: snapshot dict})`` adds each snapshot (as produced by ``Snapshot.dump_dict()``, tags included)
to the project ``project`` of the workspace folder ``path``, creating the project and its dashboard
(drift share over runs, per series and pooled) on first use, then writes the record of this save
``{workspace, project_id, snapshot_ids: {name: id}}`` to ``filepath``. ``load()`` returns that record; the
snapshots themselves are read with ``evidently ui --workspace <path>``. Catalog entry::

    evidently_workspace_runs:
      type: ts_kedro.datasets.evidently_workspace.EvidentlyWorkspaceDataset
      path: data/08_reporting/evidently_workspace
      project: ts_kedro drift monitoring
      filepath: data/08_reporting/evidently_workspace_runs.json
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)


class EvidentlyWorkspaceDataset(AbstractDataset[dict[str, dict[str, Any]], dict[str, Any]]):
    """``save(snapshots)`` adds them to the Evidently workspace; ``load()`` returns the last save's record.

    Args:
        path: folder of the local Evidently workspace (created if absent). Named ``path`` so that Kedro
            resolves a relative one against the project root, like ``filepath``.
        project: name of the workspace project the snapshots go to (created with its dashboard if absent).
        filepath: JSON file holding the record of the last save.
        description: description of the project when it is created.
        metadata: free-form (kedro-viz layer).
    """

    def __init__(self, path: str, project: str, filepath: str,
                 description: str = "ts_kedro Day-N drift monitoring", metadata: dict[str, Any] | None = None):
        self._workspace = str(path)
        self._project = project
        self._filepath = Path(filepath)
        self._description = description
        self.metadata = metadata

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        from evidently.core.report import Snapshot

        if not isinstance(data, dict) or not all(isinstance(s, dict) for s in data.values()):
            raise DatasetError(f"{type(self).__name__} saves {{name: snapshot dict}}, got {type(data).__name__}")
        workspace, project = self._open_project()
        snapshot_ids = {}
        for name, dumped in sorted(data.items()):
            reference = workspace.add_run(project.id, Snapshot.load_dict(dumped), include_data=False, name=name)
            snapshot_ids[name] = str(reference.id)
        record = {"workspace": self._workspace, "project_id": str(project.id), "snapshot_ids": snapshot_ids}
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(record, indent=2), encoding="utf-8")
        logger.info("added %d snapshots to Evidently workspace %s", len(snapshot_ids), self._workspace)

    def load(self) -> dict[str, Any]:
        if not self._filepath.exists():
            raise DatasetError(f"no snapshots added to the Evidently workspace yet (no record at {self._filepath})")
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def _open_project(self):
        from evidently.sdk.models import PanelMetric
        from evidently.sdk.panels import line_plot_panel
        from evidently.ui.workspace import Workspace

        workspace = Workspace(self._workspace)
        found = workspace.search_project(self._project)
        if found:
            return workspace, found[0]
        project = workspace.create_project(self._project, description=self._description)
        project.dashboard.add_panel(line_plot_panel(
            title="Share of drifted columns (series x feature)",
            values=[PanelMetric(metric="DriftedColumnsCount", legend="share", tags=["series_drift"])]), tab="Drift")
        project.dashboard.add_panel(line_plot_panel(
            title="Pooled panel drift (share of drifted features)",
            values=[PanelMetric(metric="DriftedColumnsCount", legend="share", tags=["panel_drift"])]), tab="Drift")
        return workspace, project

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._workspace, "project": self._project, "filepath": str(self._filepath)}
