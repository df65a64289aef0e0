"""Issue 12, item 1: Day-N refits on drift, on a schedule (orchestration.cycle.retrain.every) or when forced."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pandas as pd
import pytest

from ts_kedro.orchestration import flows
from ts_kedro.orchestration.config import (
    CycleConfig,
    OrchestrationConfig,
    OrchestrationConfigError,
    RetrainConfig,
    load_orchestration_config,
    parse_duration,
)

from .conftest import REPO_ROOT, stub_datasets

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


# -- the setting -----------------------------------------------------------------------------------
def test_the_shipped_config_refits_on_growth_only_no_clock_schedule_and_no_force():
    retrain = load_orchestration_config(REPO_ROOT, "base").cycle.retrain
    assert retrain == RetrainConfig(every=None, force=False, after_growth=1.0) and retrain.interval is None


@pytest.mark.parametrize("text, expected", [("30D", timedelta(days=30)), ("12h", timedelta(hours=12)),
                                            ("90min", timedelta(minutes=90)), ("2W", timedelta(weeks=2)),
                                            ("1.5D", timedelta(hours=36)), ("3600s", timedelta(hours=1))])
def test_durations(text, expected):
    assert parse_duration(text, "k") == expected
    assert RetrainConfig(every=text).interval == expected


@pytest.mark.parametrize("bad", [30, "30", "0D", "30M", "month", "-1D", True, ""])
def test_a_bad_every_is_refused_naming_the_parameter(bad):
    with pytest.raises(OrchestrationConfigError, match=r"orchestration\.cycle\.retrain\.every must be null or a duration"):
        OrchestrationConfig.from_dict({"cycle": {"retrain": {"every": bad}}})


@pytest.mark.parametrize("bad", [0, -1, True, "1", float("inf"), float("nan")])
def test_a_bad_after_growth_is_refused_naming_the_parameter(bad):
    with pytest.raises(OrchestrationConfigError, match=r"orchestration\.cycle\.retrain\.after_growth must be null or a "
                                                       r"number > 0"):
        OrchestrationConfig.from_dict({"cycle": {"retrain": {"after_growth": bad}}})
    assert RetrainConfig(after_growth=0.5).after_growth == 0.5 and RetrainConfig(after_growth=2).after_growth == 2


def test_bad_retrain_blocks_are_refused():
    with pytest.raises(OrchestrationConfigError, match=r"unknown key\(s\) \['evry'\] in orchestration\.cycle\.retrain"):
        CycleConfig.from_dict({"retrain": {"evry": "30D"}})
    with pytest.raises(OrchestrationConfigError, match="retrain.force must be true or false"):
        CycleConfig.from_dict({"retrain": {"force": "yes"}})
    with pytest.raises(OrchestrationConfigError, match="orchestration.cycle.retrain must be a mapping"):
        CycleConfig.from_dict({"retrain": "30D"})
    assert CycleConfig.from_dict({"retrain": None}).retrain == RetrainConfig()


# -- the decision ----------------------------------------------------------------------------------
def test_no_drift_no_schedule_no_force_updates_the_champion():
    decision = flows.decide_retrain(False, [], now=NOW)
    assert decision["retrain"] is False and decision["triggers"] == []
    assert "no retrain: no drift, not forced, no schedule" in decision["reason"]


def test_drift_forced_and_schedule_are_each_a_reason_and_all_are_named():
    assert flows.decide_retrain(True, ["psi 0.4 > 0.2"], now=NOW)["triggers"] == ["drift"]
    assert "drift (psi 0.4 > 0.2)" in flows.decide_retrain(True, ["psi 0.4 > 0.2"], now=NOW)["reason"]
    assert flows.decide_retrain(False, forced=True, now=NOW)["triggers"] == ["forced"]
    refit = (4, NOW - timedelta(days=31))
    both = flows.decide_retrain(True, ["x"], forced=True, every="30D", refit=refit, now=NOW)
    assert both["retrain"] and both["triggers"] == ["forced", "drift", "schedule"]
    assert "version 4" in both["reason"] and "31.0 days ago" in both["reason"]


def test_the_schedule_counts_from_the_newest_registered_version():
    registered = NOW - timedelta(days=29, hours=23)
    early = flows.decide_retrain(False, every="30D", refit=(7, registered), now=NOW)
    assert early["retrain"] is False and early["next_scheduled_at"] == (registered + timedelta(days=30)).isoformat()
    assert "next scheduled refit is due at" in early["reason"] and "version 7" in early["reason"]
    due = flows.decide_retrain(False, every="30D", refit=(7, registered), now=NOW + timedelta(hours=1))
    assert due["retrain"] and due["triggers"] == ["schedule"] and due["last_refit_version"] == 7
    # no version at all (cannot happen on Day N, which needs a champion): refit
    assert flows.decide_retrain(False, every="30D", refit=None, now=NOW)["triggers"] == ["schedule"]


def test_growth_counts_new_steps_against_the_fits_median_series_length():
    fit = {"version": 5, "data_window_start": "2026-01-01 00:00", "data_window_end": "2026-01-19 23:00",
           "median_series_steps": 432.0}
    ends = {"a": "2026-01-28 23:00", "b": "2026-01-20 11:00"}  # the latest end counts: 216 hours after the fit's
    half = flows.growth_since_fit(fit, ends, "h", 0.5)
    assert half["due"] and half["new_steps"] == 216 and half["fitted_steps"] == 432 and half["steps_left"] == 0
    whole = flows.growth_since_fit(fit, ends, "h", 1.0)
    assert not whole["due"] and whole["steps_left"] == 216
    # a version registered before the median was recorded: its whole data window (456 h) is the fitted length
    old = flows.growth_since_fit({**fit, "median_series_steps": None}, ends, "h", 0.5)
    assert old["fitted_steps"] == 456 and not old["due"] and old["steps_left"] == 12
    # nothing to measure: the rule does not refit
    assert flows.growth_since_fit(None, ends, "h", 1.0) is None
    assert flows.growth_since_fit(fit, None, "h", 1.0) is None
    assert flows.growth_since_fit({**fit, "median_series_steps": None, "data_window_start": None}, ends, "h", 1) is None
    monthly = flows.growth_since_fit({"version": 1, "data_window_end": "2020-12-01", "median_series_steps": 48.0},
                                     {"a": "2024-12-01"}, "MS", 1.0)
    assert monthly["due"] and monthly["new_steps"] == 48


def test_growth_is_a_trigger_and_the_reason_says_when_the_next_one_is_due():
    growth = {"version": 5, "data_window_end": "2026-01-19 23:00", "fitted_steps": 432.0, "new_steps": 216,
              "share": 0.5, "due": True, "steps_left": 0}
    due = flows.decide_retrain(False, now=NOW, growth=growth)
    assert due["retrain"] and due["triggers"] == ["growth"] and due["growth"] == growth
    assert "growth (216 steps since the data end 2026-01-19 23:00 of version 5" in due["reason"]
    assert "after_growth=0.5" in due["reason"]
    both = flows.decide_retrain(True, ["x"], forced=True, every="30D", refit=(4, NOW - timedelta(days=31)), now=NOW,
                                growth=growth)
    assert both["triggers"] == ["forced", "drift", "schedule", "growth"]
    early = flows.decide_retrain(False, now=NOW, growth={**growth, "new_steps": 96, "due": False, "steps_left": 120})
    assert not early["retrain"] and "the next growth refit after 120 more steps" in early["reason"]
    assert flows.decide_retrain(False, now=NOW)["growth"] is None


def test_newest_fit_reads_the_registry(tmp_path, monkeypatch):
    """On a real (sqlite) MLflow registry: the newest version, promoted or not, is the last refit; why it was
    refitted and what it was fitted on are its tags."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        assert flows.newest_fit("m") is None
        client = MlflowClient(uri, uri)
        client.create_registered_model("m")
        assert flows.newest_fit("m") is None
        client.create_model_version("m", source=(tmp_path / "a").as_uri())
        second = client.create_model_version("m", source=(tmp_path / "b").as_uri())
        client.set_registered_model_alias("m", "champion", "1")  # the champion is older: still version 2
        version, registered = flows.newest_fit("m").refit
        assert version == 2 and registered == datetime.fromtimestamp(second.creation_timestamp / 1000, tz=timezone.utc)
        assert abs(datetime.now(timezone.utc) - registered) < timedelta(minutes=5)
        # why a retrain refitted is a tag on the version it registered; only the newest version counts
        assert flows.newest_fit("m").drift_refit is None
        assert flows.tag_refit_triggers("m", 2, ["drift"]) is None  # nothing newer than version 2: no tag
        third = client.create_model_version("m", source=(tmp_path / "c").as_uri(),
                                            tags={"meta.data_window_end": "2026-01-10 00:00:00"})
        assert flows.tag_refit_triggers("m", 2, ["forced", "drift"]) == 3
        assert client.get_model_version("m", third.version).tags[flows.REFIT_TRIGGERS_TAG] == "forced,drift"
        assert flows.newest_fit("m").drift_refit == {"version": 3, "data_window_end": "2026-01-10 00:00:00"}
        client.create_model_version("m", source=(tmp_path / "d").as_uri())
        assert flows.tag_refit_triggers("m", 3, ["schedule"]) == 4 and flows.newest_fit("m").drift_refit is None
        assert flows.newest_fit("m").fit_window == {"version": 4, "data_window_start": None, "data_window_end": None,
                                                    "median_series_steps": None}
        client.create_model_version("m", source=(tmp_path / "e").as_uri(), tags={
            "meta.data_window_start": "2026-01-01 00:00:00", "meta.data_window_end": "2026-01-19 23:00:00",
            "meta.median_series_steps": "432.0"})
        assert flows.newest_fit("m").fit_window == {"version": 5, "data_window_start": "2026-01-01 00:00:00",
                                                    "data_window_end": "2026-01-19 23:00:00",
                                                    "median_series_steps": 432.0}
    finally:
        mlflow.set_tracking_uri(None)


