"""Whole Day-0 KedroSession run on real data: outputs, MLflow tracking, a registered champion, reports."""
from __future__ import annotations

import json
import sys

import mlflow
import pandas as pd
from mlflow import MlflowClient

FAMILIES = ("seasonal_naive", "arima", "prophet", "lstm")


def _client(day0_project):
    uri = day0_project["tracking_uri"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_day0_outputs_exist(day0_project):
    root = day0_project["root"]
    primary = pd.read_parquet(root / "data/03_primary/primary_panel.parquet")
    assert primary["series_id"].nunique() == 8
    assert {"series_id", "timestamp", "value", "is_imputed", "is_anomaly"} <= set(primary.columns)
    for family in FAMILIES:
        metrics = json.loads((root / f"data/08_reporting/{family}/backtest_metrics.json").read_text())
        assert metrics["aggregate"]["n_series"] == 8 and metrics["aggregate"]["smape"] > 0
        assert any((root / f"data/06_models/{family}/model.pkl").iterdir()), "versioned model folder is empty"
    report = (root / "data/08_reporting/selection_report.md").read_text()
    assert "Model selection report" in report and "reason" in report
    forecasts_dir = root / "data/07_model_output/forecasts.csv"
    versions = list(forecasts_dir.iterdir())
    forecasts = pd.read_csv(next(versions[0].iterdir()) if versions[0].is_dir() else versions[0])
    assert len(forecasts) == 8 * 48
    assert (forecasts["lo-95"] <= forecasts["mean"]).all() and (forecasts["mean"] <= forecasts["hi-95"]).all()


def test_day0_run_is_tracked_and_champion_registered(day0_project):
    root = day0_project["root"]
    client = _client(day0_project)
    assert not (root / "mlflow.db").exists(), "the run must track to the server, not the embedded database"
    experiment = client.get_experiment_by_name("ts_kedro")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "panel.horizon" in run.data.params and "backtest.n_windows" in run.data.params
    for family in FAMILIES:
        assert f"{family}.backtest_smape" in run.data.metrics, sorted(run.data.metrics)
    assert "selection.selected_owa" in run.data.metrics  # primary_metric: owa (parameters_model_selection.yml)
    assert "selection.candidate_ensemble_owa" in run.data.metrics
    assert len(run.data.tags["dataset_fingerprint"]) == 64 and run.data.tags["git_commit"]
    assert run.data.tags["n_series"] == "8"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"selection", "forecasts"} <= artifacts
    version = client.get_model_version_by_alias("ts_kedro_panel", "champion")
    assert version.run_id == run.info.run_id
    # the registered model serves forecasts for a known series through the pyfunc flavour
    mlflow.set_tracking_uri(day0_project["tracking_uri"])
    # MLflow prepends the model's shipped code folder (a partial ts_kedro copy) to sys.path for good; keep it
    # from shadowing the installed package in the process pools of later tests
    saved_path = list(sys.path)
    try:
        model = mlflow.pyfunc.load_model("models:/ts_kedro_panel@champion")
    finally:
        sys.path[:] = saved_path
    some_id = pd.read_parquet(root / "data/03_primary/primary_panel.parquet")["series_id"].iloc[0]
    out = model.predict(pd.DataFrame({"series_id": [some_id], "horizon": [12]}))
    assert len(out) == 12 and set(out["series_id"]) == {some_id}


def test_rollback_and_promotion_against_the_server(day0_project, tmp_path, capsys):
    """Register a second version through the registry API, promote, then roll back with the console command."""
    from ts_kedro.console import main as cli_main
    from ts_kedro.registry import registry

    uri = day0_project["tracking_uri"]
    client = _client(day0_project)
    first = int(client.get_model_version_by_alias("ts_kedro_panel", "champion").version)
    champion = registry.load_champion("ts_kedro_panel", tracking_uri=uri)
    history = tmp_path / "promotion_history.jsonl"
    second = registry.log_and_register(champion, "ts_kedro_panel", tracking_uri=uri)
    decision = registry.promote_if_better("ts_kedro_panel", second, champion_score=10.0, challenger_score=9.0,
                                          margin=0.02, history_path=str(history), tracking_uri=uri)
    assert decision["promoted"] is True
    assert int(client.get_model_version_by_alias("ts_kedro_panel", "champion").version) == second
    assert cli_main(["registry", "rollback", "--name", "ts_kedro_panel", "--tracking-uri", uri,
                     "--history-path", str(history)]) == 0
    assert int(client.get_model_version_by_alias("ts_kedro_panel", "champion").version) == first
