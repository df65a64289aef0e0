"""Retention: an archived batch file goes only when the history store holds its rows; the registry keeps the
champion, every rollback target and every alias, and deletes nothing unless asked to."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from ts_kedro.datasets import DuckDBHistoryDataset
from ts_kedro.pipelines.ingestion.nodes import finish_ingestion_report, plan_retention
from ts_kedro.pipelines.ingestion.retention import (
    STAMP_FORMAT,
    ModelRegistryRetentionDataset,
    RawBatchRetentionDataset,
    RetentionConfigError,
    expired_stamps,
    plan_version_retention,
    retention_policy,
)
from ts_kedro.registry import registry

NOW = datetime.now(timezone.utc)


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime(STAMP_FORMAT)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def layout(tmp_path):
    """Six archive stamps (one file each, the two oldest ones with a second file), a store that records the rows
    of all files but one old one, four quarantine stamps, and a folder that is not a stamp."""
    archive, quarantine = tmp_path / "archive", tmp_path / "quarantine"
    stamps = [stamp(d) for d in (60, 50, 40, 30, 20, 10)]
    files = {}
    for i, name in enumerate(stamps):
        files[name] = [write(archive / name / f"day{i}.csv", f"series_id,timestamp,value\nH1,2020-01-0{i + 1},{i}\n".encode())]
    files[stamps[0]].append(write(archive / stamps[0] / "never_stored.csv", b"series_id,timestamp,value\nH9,x,1\n"))
    files[stamps[1]].append(write(archive / stamps[1] / "notes.txt", b"operator note"))
    write(archive / "moves.jsonl", b"{}\n")
    write(archive / "manual_backup" / "old.csv", b"kept: not a stamp folder")
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    frame = pd.DataFrame({"series_id": ["H1"], "timestamp": pd.to_datetime(["2020-01-01"]), "value": [0.0]})
    frame.attrs["files"] = [{"file": p.name, "sha256": sha256(p.read_bytes())}
                            for name in stamps for p in files[name] if p.name.startswith("day")]
    store.save(frame)
    for days in (40, 30, 20, 10):
        write(quarantine / stamp(days) / "bad.csv", b"x")
        write(quarantine / stamp(days) / "bad.report.json", b"{}")
    dataset = RawBatchRetentionDataset(str(archive), str(quarantine), str(tmp_path / "history.duckdb"),
                                       str(tmp_path / "retention_log.jsonl"))
    return {"archive": archive, "quarantine": quarantine, "stamps": stamps, "files": files, "dataset": dataset}


def test_old_archived_files_go_only_when_the_store_records_their_bytes(layout):
    archive, stamps, files, dataset = layout["archive"], layout["stamps"], layout["files"], layout["dataset"]
    dataset.save({"archive": {"keep_last": 3, "max_age_days": None}, "quarantine": {"keep_last": None}})
    result = dataset.load()
    removed = sorted(Path(r["file"]).name for r in result["archive_files_removed"])
    assert removed == ["day0.csv", "day1.csv", "day2.csv"]  # the three oldest stamps' stored files
    kept = {Path(k["file"]).name: k["why"] for k in result["archive_files_kept"]}
    assert set(kept) == {"never_stored.csv", "notes.txt"} and "not recorded in the history store" in kept["never_stored.csv"]
    assert files[stamps[0]][1].exists() and files[stamps[1]][1].exists()
    assert not (archive / stamps[2]).exists()  # emptied stamp folders are removed
    assert all(p.exists() for name in stamps[3:] for p in files[name])  # the newest three untouched
    assert (archive / "moves.jsonl").exists() and (archive / "manual_backup" / "old.csv").exists()
    assert len(list(layout["quarantine"].iterdir())) == 4  # keep_last null: all quarantine kept


def test_a_file_changed_after_it_was_stored_is_kept(layout):
    path = layout["files"][layout["stamps"][0]][0]
    path.write_bytes(path.read_bytes() + b"H1,2020-01-09,5\n")  # new bytes: this sha256 is not in the store
    layout["dataset"].save({"archive": {"keep_last": 5}, "quarantine": {}})
    assert path.exists()
    assert [Path(k["file"]).name for k in layout["dataset"].load()["archive_files_kept"]] == ["day0.csv",
                                                                                              "never_stored.csv"]


def test_without_a_history_store_nothing_is_deleted(layout, tmp_path):
    dataset = RawBatchRetentionDataset(str(layout["archive"]), str(layout["quarantine"]),
                                       str(tmp_path / "missing.duckdb"), str(tmp_path / "log.jsonl"))
    dataset.save({"archive": {"keep_last": 0}, "quarantine": {}})
    assert dataset.load()["archive_files_removed"] == []
    assert all(p.exists() for files in layout["files"].values() for p in files)


def test_quarantine_folders_go_by_count_and_age(layout):
    layout["dataset"].save({"archive": {}, "quarantine": {"keep_last": 1, "max_age_days": 25}})
    left = sorted(p.name for p in layout["quarantine"].iterdir())
    assert left == [stamp(20), stamp(10)]  # 40 and 30 days old: beyond keep_last 1 and older than 25 days
    removed = layout["dataset"].load()["quarantine_folders_removed"]
    assert len(removed) == 2 and all(len(r["files"]) == 2 for r in removed)


def test_expired_stamps_rules():
    names = [stamp(d) for d in (3, 2, 1)] + ["not_a_stamp"]
    assert expired_stamps(names, None, None, NOW) == []
    assert expired_stamps(names, 1, None, NOW) == names[:2]
    assert expired_stamps(names, 0, 1.5, NOW) == names[:2]
    assert expired_stamps(names, 2, 0, NOW) == names[:1]


def test_policy_defaults_and_bad_values(project_root):
    import yaml

    params = yaml.safe_load((project_root / "conf/base/parameters_ingestion.yml").read_text())["ingestion"]
    raw, models = plan_retention([], params)
    assert raw["archive"]["keep_last"] == 30 and raw["quarantine"]["keep_last"] == 30
    assert models["keep_last"] is None and models["delete"] is False  # the registry is off by default
    with pytest.raises(RetentionConfigError, match="archive.keep_last"):
        retention_policy({"archive": {"keep_last": -1}})
    with pytest.raises(RetentionConfigError, match="delete"):
        retention_policy({"models": {"keep_last": 3, "delete": "yes", "registered_model_name": "m"}})
    with pytest.raises(RetentionConfigError, match="unknown"):
        retention_policy({"archives": {}})


def test_the_ingestion_report_names_what_retention_removed():
    report = finish_ingestion_report(
        {"n_batches": 1}, {"archive_files_removed": [{"file": "a/day0.csv", "bytes": 3}], "bytes_removed": 3,
                           "quarantine_folders_removed": [{"folder": "q/x", "files": []}]},
        {"status": "dry_run", "deleted": [], "would_delete": [2]})
    assert report["n_batches"] == 1 and report["retention"]["archive_files_removed"] == ["a/day0.csv"]
    assert report["retention"]["quarantine_folders_removed"] == ["q/x"]
    assert report["retention"]["model_versions"]["would_delete"] == [2]


# -- registry -------------------------------------------------------------------------------------------------

def test_plan_keeps_aliases_the_rollback_stack_and_the_last_holder_of_each_record():
    plan = plan_version_retention(list(range(1, 9)), {"champion": 3, "challenger": 6}, [1, 3],
                                  {1: {1, 2}, 2: {9}, 3: {2, 3}, 5: {3, 4}}, keep_last=2)
    assert plan["delete"] == [4]  # 2 and 5 are the only holders of records 9 and 4
    assert plan["keep"]["5"] == ["last holder of promotion record 4"]
    assert plan["keep"]["1"] == ["rollback stack"] and "alias champion" in plan["keep"]["3"]
    assert plan["keep"]["2"] == ["last holder of promotion record 9"]


def test_registry_retention_is_a_dry_run_unless_asked_and_rollback_still_works(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name, history = "retention_test", tmp_path / "promotion_history.jsonl"
    client = MlflowClient(uri, uri)
    client.create_registered_model(name)
    for _ in range(8):
        client.create_model_version(name, source=(tmp_path / "unused_model").as_uri())

    def promote(version, champion_score, challenger_score):
        return registry.promote_if_better(name, version, champion_score, challenger_score, 0.02, metric="smape",
                                          history_path=history, tracking_uri=uri)

    assert promote(1, None, None)["promoted"]
    assert promote(3, 10.0, 9.0)["promoted"]
    assert promote(5, 9.0, 8.0)["promoted"]
    registry.rollback(name, history_path=history, tracking_uri=uri)  # champion back to 3; the stack is [1, 3]
    assert not promote(6, 9.0, 9.5)["promoted"]  # 6 becomes the challenger
    dataset = ModelRegistryRetentionDataset(str(tmp_path / "log.jsonl"), tracking_uri=uri)
    policy = {"keep_last": 2, "delete": False, "registered_model_name": name}

    dataset.save(policy)
    result = dataset.load()
    assert result["status"] == "dry_run" and result["would_delete"] == [2, 4, 5] and result["deleted"] == []
    assert len(client.search_model_versions(f"name = '{name}'")) == 8  # nothing deleted by default

    dataset.save({**policy, "delete": True})
    assert dataset.load()["deleted"] == [2, 4, 5]
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'")) == [1, 3, 6, 7, 8]
    assert registry.get_alias_version(name, "champion", uri) == 3
    assert registry.rollback(name, history_path=history, tracking_uri=uri)["champion_version_after"] == 1

    dataset.save({"keep_last": None, "delete": True, "registered_model_name": name})  # off: nothing queried
    assert dataset.load()["status"] == "off"
    dataset.save({**policy, "registered_model_name": "no_such_model"})
    assert dataset.load()["status"] == "no_model"
