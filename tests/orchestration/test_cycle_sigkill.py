"""Issue 12, "Done when": a cycle SIGKILLed during ingestion, during retrain and during promotion.

Real ``python -m ts_kedro.orchestration cycle`` processes run on a copy of this project (3 real M4 Hourly
series, two fast families: ``TS_KEDRO_FAMILIES=seasonal_naive,theta``) against a real Prefect server. Each
killed cycle gets one new Day-N batch (the real next observations of the M4 test part, 8 hours per batch) and
is made to sleep at a named point, then its whole process group gets SIGKILL there:

* ingestion: ``TS_KEDRO_PAUSE_AT=before_task:move_batch_files_node`` (the new history is saved, the batch file
  not yet moved out of the drop folder);
* retrain: ``TS_KEDRO_PAUSE_AT=before_task:theta`` in a ``cycle --retrain`` (the day_n step finished, the
  challenger's families are being fitted, nothing registered);
* promotion: ``TS_KEDRO_REGISTRY_PAUSE_AT=after_aliases`` in a ``cycle --retrain`` (the challenger is
  registered and the decision's aliases moved; its record tags, JSONL line and the end of the intent not written).
  With 8 hours per batch the challenger is not comparable yet (fewer new points than the 48-step window), so
  that decision keeps the champion; the decision that moves ``champion`` is killed the same way in a Day-0
  cycle of a second copy (the first version always becomes champion), whose next cycle must be Day N.

After each kill, and again after the next (unkilled) cycle, the history - loaded through the copy's Kedro
catalog (``history_panel``), whatever dataset backs it - holds every accepted batch's rows exactly once, the
killed cycle's batch is either still in the drop folder or archived whole (same sha256), and
``models:/ts_kedro_panel@champion`` loads; the next cycle completes.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.project_copy import make_project_copy

from .conftest import PYTHON, REPO_ROOT, base_env

pytestmark = pytest.mark.slow

SHARED_TEST = REPO_ROOT.parent / "shared" / "data" / "m4_hourly" / "Hourly-test-long.csv"
MODEL = "ts_kedro_panel"
N_SERIES = 3
BATCH_HOURS = 8
FAMILIES = "seasonal_naive,theta"

# Loads the history through the copy's catalog and the champion through the registry, in a fresh process
# (bootstrapping the copy in the pytest process would swap Kedro's global settings under other tests).
PROBE = """
import json, sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
root, with_history = Path(sys.argv[1]), sys.argv[3] == "history"
state = {}
if with_history:
    bootstrap_project(root)
    with KedroSession.create(project_path=root, save_on_close=False) as session:
        history = session.load_context().catalog.load("history_panel")
    keys = history[["series_id", "timestamp"]].astype(str)
    state = {"rows": int(len(history)), "max_key_count": int(keys.value_counts().max()),
             "keys": sorted(map(list, keys.itertuples(index=False, name=None)))}
