"""Monitoring on real M4 Hourly continuations: no drift on the real next 48 hours, drift on a synthetic shift."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset

from ts_kedro.pipelines.monitoring import create_pipeline
from ts_kedro.pipelines.monitoring.nodes import (
    MonitoringConfigError,
    build_drift_windows,
    detect_data_drift,
    evaluate_alert_rules,
    measure_performance_drift,
    select_previous_forecasts,
    summarise_drift,
)

PANEL = {"freq": "h", "season_length": 24, "seasonal_periods": [24, 168], "horizon": 48, "levels": [80, 95]}
SERIES = ["H1", "H103", "H120", "H137"]


@pytest.fixture(scope="module")
def monitoring_params(project_root):
    return yaml.safe_load((project_root / "conf" / "base" / "parameters_monitoring.yml").read_text())["monitoring"]


@pytest.fixture(scope="module")
def real_history(m4_sample_panel, shared_data) -> pd.DataFrame:
    """Four real series: training part plus the real next 48 hours, as a canonical primary panel."""
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    panel = pd.concat([m4_sample_panel[m4_sample_panel["series_id"].isin(SERIES)],
                       test[test["series_id"].isin(SERIES)]])
    panel["value"] = panel["value"].astype(float)
    panel = panel.groupby("series_id", group_keys=False).tail(400 + 48)
    return panel.assign(is_imputed=False, is_anomaly=False).sort_values(["series_id", "timestamp"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def shifted_history(real_history) -> pd.DataFrame:
    """SYNTHETIC: the last 48 hours of every series raised by one reference standard deviation."""
    shifted = real_history.copy()
    for _, rows in shifted.groupby("series_id"):
        recent = rows.index[-48:]
        shifted.loc[recent, "value"] += rows["value"].iloc[-48 - 336:-48].std()
    return shifted


def test_windows_are_cut_per_series_and_feature(real_history, monitoring_params):
    reference, current = build_drift_windows(real_history, monitoring_params, PANEL)
    assert reference.shape == (336, 8) and current.shape == (48, 8)
    h1 = real_history[real_history["series_id"] == "H1"]["value"]
    assert current["H1|value"].tolist() == h1.iloc[-48:].tolist()
    assert current["H1|seasonal_diff"].iloc[0] == h1.iloc[-48] - h1.iloc[-72]
    with pytest.raises(MonitoringConfigError, match="shorten the windows"):
        build_drift_windows(real_history, {**monitoring_params, "reference_window_steps": 5000}, PANEL)


def test_real_continuation_no_drift_and_injected_level_shift_drifts(real_history, shifted_history, monitoring_params):
    no_performance = {"available": False, "reason": "none"}
    real = summarise_drift(detect_data_drift(*build_drift_windows(real_history, monitoring_params, PANEL),
                                             monitoring_params)[0], no_performance, monitoring_params)
    assert real["drift"] is False and real["drift_share"] <= 0.5, real
    shifted_drift, html, snapshots = detect_data_drift(*build_drift_windows(shifted_history, monitoring_params, PANEL),
                                                       monitoring_params)
    shifted = summarise_drift(shifted_drift, no_performance, monitoring_params)
    assert shifted["drift"] is True and shifted["drifted_series"] == sorted(SERIES)
    assert shifted["reasons"][0].startswith("data drift: 4 of 4 series")
    assert "<html" in html.lower() and set(snapshots) == {"series_drift", "panel_drift"}


def test_performance_ratio_on_a_hand_checkable_case():
    # synthetic: A forecast 11, 13 for actuals 10, 10 (MAE 2); B forecast exactly (MAE 0); mean 1 / backtest 2
    times = pd.date_range("2020-01-02", periods=2, freq="h")
    history = pd.DataFrame({"series_id": ["A"] * 26 + ["B"] * 26,
                            "timestamp": list(pd.date_range("2020-01-01 00:00", periods=26, freq="h")) * 2,
                            "value": [float(i % 3) for i in range(24)] + [10.0, 10.0] + [1.0] * 24 + [5.0, 5.0],
                            "is_imputed": False})
    forecasts = pd.DataFrame({"series_id": ["A", "A", "B", "B"], "timestamp": list(times) * 2,
                              "mean": [11.0, 13.0, 5.0, 5.0], "champion_metric": "mae",
                              "champion_backtest_score": 2.0})
    result = measure_performance_drift(forecasts, history, {"performance_drift": {"min_points_per_series": 1}}, PANEL)
    assert result["per_series"] == {"A": {"n_points": 2, "mae": 2.0}, "B": {"n_points": 2, "mae": 0.0}}
    assert result["realized"] == 1.0 and result["ratio"] == 0.5
    # imputed actuals do not count
    history.loc[history["timestamp"] == times[1], "is_imputed"] = True
    again = measure_performance_drift(forecasts, history, {"performance_drift": {"min_points_per_series": 1}}, PANEL)
    assert again["per_series"]["A"]["mae"] == 1.0
    assert measure_performance_drift(select_previous_forecasts({}), history, {}, PANEL)["available"] is False


def test_alert_rules_fire_on_their_thresholds(monitoring_params):
    rules = monitoring_params["alert_rules"]
    alerts = evaluate_alert_rules({"drift_share": 0.75, "performance_ratio": 1.2, "quarantined_batches": 2,
                                   "latency_seconds": None}, rules)
    assert [(a["rule"], a["value"]) for a in alerts] == [("data_drift", 0.75), ("quarantined_batches", 2.0)]
    assert alerts[1]["message"] == "2 incoming batch(es) quarantined: see data/01_raw/quarantine/"
    assert [a["rule"] for a in evaluate_alert_rules({"pipeline_failed": 1, "latency_seconds": 61}, rules)] == \
        ["pipeline_failure", "inference_latency"]
    assert evaluate_alert_rules({"drift_share": 0.5, "quarantined_batches": 0}, rules) == []
    with pytest.raises(MonitoringConfigError, match="malformed"):
        evaluate_alert_rules({"x": 1}, [{"name": "x", "fact": "x", "op": "~", "threshold": 1}])


def test_monitoring_pipeline_slice_run(tmp_path, shifted_history, monitoring_params):
    params = {**monitoring_params,
              "evidently_workspace": {"path": str(tmp_path / "workspace"), "project": "test monitoring"},
              "alert_delivery": {"log_path": str(tmp_path / "alerts.jsonl"), "notification_block": None}}
    last = shifted_history.groupby("series_id").tail(48)
    earlier_forecasts = last[["series_id", "timestamp"]].assign(
        mean=last["value"].to_numpy(), champion_metric="smape", champion_backtest_score=5.0)
    catalog = DataCatalog({
        "history_primary_panel": MemoryDataset(shifted_history),
        "champion_forecast_versions": MemoryDataset({"2026-11-27T10.00.00.000Z/champion_forecasts":
                                                     lambda: earlier_forecasts}),
        "ingestion_report": MemoryDataset({"n_quarantined": 1}),
        **{name: JSONDataset(filepath=str(tmp_path / f"{name}.json"))
           for name in ("drift_summary", "alerts", "evidently_workspace_runs", "drift_snapshots")},
    })
    catalog["params:monitoring"] = params
    catalog["params:monitoring.alert_delivery"] = params["alert_delivery"]
    catalog["params:panel"] = PANEL
    SequentialRunner().run(create_pipeline(), catalog)

    summary = catalog.load("drift_summary")
    assert summary["drift"] is True and summary["performance_ratio"] == 0.0  # perfect earlier forecasts
    assert [a["rule"] for a in catalog.load("alerts")] == ["data_drift", "quarantined_batches"]
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [r["alert"]["rule"] for r in logged] == ["data_drift", "quarantined_batches"]
    runs = catalog.load("evidently_workspace_runs")
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(tmp_path / "workspace"))
    assert len(workspace.list_runs(runs["project_id"])) == 2


def test_monitoring_metrics_for_mlflow():
    from ts_kedro.pipelines.monitoring.nodes import monitoring_metrics

    summary = {"drift": True, "drift_share": 0.75, "feature_drift_share": 0.5, "performance_ratio": None,
               "performance": {"available": False}}
    metrics = monitoring_metrics(summary, {"n_accepted": 2, "n_quarantined": 1, "rows_accepted": 96,
                                           "duplicate_rows_ignored": 0})
    assert metrics["drift"] == {"value": 1.0, "step": 0}
    assert metrics["drift_share"]["value"] == 0.75 and metrics["batches_quarantined"]["value"] == 1.0
    assert "performance_ratio" not in metrics and "realized_error" not in metrics  # not measured this run
    assert metrics["peak_rss_mb"]["value"] > 0
