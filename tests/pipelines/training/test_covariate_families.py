"""kedro run's covariate path for every family by capability (issue 11): a family with ``supports_covariates``
(arima, prophet, lightgbm) gets the declaration and the horizon's plan in training, its backtest the recorded
values, Day-N inference the new plan; the others ignore the covariates and their statistics say so. Real Stallion
agency/SKU series."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from ts_kedro.pipelines.data_processing.nodes import select_future_covariates
from ts_kedro.pipelines.training.nodes import fit_model
from ts_kedro.pipelines.training.pipeline import create_family_pipeline, create_pipeline, future_covariates_node

KNOWN = ["price_actual", "discount_in_percent"]
PANEL = {"freq": "MS", "horizon": 6, "levels": [80, 95]}
BACKTEST = {"n_windows": 2, "step": None, "min_train": None, "calibrate_intervals": True}
DECLARED = {"source": {"timestamp_column": "date", "target_column": "volume",
                       "covariates": {"price_actual": "known_in_advance", "discount_in_percent": "known_in_advance",
                                      "avg_max_temp": "observed"}}}
SPECS = {"arima": {"name": "arima", "class": "arima", "hyperparameters": {
             "n_jobs": 1, "max_p": 1, "max_q": 1, "seasonality": "fourier"}},
         "prophet": {"name": "prophet", "class": "prophet", "hyperparameters": {
             "n_jobs": 1, "uncertainty_samples": 50}},
         "theta": {"name": "theta", "class": "theta", "hyperparameters": {"n_jobs": 1}}}


class KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot release, so the test can read intermediate outputs afterwards."""

    def _release(self) -> None:
        pass