from ts_kedro.registry import registry
uri = f"sqlite:///{root / 'mlflow.db'}"
champion = registry.load_champion(sys.argv[2], uri)
print(json.dumps({
    **state,
    "champion_version": registry.get_alias_version(sys.argv[2], "champion", uri),
    "champion_series": sorted(map(str, champion.choice)),
    "pending": registry.pending_decision(sys.argv[2], uri) is not None,
}))
"""


def _env(project: Path, prefect_server: dict, extra: dict | None = None) -> dict[str, str]:
    env = base_env(prefect_server["home"], prefect_server["api_url"])
    env.update(TS_KEDRO_CONF_SOURCE=str(project / "conf"), TS_KEDRO_FAMILIES=FAMILIES,
               PYTHONPATH=str(REPO_ROOT / "src"))
    env.update(extra or {})
    return env


def _cycle(project: Path, prefect_server: dict, *args: str, timeout: float = 900) -> dict:
    result = subprocess.run([PYTHON, "-m", "ts_kedro.orchestration", "cycle", "--task-runner", "sequential", *args],
                            cwd=project, env=_env(project, prefect_server), capture_output=True, text=True,
                            timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-4000:]
    return json.loads(lines[-1])


def _killed_cycle(project: Path, prefect_server: dict, pause: dict[str, str], *args: str, timeout: float = 900) -> None:
    """Start a cycle, wait until it says it paused, SIGKILL its whole process group (joblib workers too)."""
    log = project / f"killed_{'_'.join(pause.values()).replace(':', '_')}.log"
    # The registry's pause message is a print() inside the flow, which log_prints turns into an INFO record:
    # let INFO through, and look for it with the console's line wrapping taken out.
    env = _env(project, prefect_server, {**pause, "PREFECT_LOGGING_LEVEL": "INFO", "COLUMNS": "400"})
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [PYTHON, "-m", "ts_kedro.orchestration", "cycle", "--task-runner", "sequential", *args],
            cwd=project, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while "pausedat" not in "".join(log.read_text(errors="replace").split()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the cycle did not reach {pause} (exit {process.poll()}):\n"
                            f"{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


def _probe(project: Path, prefect_server: dict, history: bool = True) -> dict:
    result = subprocess.run([PYTHON, "-c", PROBE, str(project), MODEL, "history" if history else "registry"],
                            cwd=project,
                            env=_env(project, prefect_server), capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-4000:]
    return json.loads(lines[-1])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Batches:
    """The real next observations of the copy's series, handed out 8 hours at a time as batch files."""

    def __init__(self, project: Path):
        ids = pd.read_csv(project / "data/01_raw/m4_hourly_sample.csv")["series_id"].unique()
        real_next = pd.read_csv(SHARED_TEST, dtype={"value": str})
        self.rows = real_next[real_next["series_id"].isin(ids)].copy()
        self.rows["hour"] = self.rows.groupby("series_id").cumcount()
        self.incoming = project / "data/01_raw/incoming"
        self.archive = project / "data/01_raw/archive"
        self.files: dict[str, dict] = {}  # name -> {"sha256", "keys"}

    def drop(self) -> str:
        k = len(self.files)
        part = self.rows[(self.rows["hour"] >= k * BATCH_HOURS) & (self.rows["hour"] < (k + 1) * BATCH_HOURS)]
        assert len(part) == N_SERIES * BATCH_HOURS, "the M4 test part has 48 hours per series"
        name = f"batch_{k + 1:03d}.csv"
        self.incoming.mkdir(parents=True, exist_ok=True)
        path = self.incoming / name
        part[["series_id", "timestamp", "value"]].to_csv(path, index=False)
        keys = {(str(s), str(pd.Timestamp(t))) for s, t in zip(part["series_id"], part["timestamp"])}
        self.files[name] = {"sha256": _sha256(path), "keys": keys}
        return name

    def where(self, name: str) -> str:
        """'incoming' or 'archived' (whole, once); anything else fails."""
        incoming = self.incoming / name
        archived = list(self.archive.rglob(name))
        assert all(_sha256(p) == self.files[name]["sha256"] for p in archived), f"{name}: a partial archive copy"
        if incoming.exists():
            assert _sha256(incoming) == self.files[name]["sha256"] and not archived, (name, archived)
            return "incoming"
        assert len(archived) == 1, f"{name}: neither in the drop folder nor archived exactly once: {archived}"
        return "archived"


def _assert_consistent(state: dict, batches: Batches, day0_keys: set, in_history: list[str]) -> None:
    keys = {tuple(k) for k in state["keys"]}
    assert state["max_key_count"] == 1 and len(keys) == state["rows"], "a (series_id, timestamp) appears twice"
    expected = set(day0_keys)
    for name in in_history:
        expected |= batches.files[name]["keys"]
    assert keys == expected, (sorted(keys - expected)[:5], sorted(expected - keys)[:5])
    assert state["champion_version"] is not None and len(state["champion_series"]) == N_SERIES


@pytest.fixture(scope="module")
def day0(tmp_path_factory, prefect_server):
    """A project copy after a Day-0 cycle, with its Day-0 history keys."""
    if not SHARED_TEST.is_file():
        pytest.skip(f"{SHARED_TEST} (the M4 Hourly test part) is not here")
    project = make_project_copy(tmp_path_factory.mktemp("sigkill") / "project", n_series=N_SERIES)
    started = time.perf_counter()
    summary = _cycle(project, prefect_server)
    assert summary["day"] == "day_0", summary
    sample = pd.read_csv(project / "data/01_raw/m4_hourly_sample.csv")
    day0_keys = {(str(s), str(pd.Timestamp(t))) for s, t in zip(sample["series_id"], sample["timestamp"])}
    print(f"Day-0 cycle: {time.perf_counter() - started:.0f} s")
    return project, day0_keys, Batches(project)