# -- the cycle -------------------------------------------------------------------------------------
@pytest.fixture
def day_n_cycle(tmp_path, monkeypatch):
    """The Day-N flow body with its pipelines and registry stubbed: returns (run, ran, reports)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "day3.csv").write_text("series_id,timestamp,value\n")
    state = {"cycle": CycleConfig(registered_model_name="m")}
    monkeypatch.setattr(flows, "resolve_project_path", lambda path: tmp_path)
    monkeypatch.setattr(flows, "load_orchestration_config",
                        lambda root, env: SimpleNamespace(cycle=state["cycle"], alerts=None))
    monkeypatch.setattr(flows, "clean_up_after_killed_runs", lambda root, env: {})
    monkeypatch.setattr(flows, "_configure_tracking", lambda root, env: incoming)
    monkeypatch.setattr(flows, "choose_cycle_pipeline", lambda cycle: (flows.DAY_N, "day_n"))
    monkeypatch.setattr(flows.prefect_runtime.flow_run, "id", "run-1", raising=False)
    ran: list[str] = []
    monkeypatch.setattr(flows, "_run_step", lambda name, *a: ran.append(name) or {"run_id": name, "tasks": []})
    reports = {"ingestion_report": {"n_batches": 1, "rows_accepted": 48}, "drift_summary": {"drift": False, "reasons": []}}
    loads: list[str] = []
    monkeypatch.setattr(flows, "_load_dataset", stub_datasets(reports, loads))
    # the registry's newest version (flows.newest_fit): version 3, registered 40 days ago, fitted on a median of
    # 432 hours per series; the cycle's reads are counted, and tagging a retrain's version is recorded
    registry = {"m": flows.NewestFit(3, datetime.now(timezone.utc) - timedelta(days=40), {
        "meta.data_window_start": "2026-01-01 00:00", "meta.data_window_end": "2026-01-19 23:00",
        "meta.median_series_steps": "432.0"})}
    reads: list[str] = []
    monkeypatch.setattr(flows, "newest_fit", lambda name: reads.append(name) or registry.get(name))
    tagged: dict = {}
    monkeypatch.setattr(flows, "tag_refit_triggers",
                        lambda name, previous, triggers: tagged.update(last=(previous, list(triggers))))

    def run(retrain: dict | None = None, **kwargs):
        state["cycle"] = CycleConfig(registered_model_name="m", retrain=RetrainConfig(**(retrain or {})))
        ran.clear()
        return flows.ts_kedro_cycle.fn(project_path=str(tmp_path), **kwargs)

    run.registry, run.reads, run.tagged, run.loads = registry, reads, tagged, loads
    return run, ran, reports


def test_cycle_without_drift_updates_unless_the_schedule_or_force_says_refit(day_n_cycle):
    run, ran, reports = day_n_cycle
    result = run()
    assert ran == ["day_n", "inference"] and result["retrain"]["retrain"] is False
    assert [s["pipeline"] for s in result["steps"]] == ["day_n", "inference"]

    result = run({"every": "30D"})  # the last refit (version 3) was registered 40 days ago
    assert ran == ["day_n", "retrain", "inference"] and result["retrain"]["triggers"] == ["schedule"]
    assert [s["pipeline"] for s in result["steps"]] == ["day_n", "retrain", "inference"]

    run.registry["m"] = replace(run.registry["m"], version=4,  # the retrain registered version 4
                                registered=datetime.now(timezone.utc) - timedelta(days=1))
    result = run({"every": "30D"})
    assert ran == ["day_n", "inference"] and "next scheduled refit is due at" in result["retrain"]["reason"]

    result = run({"force": True})
    assert ran == ["day_n", "retrain", "inference"] and result["retrain"]["triggers"] == ["forced"]
    result = run(force_retrain=True)  # the CLI flag / flow parameter
    assert ran == ["day_n", "retrain", "inference"] and result["retrain"]["triggers"] == ["forced"]

    reports["drift_summary"] = {"drift": True, "reasons": ["level shift"]}
    result = run({"every": "30D"})
    assert result["retrain"]["triggers"] == ["drift"] and ran == ["day_n", "retrain", "inference"]


def test_cycle_refits_when_the_history_has_grown_by_after_growth(day_n_cycle):
    """retrain.after_growth: the newest registered fit saw a median of 432 hours per series; with 0.5 a cycle refits
    once 216 hours have arrived since that fit's data end, and not before."""
    run, ran, reports = day_n_cycle
    reports["params:panel"] = {"freq": "h"}
    reports["ingestion_report"] = {"n_batches": 1, "rows_accepted": 48, "history_end": {"a": "2026-01-27 23:00"}}
    result = run({"after_growth": 0.5})  # 192 hours since the fit's data end
    assert ran == ["day_n", "inference"] and not result["retrain"]["retrain"]
    assert "the next growth refit after 24 more steps" in result["retrain"]["reason"]
    assert result["retrain"]["growth"]["new_steps"] == 192
    reports["ingestion_report"]["history_end"]["a"] = "2026-01-28 23:00"  # 216 hours
    result = run({"after_growth": 0.5})
    assert ran == ["day_n", "retrain", "inference"] and result["retrain"]["triggers"] == ["growth"]
    # the retrain registered version 4 on the longer history: the rule counts from there
    run.registry["m"] = flows.NewestFit(4, datetime.now(timezone.utc), {
        "meta.data_window_start": "2026-01-01 00:00", "meta.data_window_end": "2026-01-28 23:00",
        "meta.median_series_steps": "648.0"})
    result = run({"after_growth": 0.5})
    assert ran == ["day_n", "inference"] and result["retrain"]["growth"]["steps_left"] == 324
    assert run()["retrain"]["growth"] is None  # null: the rule is off
    # the panel's frequency is read as the cycle's pipelines see it, runtime parameters included
    # (`cycle --params panel.freq=D`): 9 days since the fit's data end, not 216 hours
    run.registry["m"].tags["meta.data_window_end"] = "2026-01-19 00:00"
    reports["ingestion_report"]["history_end"]["a"] = "2026-01-28 00:00"
    result = run({"after_growth": 0.5}, runtime_params={"panel": {"freq": "D"}})
    assert result["retrain"]["growth"]["new_steps"] == 9 and not result["retrain"]["retrain"]



