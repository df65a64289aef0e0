"""The monitoring pipeline as Kedro runs it: pure nodes, and the workspace and alert delivery as datasets."""
from __future__ import annotations

import json

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset

from ts_kedro.datasets.alert_delivery import AlertDeliveryDataset
from ts_kedro.datasets.evidently_workspace import EvidentlyWorkspaceDataset
from ts_kedro.pipelines.monitoring import create_pipeline

from .conftest import PANEL


def _inputs(history, params) -> dict:
    last = history.groupby("series_id").tail(48)
    earlier_forecasts = last[["series_id", "timestamp"]].assign(
        mean=last["value"].to_numpy(), champion_metric="smape", champion_backtest_score=5.0)
    return {
        "history_primary_panel": MemoryDataset(history),
        "champion_forecast_versions": MemoryDataset({"2026-11-27T10.00.00.000Z/champion_forecasts":
                                                     lambda: earlier_forecasts}),
        "ingestion_report": MemoryDataset({"n_quarantined": 1}),
        "params:monitoring": MemoryDataset(params),
        "params:panel": MemoryDataset(PANEL),
    }


def test_nodes_write_nothing_and_send_nothing(tmp_path, monkeypatch, shifted_history, monitoring_params):
    """With every output in memory, a run leaves no file behind and never reaches delivery or the workspace."""
    import evidently.ui.workspace

    import ts_kedro.orchestration.alerts

    def forbidden(*args, **kwargs):
        raise AssertionError("a monitoring node delivered an alert or opened the Evidently workspace")

    monkeypatch.setattr(ts_kedro.orchestration.alerts, "send_alert", forbidden)
    monkeypatch.setattr(evidently.ui.workspace, "Workspace", forbidden)
    monkeypatch.chdir(tmp_path)
    catalog = DataCatalog(_inputs(shifted_history, monitoring_params))
    outputs = {name: MemoryDataset() for name in create_pipeline().all_outputs()}
    for name, dataset in outputs.items():
        catalog[name] = dataset

    SequentialRunner().run(create_pipeline(), catalog)

    assert list(tmp_path.iterdir()) == []
    # (intermediate memory datasets are released by the runner; the free outputs are kept)
    assert [a["rule"] for a in outputs["alert_deliveries"].load()] == ["data_drift", "quarantined_batches"]
    tagged = outputs["evidently_workspace_runs"].load()
    assert {name: snapshot["tags"] for name, snapshot in tagged.items()} == {
        "panel_drift": ["drift", "panel_drift"], "series_drift": ["drift", "series_drift"]}


def test_monitoring_pipeline_slice_run(tmp_path, shifted_history, monitoring_params):
    catalog = DataCatalog({
        **_inputs(shifted_history, monitoring_params),
        **{name: JSONDataset(filepath=str(tmp_path / f"{name}.json"))
           for name in ("drift_summary", "alerts", "drift_snapshots")},
        "evidently_workspace_runs": EvidentlyWorkspaceDataset(
            path=str(tmp_path / "workspace"), project="test monitoring",
            filepath=str(tmp_path / "evidently_workspace_runs.json")),
        "alert_deliveries": AlertDeliveryDataset(
            filepath=str(tmp_path / "alert_deliveries.json"),
            channels={"log_path": str(tmp_path / "alerts.jsonl"), "notification_block": None}),
    })
    SequentialRunner().run(create_pipeline(), catalog)

    summary = catalog.load("drift_summary")
    assert summary["drift"] is True and summary["performance_ratio"] == 0.0  # perfect earlier forecasts
    assert [a["rule"] for a in catalog.load("alerts")] == ["data_drift", "quarantined_batches"]
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [r["alert"]["rule"] for r in logged] == ["data_drift", "quarantined_batches"]
    deliveries = catalog.load("alert_deliveries")
    assert deliveries == logged and {d["delivery"]["status"] for d in deliveries} == {"skipped"}

    runs = catalog.load("evidently_workspace_runs")
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(tmp_path / "workspace"))
    assert sorted(map(str, workspace.list_runs(runs["project_id"]))) == sorted(runs["snapshot_ids"].values())
    stored = workspace.get_run(runs["project_id"], runs["snapshot_ids"]["series_drift"])
    assert {"series_drift", "drift"} <= set(stored.tags)
