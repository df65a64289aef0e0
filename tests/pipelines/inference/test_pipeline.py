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
PARAMS = {"registered_model_name": "ts_kedro_panel", "tracking_uri": None, "conditioning": "refit"}


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
    with pytest.raises(StaleChampionError, match="conditioning: update"):
        forecast_with_champion(history, {**PARAMS, "conditioning": "none"}, PANEL)


def test_inference_metrics_have_kedro_mlflow_format():
    metrics = inference_metrics({"latency_seconds": 1.5, "predict_seconds": 0.2, "condition_seconds": 1.0,
                                 "n_series": 3, "new_steps": 48, "refitted_families": {"arima": "a reason"}})
    assert metrics["n_series"] == {"value": 3.0, "step": 0} and metrics["latency_seconds"]["value"] == 1.5
    assert metrics["refitted_families"]["value"] == 1.0 and metrics["new_steps"]["value"] == 48.0


def test_inference_pipeline_slice_run_saves_a_new_forecast_version(tmp_path, champion, day0_and_history, project_root):
    import yaml

    from ts_kedro.datasets.alert_delivery import AlertDeliveryDataset

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
        # the default families include some that use covariates: the (absent) plan is checked, none is declared
        catalog["future_covariates"] = MemoryDataset(pd.DataFrame())
        catalog["params:data_processing"] = {"source": {}}
        catalog["params:monitoring"] = {**monitoring, "alert_rules": [
            {**r, "threshold": 0.0} if r["name"] == "inference_latency" else r for r in monitoring["alert_rules"]]}
        catalog["inference_alert_deliveries"] = AlertDeliveryDataset(
            filepath=str(tmp_path / "inference_alert_deliveries.json"), channels=delivery)
        SequentialRunner().run(create_pipeline(), catalog)
    assert sorted(p.name for p in (tmp_path / "champion_forecasts.parquet").iterdir()) == [
        "2026-11-27T10.00.00.000Z", "2026-11-28T10.00.00.000Z"]
    assert "inference_latency" in (tmp_path / "alerts.jsonl").read_text()
    assert catalog.load("inference_metrics")["n_series"]["value"] == 3.0


# -- conditioning: update (the default) ------------------------------------------------------------------------
@pytest.fixture()
def two_family_champion(day0_and_history, monkeypatch):
    """A champion of theta and ETS (median ensemble on one series) fitted on Day-0 data."""
    from ts_kedro.forecasters.ets import ETSForecaster
    from ts_kedro.forecasters.theta import ThetaForecaster

    day0, _ = day0_and_history
    families = {"theta": ThetaForecaster(freq="h", season_length=24, n_jobs=1).fit(day0),
                "ets": ETSForecaster(freq="h", season_length=24, n_jobs=1).fit(day0)}
    ids = sorted(day0["series_id"].unique())
    choice = {ids[0]: "theta", ids[1]: "ets", ids[2]: "ensemble"}
    panel_model = SelectedPanelModel(families, choice, ["theta", "ets"], [80, 95], 48,
                                     {"data_window_end": str(day0["timestamp"].max())})
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: panel_model)
    return panel_model


def test_default_update_fits_nothing_and_forecasts_after_the_history(two_family_champion, day0_and_history,
                                                                     monkeypatch, project_root):
    import yaml

    from ts_kedro.forecasters.base import Forecaster

    _, history = day0_and_history
    shipped = yaml.safe_load((project_root / "conf/base/parameters_inference.yml").read_text())["inference"]
    assert shipped["conditioning"] == "update" and shipped["refit_after_new_steps"] is None

    def no_fit(self, panel):
        raise AssertionError(f"{self.name} was fitted during a Day-N update")

    monkeypatch.setattr(Forecaster, "fit", no_fit)
    forecasts, summary = forecast_with_champion(history, {**PARAMS, "conditioning": "update"}, PANEL)
    firsts = forecasts.groupby("series_id")["timestamp"].min()
    ends = history.groupby("series_id")["timestamp"].max()
    assert (firsts == ends + pd.Timedelta(hours=1)).all()
    assert summary["conditioning"] == "update" and summary["refitted_families"] == {}
    assert summary["new_steps"] == 48  # the M4 test part follows the Day-0 data
    # each family's forecast is its own update on the new points; the loaded champion is left as it was
    new = history[history["timestamp"] > two_family_champion.metadata["data_window_end"]][["series_id", "timestamp",
                                                                                           "value"]]
    import copy

    theta = copy.deepcopy(two_family_champion.family_models["theta"]).update(new).predict(48, [80, 95])
    first = sorted(ends.index)[0]
    pd.testing.assert_series_equal(forecasts[forecasts["series_id"] == first]["mean"].reset_index(drop=True),
                                   theta[theta["series_id"] == first]["mean"].reset_index(drop=True))
    assert two_family_champion.family_models["theta"].last_timestamp_.max() < ends.max()