def test_data_drift_that_a_drift_refit_answered_waits_for_the_reference_window(day_n_cycle):
    """After a drift refit on data to E, data drift alone does not refit again until the drift windows (reference
    96 steps + seasonal lag 168 here: 264) no longer reach before E; performance drift, force and
    after_drift_refit: retrain do."""
    run, ran, reports = day_n_cycle
    end = pd.Timestamp("2026-01-10 00:00")
    drift = {"drift": True, "data_drift": True, "performance_drift": False, "reasons": ["data drift: 9 of 12"],
             "windows": {"reference_steps": 96, "recent_steps": 48, "seasonal_lag_steps": 168,
                         "reach_steps": 264}}
    reports.update(drift_summary=drift, **{"params:panel": {"freq": "h"}})
    reports["ingestion_report"] = {"n_batches": 1, "rows_accepted": 48,
                                   "history_end": {"a": str(end + pd.Timedelta(hours=96)), "b": str(end)}}

    result = run()  # no drift refit recorded yet: the drift refits, and the new version is tagged "drift"
    assert ran == ["day_n", "retrain", "inference"] and result["retrain"]["triggers"] == ["drift"]
    assert run.tagged["last"] == (3, ["drift"])
    # the retrain registered version 4 on data to E, tagged "drift"; fitted on 432 steps per series
    run.registry["m"] = flows.NewestFit(4, datetime.now(timezone.utc), {
        flows.REFIT_TRIGGERS_TAG: "drift", "meta.data_window_end": str(end), "meta.median_series_steps": "432.0"})
    result = run()
    assert ran == ["day_n", "inference"] and result["retrain"]["retrain"] is False
    waiting = result["retrain"]["waiting_after_drift_refit"]
    assert waiting["steps_since"] == 96 and waiting["reach_steps"] == 264 and waiting["version"] == 4
    assert "data drift refits again after 168 more steps" in result["retrain"]["reason"]
    # the wait, the schedule and the growth rule all read the registry's newest version and the two rules count
    # steps of panel.freq: the cycle reads the registry once and params:panel once
    run.loads.clear(), run.reads.clear()
    result = run({"after_growth": 1.0, "every": "30D"})
    assert result["retrain"]["waiting_after_drift_refit"]["steps_since"] == 96
    assert result["retrain"]["growth"]["new_steps"] == 96 and result["retrain"]["last_refit_version"] == 4
    assert run.loads.count("params:panel") == 1 and run.reads == ["m"]

    reports["ingestion_report"]["history_end"]["a"] = str(end + pd.Timedelta(hours=264))  # the windows moved past
    assert run()["retrain"]["triggers"] == ["drift"] and ran == ["day_n", "retrain", "inference"]

    reports["ingestion_report"]["history_end"]["a"] = str(end + pd.Timedelta(hours=96))
    reports["drift_summary"] = {**drift, "performance_drift": True}  # the champion itself is failing
    assert run()["retrain"]["triggers"] == ["drift"]
    reports["drift_summary"] = drift
    assert run({"after_drift_refit": "retrain"})["retrain"]["triggers"] == ["drift"]
    assert run(force_retrain=True)["retrain"]["triggers"] == ["forced"]
    assert "persists since the drift refit of version 4" in run(force_retrain=True)["retrain"]["reason"]
    with pytest.raises(OrchestrationConfigError, match="after_drift_refit"):
        RetrainConfig(after_drift_refit="later")


