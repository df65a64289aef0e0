"""Inference with a real SelectedPanelModel (seasonal naive, fitted on Day-0 data) standing in for the registry."""
from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.pipelines.inference import create_pipeline
from ts_kedro.pipelines.inference import nodes as inference_nodes
from ts_kedro.pipelines.inference.nodes import StaleChampionError, forecast_with_champion, inference_metrics
from ts_kedro.registry.panel_model import SelectedPanelModel

PANEL = {"freq": "h", "season_length": 24, "seasonal_periods": [24, 168], "horizon": 48, "levels": [80, 95]}
PARAMS = {"registered_model_name": "ts_kedro_panel", "tracking_uri": None, "refit_on_history": True}


@pytest.fixture()
def day0_and_history(small_panel, shared_data):
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    test = test[test["series_id"].isin(small_panel["series_id"].unique())].assign(value=lambda f: f["value"].astype(float))
    history = pd.concat([small_panel, test]).sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    return small_panel, history.assign(is_imputed=False, is_anomaly=False)


@pytest.fixture()
def champion(day0_and_history, monkeypatch):
    day0, _ = day0_and_history
    model = SeasonalNaive(freq="h", season_length=24).fit(day0)
    panel_model = SelectedPanelModel({"seasonal_naive": model}, {s: "seasonal_naive" for s in model.series_ids_},
                                     [], [80, 95], 48, {"primary_metric": "smape", "selected_score": 12.5,
                                                        "data_window_end": str(day0["timestamp"].max())})
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: panel_model)
    return panel_model


def test_forecast_starts_after_the_history_end_with_refit(champion, day0_and_history):
    _, history = day0_and_history
    forecasts, summary = forecast_with_champion(history, PARAMS, PANEL)
    firsts = forecasts.groupby("series_id")["timestamp"].min()
    ends = history.groupby("series_id")["timestamp"].max()
    assert (firsts == ends + pd.Timedelta(hours=1)).all()
    assert len(forecasts) == 3 * 48 and summary["n_series"] == 3 and summary["latency_seconds"] > 0
    # seasonal naive on the refitted history repeats its last real day
    h = history[history["series_id"] == ends.index[0]]["value"].iloc[-24:].tolist()
    assert forecasts[forecasts["series_id"] == ends.index[0]]["mean"].iloc[:24].tolist() == h
    assert set(forecasts["champion_metric"]) == {"smape"} and set(forecasts["champion_backtest_score"]) == {12.5}


def test_stale_champion_without_refit_is_refused(champion, day0_and_history):
    _, history = day0_and_history
    with pytest.raises(StaleChampionError, match="refit_on_history"):
        forecast_with_champion(history, {**PARAMS, "refit_on_history": False}, PANEL)


def test_inference_metrics_have_kedro_mlflow_format():
    metrics = inference_metrics({"latency_seconds": 1.5, "predict_seconds": 0.2, "refit_seconds": 1.0, "n_series": 3})
    assert metrics["n_series"] == {"value": 3.0, "step": 0} and metrics["latency_seconds"]["value"] == 1.5


def test_inference_pipeline_slice_run_saves_a_new_forecast_version(tmp_path, champion, day0_and_history, project_root):
    import yaml

    _, history = day0_and_history
    monitoring = yaml.safe_load((project_root / "conf/base/parameters_monitoring.yml").read_text())["monitoring"]
    delivery = {"log_path": str(tmp_path / "alerts.jsonl"), "notification_block": None}
    path = str(tmp_path / "champion_forecasts.parquet")
    for version in ("2026-11-27T10.00.00.000Z", "2026-11-28T10.00.00.000Z"):
        catalog = DataCatalog({
            "history_primary_panel": MemoryDataset(history),
            "champion_forecasts": ParquetDataset(filepath=path, version=Version(None, version)),
            "inference_summary": JSONDataset(filepath=str(tmp_path / "inference_summary.json")),
            "inference_metrics": JSONDataset(filepath=str(tmp_path / "inference_metrics.json")),
        })
        catalog["params:inference"] = PARAMS
        catalog["params:panel"] = PANEL
        catalog["params:monitoring"] = {**monitoring, "alert_rules": [
            {**r, "threshold": 0.0} if r["name"] == "inference_latency" else r for r in monitoring["alert_rules"]]}
        catalog["params:monitoring.alert_delivery"] = delivery
        SequentialRunner().run(create_pipeline(), catalog)
    assert sorted(p.name for p in (tmp_path / "champion_forecasts.parquet").iterdir()) == [
        "2026-11-27T10.00.00.000Z", "2026-11-28T10.00.00.000Z"]
    assert "inference_latency" in (tmp_path / "alerts.jsonl").read_text()
    assert catalog.load("inference_metrics")["n_series"]["value"] == 3.0