def test_a_family_without_update_is_refitted_and_named(champion, day0_and_history, monkeypatch):
    _, history = day0_and_history
    from ts_kedro.forecasters.base import Forecaster

    monkeypatch.setattr(SeasonalNaive, "_update", Forecaster._update)  # as a custom family without update
    forecasts, summary = forecast_with_champion(history, {**PARAMS, "conditioning": "update"}, PANEL)
    assert list(summary["refitted_families"]) == ["seasonal_naive"]
    assert "implements no update" in summary["refitted_families"]["seasonal_naive"]
    ends = history.groupby("series_id")["timestamp"].max()
    assert (forecasts.groupby("series_id")["timestamp"].min() == ends + pd.Timedelta(hours=1)).all()


def test_a_series_its_family_cannot_update_is_refitted_alone(day0_and_history, monkeypatch):
    """A 0 in one series' new hours, where ARIMA models the log: that series is fitted on its history, the
    others are updated (before, ARIMA was refitted on every series), and the summary and metrics say which."""
    from ts_kedro.forecasters.arima import ArimaForecaster

    day0, history = day0_and_history
    arima = ArimaForecaster(freq="h", season_length=24, n_jobs=1, max_p=1, max_q=1).fit(day0)
    ids = sorted(day0["series_id"].unique())
    assert all(arima.fitted_[sid].log_scale for sid in ids), "the real hourly series are positive"
    panel_model = SelectedPanelModel({"arima": arima}, {sid: "arima" for sid in ids}, [], [80, 95], 48,
                                     {"data_window_end": str(day0["timestamp"].max())})
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: panel_model)
    history = history.copy()
    new_rows = history.index[(history["series_id"] == ids[1]) & (history["timestamp"] > day0["timestamp"].max())]
    history.loc[new_rows[5], "value"] = 0.0
    fitted = []
    original_fit = ArimaForecaster._fit
    monkeypatch.setattr(ArimaForecaster, "_fit", lambda self, panel: (fitted.append(sorted(panel["series_id"].unique())),
                                                                      original_fit(self, panel))[1])
    forecasts, summary = forecast_with_champion(history, {**PARAMS, "conditioning": "update"}, PANEL)
    assert fitted == [[ids[1]]]
    assert summary["refitted_families"] == {} and list(summary["refitted_series"]) == ["arima"]
    assert list(summary["refitted_series"]["arima"]) == [ids[1]] and "log scale" in summary["refitted_series"]["arima"][ids[1]]
    assert inference_metrics(summary)["refitted_series"]["value"] == 1.0
    ends = history.groupby("series_id")["timestamp"].max()
    assert (forecasts.groupby("series_id")["timestamp"].min() == ends + pd.Timedelta(hours=1)).all()


def test_refit_after_new_steps_refits_a_champion_that_far_behind(two_family_champion, day0_and_history):
    _, history = day0_and_history
    _, summary = forecast_with_champion(history, {**PARAMS, "conditioning": "update", "refit_after_new_steps": 48},
                                        PANEL)
    assert summary["conditioning"] == "refit" and set(summary["refitted_families"]) == {"theta", "ets"}
    _, summary = forecast_with_champion(history, {**PARAMS, "conditioning": "update", "refit_after_new_steps": 49},
                                        PANEL)
    assert summary["conditioning"] == "update" and summary["refitted_families"] == {}


@pytest.mark.parametrize("bad, message", [
    ({"refit_on_history": True}, "replaced by inference.conditioning"),
    ({"conditioning": "sometimes"}, "must be one of"),
    ({"refit_after_new_steps": 0}, "positive integer"),
])
def test_bad_inference_configuration_is_named(bad, message, champion, day0_and_history):
    from ts_kedro.pipelines.inference.nodes import InferenceConfigError

    _, history = day0_and_history
    params = {k: v for k, v in PARAMS.items() if k != "conditioning"}
    with pytest.raises(InferenceConfigError, match=message):
        forecast_with_champion(history, {**params, **bad}, PANEL)


def test_the_plan_is_checked_when_an_enabled_family_uses_covariates(monkeypatch):
    monkeypatch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,theta")
    assert "select_history_future_covariates_node" not in {node.name for node in create_pipeline().nodes}
    monkeypatch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,prophet")
    pipeline = create_pipeline()
    assert "select_history_future_covariates_node" in {node.name for node in pipeline.nodes}
    assert "history_future_covariates" in pipeline.only_nodes("forecast_with_champion_node").inputs()