def test_persisting_drift_counts_steps_of_the_panel_frequency():
    summary = {"data_drift": True, "windows": {"reach_steps": 8}}
    refit = {"version": 2, "data_window_end": "2020-01-01"}
    wait = flows.persisting_drift(summary, refit, {"a": "2020-07-01", "b": "2019-10-01"}, "MS")
    assert wait == {"version": 2, "data_window_end": "2020-01-01", "steps_since": 6, "reach_steps": 8}
    assert flows.persisting_drift(summary, refit, {"a": "2020-09-01"}, "MS") is None  # 8 months: moved past
    assert flows.persisting_drift({**summary, "data_drift": False}, refit, {"a": "2020-07-01"}, "MS") is None
    assert flows.persisting_drift({"data_drift": True}, refit, {"a": "2020-07-01"}, "MS") is None  # old summary
    assert flows.persisting_drift(summary, None, {"a": "2020-07-01"}, "MS") is None
    assert flows.steps_between("2026-03-02", "2026-03-09", "B") == 5  # business days: a Monday to a Monday
    assert flows.steps_between("2026-03-09", "2026-03-02", "D") == 0


def test_a_forced_refit_runs_after_a_batch_that_added_no_row_but_not_without_a_batch(day_n_cycle, tmp_path):
    run, ran, reports = day_n_cycle
    reports["ingestion_report"] = {"n_batches": 1, "rows_accepted": 0, "duplicate_rows_ignored": 48}
    result = run({"every": "30D"})  # a due schedule does not refit unchanged data
    assert ran == ["day_n"] and result["skipped_after_ingestion"] is True
    result = run(force_retrain=True)
    assert ran == ["day_n", "retrain", "inference"] and "added no row" in result["nothing_accepted"]
    (tmp_path / "incoming" / "day3.csv").unlink()
    result = run(force_retrain=True)
    assert ran == [] and result["skipped"] and "the forced refit did not run either" in result["reason"]


