"""The monitoring side-effect datasets: alert delivery (JSONL log, a real loopback webhook behind a real Prefect
server) and the Evidently workspace (a real workspace folder in tmp_path)."""
from __future__ import annotations

import json

import pytest
from kedro.io import DatasetError

from ts_kedro.datasets.alert_delivery import AlertDeliveryDataset
from ts_kedro.datasets.evidently_workspace import EvidentlyWorkspaceDataset
from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.verdict import snapshots_for_workspace
from ts_kedro.pipelines.monitoring.windows import build_drift_windows
from tests.prefect_server import free_port
from tests.orchestration.test_alerts import webhook_receiver  # noqa: F401 - fixture

from .conftest import PANEL

# Synthetic alerts in the form evaluate_alert_rules produces.
ALERTS = [
    {"rule": "data_drift", "severity": "warning", "fact": "drift_share", "value": 0.75, "op": ">", "threshold": 0.5,
     "message": "data drift: share of drifted series 0.75 > 0.5", "raised_at": "2026-11-27T10:00:00+00:00"},
    {"rule": "quarantined_batches", "severity": "warning", "fact": "quarantined_batches", "value": 1.0, "op": ">",
     "threshold": 0.0, "message": "1 incoming batch(es) quarantined", "raised_at": "2026-11-27T10:00:00+00:00"},
]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- alert delivery --------------------------------------------------------------------------------------------

def test_delivery_logs_every_alert_and_load_returns_the_last_saves_records(tmp_path):
    log = tmp_path / "alerts.jsonl"
    dataset = AlertDeliveryDataset(filepath=str(tmp_path / "deliveries.json"),
                                   channels={"log_path": str(log), "notification_block": None})
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="no alert delivery recorded yet"):
        dataset.load()

    dataset.save(ALERTS)
    records = dataset.load()
    assert [r["alert"] for r in records] == ALERTS
    assert [r["subject"] for r in records] == ["[ts_kedro] WARNING data_drift", "[ts_kedro] WARNING quarantined_batches"]
    assert {r["delivery"]["status"] for r in records} == {"skipped"}  # no block configured: log only
    assert _lines(log) == records

    dataset.save(ALERTS[:1])
    assert [r["alert"]["rule"] for r in dataset.load()] == ["data_drift"]  # the record is this save's
    assert len(_lines(log)) == 3  # the log is appended, never rewritten

    dataset.save([])
    assert dataset.load() == [] and len(_lines(log)) == 3