def test_ingestion_killed_after_the_history_was_saved(day0, prefect_server):
    project, day0_keys, batches = day0
    # a first, unkilled Day-N cycle: the history store exists from here on
    first = batches.drop()
    assert _cycle(project, prefect_server)["day"] == "day_n"
    assert batches.where(first) == "archived"

    name = batches.drop()
    _killed_cycle(project, prefect_server, {"TS_KEDRO_PAUSE_AT": "before_task:move_batch_files_node"})
    state = _probe(project, prefect_server)
    assert batches.where(name) == "incoming"  # the move never started
    _assert_consistent(state, batches, day0_keys, [first, name])  # its rows are in the saved history, once

    summary = _cycle(project, prefect_server)  # re-reads the file: every row is a duplicate, the file is archived
    assert summary["day"] == "day_n", summary
    print("cycle after the ingestion kill:", {key: summary.get(key) for key in ("skipped_after_ingestion", "reason")},
          [step["pipeline"] for step in summary["steps"]])
    assert batches.where(name) == "archived"
    _assert_consistent(_probe(project, prefect_server), batches, day0_keys, [first, name])


def test_retrain_killed_while_fitting(day0, prefect_server):
    project, day0_keys, batches = day0
    champion_before = _probe(project, prefect_server)["champion_version"]
    name = batches.drop()
    _killed_cycle(project, prefect_server, {"TS_KEDRO_PAUSE_AT": "before_task:theta"}, "--retrain")
    state = _probe(project, prefect_server)
    assert batches.where(name) == "archived"  # the day_n step had finished
    _assert_consistent(state, batches, day0_keys, list(batches.files))
    assert state["champion_version"] == champion_before and not state["pending"]

    after = batches.drop()
    summary = _cycle(project, prefect_server, "--retrain")
    assert summary["retrain"]["triggers"] == ["forced"], summary
    assert [s["pipeline"] for s in summary["steps"]] == ["day_n", "retrain", "inference"]
    assert batches.where(after) == "archived"
    _assert_consistent(_probe(project, prefect_server), batches, day0_keys, list(batches.files))


def test_promotion_killed_after_the_aliases_moved(day0, prefect_server):
    project, day0_keys, batches = day0
    name = batches.drop()
    _killed_cycle(project, prefect_server, {"TS_KEDRO_REGISTRY_PAUSE_AT": "after_aliases"}, "--retrain")
    state = _probe(project, prefect_server)
    assert state["pending"], "the kill was meant to leave the decision half done"
    assert batches.where(name) == "archived"
    _assert_consistent(state, batches, day0_keys, list(batches.files))  # the champion alias loads

    after = batches.drop()
    summary = _cycle(project, prefect_server)  # repairs the registry first, then a normal Day-N cycle
    assert summary["day"] == "day_n" and "retrain" in summary, summary
    assert batches.where(after) == "archived"
    state = _probe(project, prefect_server)
    assert not state["pending"]
    _assert_consistent(state, batches, day0_keys, list(batches.files))
    lines = [json.loads(line) for line in (project / "data/08_reporting/promotion_history.jsonl").read_text().splitlines()]
    sequences = [record["sequence"] for record in lines]
    assert sorted(sequences) == list(range(1, len(sequences) + 1)), sequences  # each decision once


def test_first_promotion_killed_after_the_champion_alias_moved(tmp_path, prefect_server):
    """Day 0 killed with ``champion`` already on version 1 and the decision unrecorded: the next cycle
    finishes the decision and runs Day N, not a second Day 0."""
    if not SHARED_TEST.is_file():
        pytest.skip(f"{SHARED_TEST} (the M4 Hourly test part) is not here")
    project = make_project_copy(tmp_path / "project", n_series=N_SERIES)
    _killed_cycle(project, prefect_server, {"TS_KEDRO_REGISTRY_PAUSE_AT": "after_aliases"})
    state = _probe(project, prefect_server, history=False)
    assert state["pending"] and state["champion_version"] == 1 and len(state["champion_series"]) == N_SERIES

    batches = Batches(project)
    name = batches.drop()
    summary = _cycle(project, prefect_server)
    assert summary["day"] == "day_n" and [s["pipeline"] for s in summary["steps"]] == ["day_n", "inference"], summary
    assert batches.where(name) == "archived"
    state = _probe(project, prefect_server)
    assert not state["pending"] and state["champion_version"] == 1
    sample = pd.read_csv(project / "data/01_raw/m4_hourly_sample.csv")
    day0_keys = {(str(s), str(pd.Timestamp(t))) for s, t in zip(sample["series_id"], sample["timestamp"])}
    _assert_consistent(state, batches, day0_keys, [name])
    lines = [json.loads(line) for line in (project / "data/08_reporting/promotion_history.jsonl").read_text().splitlines()]
    assert [(r["sequence"], r["promoted"], r["champion_version_after"]) for r in lines] == [(1, True, 1)]
