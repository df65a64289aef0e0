"""The local Evidently workspace as a Kedro dataset: saving a run's snapshots adds them to the workspace.

Why a dataset: adding to the workspace writes outside the run's outputs (a folder ``evidently ui`` reads across
runs), and nodes stay pure (``docs/architecture.md``). It belongs to the monitoring pipeline, the only place
that uses Evidently.

``save({name: snapshot dict})`` adds each snapshot (as produced by ``Snapshot.dump_dict()``, tags included)
to the project ``project`` of the workspace folder ``path``, creating the project and its dashboard
(drift share over runs, per series and pooled) on first use, then writes the record of this save
``{workspace, project_id, snapshot_ids: {name: id}, retained_runs, deleted_snapshot_ids}`` to ``filepath``.
``load()`` returns that record; the snapshots themselves are read with ``evidently ui --workspace <path>``.

Retention: a run's per-series drift snapshot measured 1.1 MB for 12 series (about 0.09 MB per series, so some
38 MB for 414 by extrapolation; docs/benchmarks.md, Day-N replay finding 7), and every Day-N cycle adds one, so
an unbounded workspace grows without limit. With
``keep_last: N`` the workspace keeps the snapshots of the newest N saves of this dataset and deletes older
ones; ``null`` keeps all. Only snapshots this dataset added and recorded (``retained_runs``, oldest first) are
ever deleted: runs added by hand or by another project are never touched. A save killed part way leaves at
worst a snapshot that is kept for good or a record naming one already deleted (skipped on the next save);
the record is replaced atomically. Catalog entry::

    evidently_workspace_runs:
      type: ts_kedro.datasets.evidently_workspace.EvidentlyWorkspaceDataset
      path: data/08_reporting/evidently_workspace
      project: ts_kedro drift monitoring
      filepath: data/08_reporting/evidently_workspace_runs.json
      keep_last: 100
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
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
        keep_last: snapshots of the newest ``keep_last`` saves are kept, older ones this dataset recorded are
            deleted; ``None`` keeps all.
        metadata: free-form (kedro-viz layer).
    """

    def __init__(self, path: str, project: str, filepath: str,
                 description: str = "ts_kedro Day-N drift monitoring", keep_last: int | None = None,
                 metadata: dict[str, Any] | None = None):
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise DatasetError(f"{type(self).__name__}: keep_last must be null or an integer >= 1, got {keep_last!r} "
                               "(evidently_workspace_runs in conf/*/catalog_monitoring.yml)")
        self._keep_last = keep_last
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
        retained = self._recorded_runs(str(project.id))
        retained.append({"saved_at": datetime.now(timezone.utc).isoformat(), "snapshot_ids": snapshot_ids})
        expired = retained[:-self._keep_last] if self._keep_last is not None else []
        retained = retained[len(expired):]
        deleted = self._delete(workspace, project.id, [i for run in expired for i in run["snapshot_ids"].values()])
        record = {"workspace": self._workspace, "project_id": str(project.id), "snapshot_ids": snapshot_ids,
                  "keep_last": self._keep_last, "retained_runs": retained, "deleted_snapshot_ids": deleted}
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        partial = self._filepath.with_name(self._filepath.name + ".partial")
        partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(partial, self._filepath)
        logger.info("added %d snapshots to Evidently workspace %s (deleted %d older ones, keep_last=%s)",
                    len(snapshot_ids), self._workspace, len(deleted), self._keep_last)

    def _recorded_runs(self, project_id: str) -> list[dict[str, Any]]:
        """The saves this dataset recorded for ``project_id``, oldest first (a record of before retention, which
        named only its last save, counts as one save)."""
        if not self._filepath.exists():
            return []
        try:
            record = json.loads(self._filepath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"the Evidently workspace record {self._filepath} is not valid JSON ({exc}); move it "
                               "aside to start a new record (its snapshots are then kept for good)") from exc
        if record.get("project_id") != project_id:
            return []
        if "retained_runs" in record:
            return list(record["retained_runs"])
        return [{"saved_at": None, "snapshot_ids": record.get("snapshot_ids", {})}]

    @staticmethod
    def _delete(workspace, project_id, snapshot_ids: list[str]) -> list[str]:
        """Delete those of ``snapshot_ids`` still in the project; returns the ones deleted."""
        if not snapshot_ids:
            return []
        present = {str(i) for i in workspace.list_runs(project_id)}
        deleted = []
        for snapshot_id in snapshot_ids:
            if snapshot_id in present:
                workspace.delete_run(project_id, snapshot_id)
                deleted.append(snapshot_id)
        return deleted

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
        return {"path": self._workspace, "project": self._project, "filepath": str(self._filepath),
                "keep_last": self._keep_last}
