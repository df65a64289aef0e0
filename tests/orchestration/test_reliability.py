"""What killed cycles leave behind (issue 13, item 12): RUNNING Prefect runs and intermediate folders,
cleaned up at the start of the next cycle; and the registry repair the cycle runs first (item 11)."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from ts_kedro.orchestration import flows

from .conftest import stub_datasets


def test_old_intermediate_folders_are_removed_and_recent_ones_kept(tmp_path):
    root = tmp_path / "_prefect"
    old, recent = root / "2026-11-30T01.00.00.000Z", root / "2026-12-02T09.00.00.000Z"
    for folder in (old, recent):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x.pkl").write_bytes(b"x")
    past = time.time() - 7 * 3600
    for path in (old, old / "sub", old / "sub" / "x.pkl"):
        os.utime(path, (past, past))
    assert flows.remove_old_intermediates(root, timedelta(hours=6)) == [old.name]
    assert not old.exists() and (recent / "sub" / "x.pkl").exists()
    assert flows.remove_old_intermediates(tmp_path / "missing", timedelta(hours=6)) == []


def test_stale_after_hours_is_validated(monkeypatch):
    monkeypatch.setenv(flows.STALE_AFTER_HOURS_ENV, "0")
    with pytest.raises(ValueError, match="must be a number of hours > 0"):
        flows.stale_after()
    monkeypatch.setenv(flows.STALE_AFTER_HOURS_ENV, "1.5")
    assert flows.stale_after() == timedelta(hours=1.5)


def test_runs_left_running_by_killed_cycles_are_marked_crashed(prefect_api):
    """On a real Prefect server: old RUNNING runs (and their RUNNING task runs) become Crashed; the
    current run, a recent run of another process and finished runs are left alone."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    @flow(name=flows.CYCLE_FLOW_NAME)
    def cycle_stub():
        return None

    @flow(name=flows.PIPELINE_FLOW_NAME)
    def pipeline_stub():
        return None

    @task(name="kedro-task-group")
    def group_stub():
        return None

    with get_client(sync_client=True) as client:
        killed_cycle = client.create_flow_run(cycle_stub, state=Running())
        killed_pipeline = client.create_flow_run(pipeline_stub, state=Running())
        killed_task = client.create_task_run(group_stub, flow_run_id=killed_pipeline.id, dynamic_key="0", state=Running())
        finished = client.create_flow_run(cycle_stub, state=Running())
        client.set_flow_run_state(finished.id, Completed(), force=True)
        current = client.create_flow_run(cycle_stub, state=Running())
        # "now" is 2 h ahead: every run above started long ago, except a run that starts in the future
        crashed = flows.crash_stale_runs(client, str(current.id), None, timedelta(hours=1),
                                         now=datetime.now(timezone.utc) + timedelta(hours=2))
        assert set(crashed) >= {str(killed_cycle.id), str(killed_pipeline.id)}
        assert str(current.id) not in crashed and str(finished.id) not in crashed
        assert client.read_flow_run(killed_cycle.id).state.type.value == "CRASHED"
        assert client.read_flow_run(killed_pipeline.id).state.type.value == "CRASHED"
        assert client.read_task_run(killed_task.id).state.type.value == "CRASHED"
        assert client.read_flow_run(current.id).state.type.value == "RUNNING"
        assert client.read_flow_run(finished.id).state.type.value == "COMPLETED"

        recent = client.create_flow_run(cycle_stub, state=Running())  # another live process's run
        assert str(recent.id) not in flows.crash_stale_runs(client, str(current.id), None, timedelta(hours=1))
        assert client.read_flow_run(recent.id).state.type.value == "RUNNING"


# -- item 13: a cycle with nothing new does nothing and says so ------------------------------------------
def test_nothing_new_only_when_the_drop_folder_has_no_file(tmp_path):
    incoming = tmp_path / "incoming"
    assert "nothing new" in flows.nothing_new(incoming)  # folder not even created
    incoming.mkdir()
    (incoming / ".gitkeep").write_text("")
    assert "nothing new" in flows.nothing_new(incoming)
    (incoming / "notes.txt").write_text("x")  # reported by the ingestion: the cycle must run
    assert flows.nothing_new(incoming) is None
    assert flows.nothing_new(None) is None