@pytest.fixture(scope="module")
def stallion(shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four real series: the primary panel to 2017-06 (flags, two prices known in advance, the temperature
    observed) and the user's plan for July-December under the raw time column name."""
    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    raw = raw.assign(series_id=raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                     timestamp=pd.to_datetime(raw["date"]).astype("datetime64[ns]"), value=raw["volume"].astype(float))
    positive = raw.groupby("series_id", observed=True)["value"].min()
    raw = raw[raw["series_id"].isin(sorted(positive[positive > 0].index)[:4])].sort_values(["series_id", "timestamp"])
    raw = raw.astype({c: float for c in [*KNOWN, "avg_max_temp"]})
    history = raw[raw["timestamp"] < "2017-07-01"].assign(is_imputed=False, is_anomaly=False)
    history = history[["series_id", "timestamp", "value", "is_imputed", "is_anomaly", *KNOWN, "avg_max_temp"]]
    future = raw[raw["timestamp"] >= "2017-07-01"].drop(columns="date").rename(columns={"timestamp": "date"})
    return history.reset_index(drop=True), future[["series_id", "date", *KNOWN]].reset_index(drop=True)


def test_only_the_families_that_support_covariates_read_them():
    with_covariates = create_pipeline(["seasonal_naive", "theta", "arima", "prophet"])
    assert "select_future_covariates_horizon_node" in {node.name for node in with_covariates.nodes}
    for family, reads in (("arima", True), ("prophet", True), ("theta", False), ("seasonal_naive", False)):
        inputs = set(with_covariates.only_nodes_with_namespaces([family]).inputs())
        assert ({"future_covariates_horizon", "params:data_processing"} <= inputs) is reads, family
    without = create_pipeline(["seasonal_naive", "theta"])
    assert "select_future_covariates_horizon_node" not in {node.name for node in without.nodes}
    assert "params:data_processing" not in without.inputs()


def _run_family(family: str, history: pd.DataFrame, future: pd.DataFrame) -> DataCatalog:
    pipeline = Pipeline([future_covariates_node()]) + create_family_pipeline(family)
    catalog = DataCatalog()
    catalog["primary_panel"] = history
    catalog["future_covariates"] = future
    catalog["params:data_processing"] = DECLARED
    catalog["params:panel"] = PANEL
    catalog["params:backtest"] = BACKTEST
    catalog[f"params:{family}.model"] = SPECS[family]
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog


@pytest.mark.parametrize("family", ["arima", "prophet"])
def test_a_covariate_family_fits_backtests_and_forecasts_from_the_declared_covariates(family, stallion):
    history, future = stallion
    catalog = _run_family(family, history, future)
    model = catalog.load(f"{family}.model")
    stats = catalog.load(f"{family}.model_stats")
    assert model.known_covariates == KNOWN  # from the declaration: the hyperparameters leave them out
    assert stats["covariates"]["supported"] and stats["covariates"]["known"] == KNOWN
    assert list(stats["covariates"]["ignored"]) == ["avg_max_temp"]  # observed: no values over the horizon
    forecasts = catalog.load(f"{family}.forecasts")
    assert forecasts["timestamp"].min() == pd.Timestamp("2017-07-01") and len(forecasts) == 6 * 4
    backtest = catalog.load(f"{family}.backtest_forecasts")
    assert backtest["window"].nunique() == 2 and (backtest["served_by"] == family).all()
    # the kept plan is what the forecast reads
    cheaper = select_future_covariates(future.assign(price_actual=future["price_actual"] * 0.8), history, DECLARED,
                                       PANEL)
    assert not (copy.copy(model).set_future_covariates(cheaper).predict(6, [80])["mean"].to_numpy()
                == pytest.approx(forecasts["mean"].to_numpy()))


def test_explicit_hyperparameters_win_over_the_declaration_and_a_plain_family_says_what_it_ignored(stallion):
    history, future = stallion
    plan = select_future_covariates(future, history, DECLARED, PANEL)
    opted_out = {**SPECS["arima"], "hyperparameters": {**SPECS["arima"]["hyperparameters"], "known_covariates": []}}
    model, _, stats = fit_model(history, opted_out, PANEL, BACKTEST, future_covariates=plan,
                                data_processing_params=DECLARED)
    assert model.known_covariates == [] and list(stats["covariates"]["ignored"]) == [*KNOWN, "avg_max_temp"]
    model, forecasts, stats = fit_model(history, SPECS["theta"], PANEL, BACKTEST, future_covariates=plan,
                                        data_processing_params=DECLARED)
    assert not stats["covariates"]["supported"] and not hasattr(model, "future_covariates_")
    assert list(stats["covariates"]["ignored"]) == [*KNOWN, "avg_max_temp"]
    assert "cannot use covariates" in stats["covariates"]["ignored"]["price_actual"]


def test_a_covariate_family_without_its_plan_names_covariate_series_and_time(stallion):
    history, _ = stallion
    with pytest.raises(Exception, match=r"lack covariate 'price_actual' for series '[^']+' at 2017-07-01"):
        fit_model(history, SPECS["arima"], PANEL, BACKTEST, future_covariates=None, data_processing_params=DECLARED)


def test_day_n_inference_updates_arima_with_the_new_covariates_and_forecasts_from_the_new_plan(stallion,
                                                                                               monkeypatch):
    """Day 0 to 2017-03 (arima for two series, theta for two); Day N brings April-June and July-December's plan."""
    from ts_kedro.pipelines.inference import nodes as inference_nodes
    from ts_kedro.registry.panel_model import SelectedPanelModel

    history, future = stallion
    day0 = history[history["timestamp"] < "2017-04-01"].reset_index(drop=True)
    day0_plan = pd.concat([history[history["timestamp"] >= "2017-04-01"].rename(columns={"timestamp": "date"}),
                           future])[["series_id", "date", *KNOWN]]
    arima, _, _ = fit_model(day0, SPECS["arima"], PANEL, BACKTEST,
                            future_covariates=select_future_covariates(day0_plan, day0, DECLARED, PANEL),
                            data_processing_params=DECLARED)
    theta, _, _ = fit_model(day0, SPECS["theta"], PANEL, BACKTEST, data_processing_params=DECLARED)
    series = sorted(day0["series_id"].unique())
    choice = {sid: ("arima" if i < 2 else "theta") for i, sid in enumerate(series)}
    champion = SelectedPanelModel({"arima": arima, "theta": theta}, choice, [], [80, 95], 6,
                                  {"data_window_end": str(day0["timestamp"].max())})
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: champion)
    inference = {"registered_model_name": "ts_kedro_panel", "conditioning": "update"}
    plan = select_future_covariates(future, history, DECLARED, PANEL)
    forecasts, summary = inference_nodes.forecast_with_champion(history, inference, PANEL, plan)
    assert summary["conditioning"] == "update" and not summary["refitted_families"]
    assert forecasts["timestamp"].min() == pd.Timestamp("2017-07-01") and len(forecasts) == 6 * len(series)
    new = history[history["timestamp"] >= "2017-04-01"].drop(columns=["is_imputed", "is_anomaly"])
    expected = copy.deepcopy(arima).update(new.reset_index(drop=True)).set_future_covariates(plan).predict(6, [80])
    mine = forecasts[forecasts["series_id"].isin(series[:2])]
    assert mine["mean"].to_numpy() == pytest.approx(expected[expected["series_id"].isin(series[:2])]["mean"].to_numpy())
    # without the new plan the Day-0 one (April-September) is stale: the error names covariate and first month
    with pytest.raises(Exception, match=r"lack covariate 'price_actual' for series .* at 2017-10-01"):
        inference_nodes.forecast_with_champion(history, inference, PANEL, None)