def test_delivery_refuses_a_misspelt_channel_and_a_malformed_alert_before_sending(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown channel key\(s\) \['webhook'\]"):
        AlertDeliveryDataset(filepath=str(tmp_path / "d.json"), channels={"webhook": "http://127.0.0.1:9/"})
    dataset = AlertDeliveryDataset(filepath=str(tmp_path / "d.json"),
                                   channels={"log_path": str(tmp_path / "alerts.jsonl"), "notification_block": None})
    with pytest.raises(DatasetError, match="non-empty dict"):
        dataset.save([ALERTS[0], {}])
    with pytest.raises(DatasetError, match="list of alerts"):
        dataset.save(ALERTS[0])
    assert list(tmp_path.iterdir()) == []  # nothing sent, nothing logged, nothing recorded


def test_describe_does_not_show_the_webhook_url(tmp_path):
    dataset = AlertDeliveryDataset(filepath=str(tmp_path / "d.json"),
                                   channels={"webhook_url": "https://hooks.example.invalid/secret-token"})
    assert "secret-token" not in repr(dataset) and "<set>" in repr(dataset)


@pytest.mark.slow
def test_delivery_posts_to_the_configured_webhook_and_records_failures(tmp_path, webhook_receiver, prefect_api):  # noqa: F811
    url, received = webhook_receiver
    log = tmp_path / "alerts.jsonl"
    dataset = AlertDeliveryDataset(filepath=str(tmp_path / "deliveries.json"), channels={
        "log_path": str(log), "notification_block": "monitoring-probe", "webhook_url": url, "timeout_seconds": 5})
    dataset.save(ALERTS)

    assert [json.loads(post["json"]["body"]) for post in received] == ALERTS
    assert [post["json"]["subject"] for post in received] == [
        "[ts_kedro] WARNING data_drift", "[ts_kedro] WARNING quarantined_batches"]
    assert [r["delivery"] for r in dataset.load()] == [
        {"status": "sent", "channel": "prefect-block:monitoring-probe", "error": None}] * 2

    dead = AlertDeliveryDataset(filepath=str(tmp_path / "dead.json"), channels={
        "log_path": str(log), "notification_block": "monitoring-dead",
        "webhook_url": f"http://127.0.0.1:{free_port()}/alerts", "timeout_seconds": 2})
    dead.save(ALERTS[:1])  # nothing listens there: recorded, not raised
    [record] = dead.load()
    assert record["delivery"]["status"] == "failed" and "ConnectError" in record["delivery"]["error"]
    assert [line["delivery"]["status"] for line in _lines(log)] == ["sent", "sent", "failed"]


def test_project_catalog_builds_both_delivery_datasets_from_the_shared_channels(project_root, monkeypatch):
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from ts_kedro.settings import CONFIG_LOADER_ARGS

    monkeypatch.setenv("TS_KEDRO_ALERT_WEBHOOK", "https://hooks.example.invalid/from-env")
    config = OmegaConfigLoader(conf_source=str(project_root / "conf"), **CONFIG_LOADER_ARGS)
    catalog = DataCatalog.from_config(config["catalog"])
    deliveries = [catalog.get(name) for name in ("alert_deliveries", "inference_alert_deliveries")]
    assert all(isinstance(d, AlertDeliveryDataset) for d in deliveries)
    assert deliveries[0]._channels == deliveries[1]._channels
    assert deliveries[0]._channels.webhook_url == "https://hooks.example.invalid/from-env"
    assert deliveries[0]._channels.log_path == "data/08_reporting/alerts.jsonl"
    assert isinstance(catalog.get("evidently_workspace_runs"), EvidentlyWorkspaceDataset)
    assert "_alert_channels" not in catalog
    assert not {"alert_delivery", "evidently_workspace"} & set(config["parameters"]["monitoring"])


# -- Evidently workspace ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drift_snapshots(shifted_history, monitoring_params):
    thresholds = calibrate_drift_thresholds(shifted_history, monitoring_params, PANEL)
    return detect_data_drift(*build_drift_windows(shifted_history, monitoring_params, PANEL), thresholds,
                             monitoring_params)[2]


def test_workspace_dataset_adds_each_save_to_one_project(tmp_path, drift_snapshots):
    from evidently.ui.workspace import Workspace

    def dataset():  # a new instance per run, as each kedro run builds its catalog afresh
        return EvidentlyWorkspaceDataset(path=str(tmp_path / "workspace"), project="drift probe",
                                         filepath=str(tmp_path / "runs.json"))

    with pytest.raises(DatasetError, match="no snapshots added"):
        dataset().load()
    dataset().save(snapshots_for_workspace(drift_snapshots, {"drift": True}))
    first = dataset().load()
    assert first["workspace"] == str(tmp_path / "workspace") and set(first["snapshot_ids"]) == {
        "panel_drift", "series_drift"}

    workspace = Workspace(str(tmp_path / "workspace"))
    [project] = workspace.search_project("drift probe")
    assert str(project.id) == first["project_id"]
    assert len(workspace.get_dashboard(project.id).panels) == 2  # created with the project
    stored = workspace.get_run(project.id, first["snapshot_ids"]["series_drift"])
    assert sorted(stored.tags) == ["drift", "series_drift"] and stored.name == "series_drift"

    dataset().save(snapshots_for_workspace(drift_snapshots, {"drift": False}))
    second = dataset().load()
    assert second["project_id"] == first["project_id"]  # found again, not created twice
    assert len(Workspace(str(tmp_path / "workspace")).search_project("drift probe")) == 1
    assert len(workspace.list_runs(project.id)) == 4
    assert "no_drift" in workspace.get_run(project.id, second["snapshot_ids"]["panel_drift"]).tags
    assert set(second["snapshot_ids"].values()).isdisjoint(first["snapshot_ids"].values())


def test_workspace_dataset_refuses_what_is_not_snapshots(tmp_path):
    dataset = EvidentlyWorkspaceDataset(path=str(tmp_path / "workspace"), project="p", filepath=str(tmp_path / "r.json"))
    with pytest.raises(DatasetError, match="name: snapshot dict"):
        dataset.save([{"name": "series_drift"}])
    assert not (tmp_path / "r.json").exists()


def test_workspace_retention_keeps_the_newest_saves_and_never_a_run_it_did_not_add(tmp_path, drift_snapshots):
    """keep_last=2 over four saves: the first two saves' snapshots go, a run added by hand stays, and a record
    written before retention existed (only the last save's ids) counts as one save."""
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    def dataset(keep_last=2):
        return EvidentlyWorkspaceDataset(path=str(tmp_path / "workspace"), project="drift probe",
                                         filepath=str(tmp_path / "runs.json"), keep_last=keep_last)

    tagged = snapshots_for_workspace(drift_snapshots, {"drift": False})
    dataset(keep_last=None).save(tagged)
    first = dataset().load()
    # the record as datasets before retention wrote it: the last save's ids only
    (tmp_path / "runs.json").write_text(json.dumps({k: first[k] for k in ("workspace", "project_id", "snapshot_ids")}))
    workspace = Workspace(str(tmp_path / "workspace"))
    by_hand = str(workspace.add_run(first["project_id"], Snapshot.load_dict(tagged["panel_drift"]),
                                    name="added by hand").id)

    dataset().save(tagged)
    second = dataset().load()
    assert second["deleted_snapshot_ids"] == [] and len(second["retained_runs"]) == 2
    dataset().save(tagged)
    third = dataset().load()
    assert sorted(third["deleted_snapshot_ids"]) == sorted(first["snapshot_ids"].values())
    dataset().save(tagged)
    fourth = dataset().load()
    assert sorted(fourth["deleted_snapshot_ids"]) == sorted(second["snapshot_ids"].values())

    left = {str(i) for i in workspace.list_runs(first["project_id"])}
    assert left == {by_hand, *third["snapshot_ids"].values(), *fourth["snapshot_ids"].values()}
    assert [run["snapshot_ids"] for run in fourth["retained_runs"]] == [third["snapshot_ids"], fourth["snapshot_ids"]]
    assert not list(tmp_path.glob("runs.json.partial"))


def test_workspace_retention_skips_a_recorded_snapshot_already_gone(tmp_path, drift_snapshots):
    """A save killed after deleting but before rewriting its record names deleted snapshots: the next save skips
    them instead of failing."""
    from evidently.ui.workspace import Workspace

    dataset = EvidentlyWorkspaceDataset(path=str(tmp_path / "workspace"), project="p",
                                        filepath=str(tmp_path / "runs.json"), keep_last=1)
    tagged = snapshots_for_workspace(drift_snapshots, {"drift": True})
    dataset.save(tagged)
    first = dataset.load()
    workspace = Workspace(str(tmp_path / "workspace"))
    workspace.delete_run(first["project_id"], first["snapshot_ids"]["series_drift"])
    dataset.save(tagged)
    assert dataset.load()["deleted_snapshot_ids"] == [first["snapshot_ids"]["panel_drift"]]
    assert len(workspace.list_runs(first["project_id"])) == 2


@pytest.mark.parametrize("keep_last", [0, -1, 2.5, True, "10"])
def test_workspace_refuses_a_bad_keep_last(tmp_path, keep_last):
    with pytest.raises(DatasetError, match="keep_last must be null or an integer >= 1"):
        EvidentlyWorkspaceDataset(path=str(tmp_path), project="p", filepath=str(tmp_path / "r.json"),
                                  keep_last=keep_last)


def test_project_catalog_bounds_the_workspace_and_logs_the_full_report_only_on_drift(project_root):
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from ts_kedro.settings import CONFIG_LOADER_ARGS

    config = OmegaConfigLoader(conf_source=str(project_root / "conf"), **CONFIG_LOADER_ARGS)
    catalog = DataCatalog.from_config(config["catalog"])
    assert catalog.get("evidently_workspace_runs")._keep_last >= 1
    # kedro-mlflow's MlflowArtifactDataset builds a subclass of the wrapped dataset that carries artifact_path
    assert not hasattr(catalog.get("drift_report"), "artifact_path")
    assert catalog.get("drift_report_artifact").artifact_path == "monitoring"
    assert config["catalog"]["drift_report_artifact"]["type"] == "kedro_mlflow.io.artifacts.MlflowArtifactDataset"
    assert config["parameters"]["monitoring"]["tracking"]["drift_report"] == "on_drift"
