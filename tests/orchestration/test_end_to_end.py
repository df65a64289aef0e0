"""End to end on real data through the Prefect flow on a real server: Day 0, then Day-N batches.

Day 0 trains every shipped family on 4 real M4 Hourly series. Day N replays their real next 48 observations (the M4 test part)
-> no drift, the champion forecasts. A batch with an injected level shift (synthetic: the real test values
times 1.8, said so here) -> drift, a challenger is trained, compared on the same window and the outcome
recorded. A malformed batch -> quarantined with a report while champion and history stay untouched.
Alerts reach a real HTTP receiver on loopback through the Prefect webhook block.
"""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.e2e.project_copy import make_project_copy
from ts_kedro.datasets import DuckDBHistoryDataset

from .conftest import REPO_ROOT, run_cli
from .test_alerts import webhook_receiver  # noqa: F401  (fixture)

SHARED_TEST = REPO_ROOT.parent / "shared" / "data" / "m4_hourly" / "Hourly-test-long.csv"
pytestmark = pytest.mark.slow


def _cycle(project, prefect_server, webhook_url):
    env = {"TS_KEDRO_CONF_SOURCE": str(project / "conf"), "TS_KEDRO_ALERT_WEBHOOK": webhook_url}
    code, summary, output = run_cli(["cycle", "--task-runner", "sequential"], prefect_server, cwd=project,
                                    timeout=900, extra_env=env)
    errors = [line for line in output.splitlines() if "Error" in line or "error" in line][-15:]
    assert code == 0, (summary, errors)
    return summary


def _champion_version(project) -> int:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return int(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("ts_kedro_panel", "champion").version)


def _latest_history(project) -> pd.DataFrame:
    return DuckDBHistoryDataset(str(project / "data/02_intermediate/history.duckdb")).load()


def test_day0_then_day_n_on_real_data(tmp_path, prefect_server, webhook_receiver):  # noqa: F811
    url, received = webhook_receiver
    project = make_project_copy(tmp_path / "project", n_series=4)
    ids = pd.read_csv(project / "data/01_raw/m4_hourly_sample.csv")["series_id"].unique()
    real_next = pd.read_csv(SHARED_TEST, dtype={"value": str})
    real_next = real_next[real_next["series_id"].isin(ids)]
    incoming = project / "data/01_raw/incoming"
    incoming.mkdir(parents=True, exist_ok=True)

    # Day 0: no champion -> the default pipeline trains, registers and promotes
    day0 = _cycle(project, prefect_server, url)
    assert day0["day"] == "day_0"
    champion = _champion_version(project)

    # Day N, real next observations -> no drift, inference with the champion
    real_next.to_csv(incoming / "batch_001_real.csv", index=False)
    day1 = _cycle(project, prefect_server, url)
    assert day1["day"] == "day_n" and day1["drift"] is False, day1
    assert [step["pipeline"] for step in day1["steps"]] == ["day_n", "inference"]
    history = _latest_history(project)
    assert history.groupby("series_id").size().min() >= 700 + 48
    assert not list(incoming.glob("*.csv")) and list((project / "data/01_raw/archive").rglob("batch_001_real.csv"))
    forecasts = sorted((project / "data/07_model_output/champion_forecasts.parquet").iterdir())
    assert forecasts, "inference saved no forecasts"
    assert _champion_version(project) == champion

    # Day N, injected level shift (synthetic) -> drift, challenger trained and compared, decision recorded
    shifted = real_next.copy()
    shifted["timestamp"] = (pd.to_datetime(shifted["timestamp"]) + pd.Timedelta(hours=48)).dt.strftime("%Y-%m-%d %H:%M:%S")
    shifted["value"] = shifted["value"].astype(float) * 1.8
    shifted.to_csv(incoming / "batch_002_level_shift_synthetic.csv", index=False)
    day2 = _cycle(project, prefect_server, url)
    assert day2["drift"] is True, day2
    assert [step["pipeline"] for step in day2["steps"]] == ["day_n", "retrain", "inference"]
    decisions = [json.loads(line) for line in (project / "data/08_reporting/promotion_history.jsonl").read_text().splitlines()]
    assert len(decisions) >= 2 and decisions[-1]["challenger_version"] > champion
    # the registry records why that version was refitted (after_drift_refit reads it on the next cycles)
    assert day2["retrain"]["triggers"] == ["drift"], day2["retrain"]
    assert day2["retrain"]["tagged_version"] == decisions[-1]["challenger_version"], day2["retrain"]
    comparison_dir = sorted((project / "data/08_reporting/champion_comparison.json").iterdir())[-1]
    comparison = json.loads((comparison_dir / "champion_comparison.json").read_text())
    assert comparison["champion_exists"] and comparison["comparable"], comparison
    champion_after_drift = _champion_version(project)
    assert any(alert["json"] for alert in received), "no alert reached the webhook receiver"

    # Day N, malformed batch -> quarantined with a report; champion and history untouched
    history_before = _latest_history(project)
    (incoming / "batch_003_malformed.csv").write_text("series_id,timestamp,value\nH1,not-a-date,12\n")
    day3 = _cycle(project, prefect_server, url)
    assert day3["day"] == "day_n"
    reports = list((project / "data/01_raw/quarantine").rglob("batch_003_malformed*.report.json"))
    assert reports, "no quarantine report"
    assert _champion_version(project) == champion_after_drift
    pd.testing.assert_frame_equal(_latest_history(project), history_before)
    alerts = [json.loads(line) for line in (project / "data/08_reporting/alerts.jsonl").read_text().splitlines()]
    assert any(a["alert"].get("rule") == "quarantined_batches" for a in alerts)
    assert any("quarantined" in json.dumps(r["json"]) for r in received)
    os.environ.pop("TS_KEDRO_ALERT_WEBHOOK", None)