def test_the_cli_passes_retrain(monkeypatch, capsys):
    from ts_kedro.orchestration import __main__ as cli

    calls = []
    monkeypatch.setattr(flows, "ts_kedro_cycle", lambda **kwargs: calls.append(kwargs) or {"day": "day_n"})
    assert cli.main(["cycle", "--retrain"]) == 0
    assert cli.main(["cycle"]) == 0
    assert [c["force_retrain"] for c in calls] == [True, False]
    assert '"status": "completed"' in capsys.readouterr().out



def test_the_cli_nests_dotted_params_as_kedro_run_does(monkeypatch, capsys):
    """`--params panel.freq=D` overrides the `panel` parameters' freq (kedro run nests dotted keys); a literal
    key "panel.freq" would be read by nothing and the run would keep the configured frequency silently."""
    from ts_kedro.orchestration import __main__ as cli

    calls = []
    monkeypatch.setattr(flows, "ts_kedro_cycle", lambda **kwargs: calls.append(kwargs) or {"day": "day_n"})
    assert cli.main(["cycle", "--params", "panel.freq=D", "panel.horizon=56", "monitoring={alpha: 0.01}"]) == 0
    assert calls[0]["runtime_params"] == {"panel": {"freq": "D", "horizon": 56}, "monitoring": {"alpha": 0.01}}
    with pytest.raises(SystemExit, match="panel.freq=D"):
        cli.main(["cycle", "--params", "panel.freq"])
    capsys.readouterr()


# -- the kill-test hook (tests/orchestration/test_cycle_sigkill.py) ----------------------------------
def test_pause_at_sleeps_only_at_the_named_step(monkeypatch):
    import time as time_module

    from ts_kedro.orchestration.config import PAUSE_AT_ENV, pause_at

    slept = []
    monkeypatch.setattr(time_module, "sleep", slept.append)
    monkeypatch.delenv(PAUSE_AT_ENV, raising=False)
    pause_at("before_task:theta")
    monkeypatch.setenv(PAUSE_AT_ENV, "before_task:arima")
    pause_at("before_task:theta")
    assert slept == []
    pause_at("before_task:arima")
    assert slept == [3600]