def test_a_day_n_cycle_with_an_empty_drop_folder_runs_no_pipeline(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ts_kedro.orchestration.config import CycleConfig

    config = SimpleNamespace(cycle=CycleConfig(registered_model_name="m"), alerts=None)
    monkeypatch.setattr(flows, "resolve_project_path", lambda path: tmp_path)
    monkeypatch.setattr(flows, "load_orchestration_config", lambda root, env: config)
    monkeypatch.setattr(flows, "clean_up_after_killed_runs", lambda root, env: {})
    monkeypatch.setattr(flows, "_configure_tracking", lambda root, env: tmp_path / "incoming")
    monkeypatch.setattr(flows, "choose_cycle_pipeline", lambda cycle: (flows.DAY_N, "day_n"))
    monkeypatch.setattr(flows, "_run_step", lambda *a: pytest.fail("a pipeline ran although nothing was new"))
    result = flows.ts_kedro_cycle.fn(project_path=str(tmp_path))
    assert result["skipped"] is True and result["steps"] == [] and "nothing new" in result["reason"]


def test_not_comparable_says_how_much_of_the_window_is_new():
    """36 new hours of a 48-hour window: the reason names 36 of 48 (it said 'no new data' before)."""
    from types import SimpleNamespace

    import pandas as pd

    from ts_kedro.pipelines.model_selection import nodes

    cutoff = pd.Timestamp("2024-01-10 00:00")
    stamps = pd.date_range(cutoff + pd.Timedelta(hours=1), periods=48, freq="h")
    backtests = pd.DataFrame({"series_id": "S1", "window": 1, "cutoff": cutoff, "timestamp": stamps,
                              "model": "naive", "mean": 1.0, "actual": 1.0})
    champion = SimpleNamespace(metadata={"data_window_end": str(cutoff + pd.Timedelta(hours=12))}, series_ids=["S1"])
    selection = {"primary_metric": "smape", "selected_score": 1.0, "choice": {"S1": "naive"}}
    result = nodes.compare_with_champion(backtests, selection, pd.DataFrame(), champion, {"levels": []})
    assert result["comparable"] is False
    assert "only 36 of the recent window's 48 steps per series are newer" in result["reason"]
    assert "12 more step(s)" in result["reason"] and "out of sample" in result["reason"]
    assert (result["new_points"], result["window_points"]) == (36, 48)


def test_a_day_n_cycle_whose_batches_add_no_row_stops_after_ingestion(tmp_path, monkeypatch):
    """A re-sent file (only rows the history has): the Day-N step runs, then no retrain and no inference."""
    from types import SimpleNamespace

    from ts_kedro.orchestration.config import CycleConfig

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "day3.csv").write_text("series_id,timestamp,value\n")
    config = SimpleNamespace(cycle=CycleConfig(registered_model_name="m"), alerts=None)
    monkeypatch.setattr(flows, "resolve_project_path", lambda path: tmp_path)
    monkeypatch.setattr(flows, "load_orchestration_config", lambda root, env: config)
    monkeypatch.setattr(flows, "clean_up_after_killed_runs", lambda root, env: {})
    monkeypatch.setattr(flows, "_configure_tracking", lambda root, env: incoming)
    monkeypatch.setattr(flows, "choose_cycle_pipeline", lambda cycle: (flows.DAY_N, "day_n"))
    monkeypatch.setattr(flows.prefect_runtime.flow_run, "id", "run-1", raising=False)
    ran = []
    monkeypatch.setattr(flows, "_run_step", lambda name, *a: ran.append(name) or {"run_id": name, "tasks": []})
    reports = {"ingestion_report": {"n_batches": 1, "rows_accepted": 0, "duplicate_rows_ignored": 48,
                                    "n_quarantined": 0, "n_ignored": 0},
               "drift_summary": {"drift": True, "reasons": ["standing verdict"]}}
    monkeypatch.setattr(flows, "_load_dataset", stub_datasets(reports))
    # the registry: one version (Day 0), no drift refit yet; tagging the retrain's version is recorded
    monkeypatch.setattr(flows, "newest_fit", lambda name: flows.NewestFit(1, datetime.now(timezone.utc)))
    monkeypatch.setattr(flows, "tag_refit_triggers", lambda name, previous, triggers: previous + 1)
    result = flows.ts_kedro_cycle.fn(project_path=str(tmp_path))
    assert ran == ["day_n"] and result["skipped_after_ingestion"] is True
    assert "48 duplicate rows" in result["reason"] and [s["pipeline"] for s in result["steps"]] == ["day_n"]
    # with one accepted row the cycle goes on (drift: retrain, then inference)
    ran.clear()
    reports["ingestion_report"] = {**reports["ingestion_report"], "rows_accepted": 1}
    result = flows.ts_kedro_cycle.fn(project_path=str(tmp_path))
    assert ran == ["day_n", "retrain", "inference"] and "skipped_after_ingestion" not in result


def test_nothing_accepted_reads_the_ingestion_report():
    assert flows.nothing_accepted(None) is None
    assert flows.nothing_accepted({"rows_accepted": 3}) is None
    assert "added no row" in flows.nothing_accepted({"rows_accepted": 0, "n_batches": 2, "n_quarantined": 2})
