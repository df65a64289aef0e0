"""kedro run's path for covariates known in advance (issue 11): the user's future_covariates file is checked by
data_processing (select_future_covariates) and reaches the lightgbm namespace's fit, on real Stallion series."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from ts_kedro.datasets.optional_csv import OptionalCSVDataset
from ts_kedro.pipelines.data_processing.errors import SchemaError
from ts_kedro.pipelines.data_processing.nodes import select_future_covariates
from ts_kedro.pipelines.feature_engineering.pipeline import model_input_nodes
from ts_kedro.pipelines.training.pipeline import create_family_pipeline



class KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot release, so the test can read intermediate outputs afterwards."""

    def _release(self) -> None:
        pass

KNOWN = ["price_actual", "discount_in_percent"]
PANEL = {"freq": "MS", "horizon": 6, "levels": [80, 95]}
PARAMS = {"source": {"timestamp_column": "date", "target_column": "volume",
                     "covariates": {"price_actual": "known_in_advance", "discount_in_percent": "known_in_advance",
                                    "avg_max_temp": "observed"}}}


@pytest.fixture(scope="module")
def stallion(shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """24 real agency/SKU series: history to 2017-06 (primary-panel columns) and the last 6 months' plan."""
    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    raw = raw.assign(series_id=raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                     timestamp=pd.to_datetime(raw["date"]), value=raw["volume"].astype(float))
    keep = sorted(raw.loc[raw["value"] > 0, "series_id"].unique())[:24]
    raw = raw[raw["series_id"].isin(keep)].sort_values(["series_id", "timestamp"])
    history = raw[raw["timestamp"] < "2017-07-01"].assign(is_imputed=False, is_anomaly=False)
    history = history[["series_id", "timestamp", "value", "is_imputed", "is_anomaly", *KNOWN]].reset_index(drop=True)
    future = raw[raw["timestamp"] >= "2017-07-01"].drop(columns="date").rename(columns={"timestamp": "date"})
    return history, future[["series_id", "date", *KNOWN]].reset_index(drop=True)


def test_an_absent_optional_file_is_empty_and_needed_only_for_known_covariates(tmp_path, stallion):
    history, _ = stallion
    absent = OptionalCSVDataset(str(tmp_path / "future_covariates.csv")).load()
    assert absent.empty and absent.columns.empty
    no_known = select_future_covariates(absent, history, {"source": {"covariates": {"price_actual": "observed"}}}, PANEL)
    assert no_known.empty
    with pytest.raises(SchemaError, match="future_covariates.csv: missing; covariates"):
        select_future_covariates(absent, history, PARAMS, PANEL)


def test_the_raw_column_names_are_accepted_and_a_gap_names_covariate_series_and_time(tmp_path, stallion):
    history, future = stallion
    path = tmp_path / "plan.csv"
    future.to_csv(path, index=False)
    rows = select_future_covariates(OptionalCSVDataset(str(path)).load(), history, PARAMS, PANEL)
    assert len(rows) == 6 * history["series_id"].nunique() and list(rows.columns) == ["series_id", "timestamp", *KNOWN]
    sid = history["series_id"].iloc[0]
    gap = future[~((future["series_id"] == sid) & (future["date"] == "2017-09-01"))]
    gap.to_csv(path, index=False)
    with pytest.raises(SchemaError, match=rf"plan.csv: known_in_advance covariate 'price_actual' of series "
                                          rf"'{sid}' is missing from 2017-09-01"):
        select_future_covariates(OptionalCSVDataset(str(path)).load(), history, PARAMS, PANEL)


def _run_lightgbm(history: pd.DataFrame, future: pd.DataFrame, known: list[str]) -> DataCatalog:
    pipeline = (Pipeline([Node(select_future_covariates,
                               ["future_covariates", "primary_panel", "params:data_processing", "params:panel"],
                               "future_covariates_horizon")])
                + Pipeline(model_input_nodes(["lightgbm"])) + create_family_pipeline("lightgbm"))
    catalog = DataCatalog()
    catalog["primary_panel"] = history
    catalog["future_covariates"] = future
    catalog["params:data_processing"] = PARAMS
    catalog["params:panel"] = PANEL
    catalog["params:backtest"] = {"n_windows": 2, "step": None, "min_train": None, "calibrate_intervals": True}
    catalog["params:lightgbm.model"] = {"name": "lightgbm", "class": "lightgbm", "hyperparameters": {
        "n_estimators": 40, "n_jobs": 1, "known_covariates": known}}
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_the_lightgbm_fit_forecasts_from_the_planned_values(stallion):
    history, future = stallion
    catalog = _run_lightgbm(history, future, KNOWN)
    forecasts = catalog.load("lightgbm.forecasts")
    assert len(forecasts) == 6 * history["series_id"].nunique() and forecasts["mean"].notna().all()
    assert forecasts["timestamp"].min() == pd.Timestamp("2017-07-01")
    model = catalog.load("lightgbm.model")
    assert {f"cov_{name}" for name in KNOWN} <= set(model.feature_names_)
    # the plan is what the forecast reads: another price plan gives another forecast
    cheaper = future.assign(price_actual=future["price_actual"] * 0.5)
    model.set_future_covariates(select_future_covariates(cheaper, history, PARAMS, PANEL))
    assert not model.predict(6, [80])["mean"].to_numpy() == pytest.approx(forecasts["mean"].to_numpy())


def test_day_n_inference_updates_with_the_new_covariates_and_forecasts_from_the_new_plan(stallion, monkeypatch):
    """Day 0 to 2017-03; Day N brings April-June (with their prices) and the plan for July-December."""
    from ts_kedro.pipelines.inference import nodes as inference_nodes
    from ts_kedro.registry.panel_model import SelectedPanelModel

    history, future = stallion
    day0 = history[history["timestamp"] < "2017-04-01"].reset_index(drop=True)
    day0_plan = pd.concat([history[history["timestamp"] >= "2017-04-01"].rename(columns={"timestamp": "date"}),
                           future])[["series_id", "date", *KNOWN]]
    model = _run_lightgbm(day0, day0_plan, KNOWN).load("lightgbm.model")
    series = sorted(day0["series_id"].unique())
    champion = SelectedPanelModel({"lightgbm": model}, {s: "lightgbm" for s in series}, [], [80, 95], 6,
                                  {"data_window_end": str(day0["timestamp"].max())})
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: champion)
    inference = {"registered_model_name": "ts_kedro_panel", "conditioning": "update"}
    plan = select_future_covariates(future, history, PARAMS, PANEL)
    forecasts, summary = inference_nodes.forecast_with_champion(history, inference, PANEL, plan)
    assert summary["conditioning"] == "update" and not summary["refitted_families"]
    assert forecasts["timestamp"].min() == pd.Timestamp("2017-07-01") and len(forecasts) == 6 * len(series)
    new = history[history["timestamp"] >= "2017-04-01"].drop(columns=["is_imputed", "is_anomaly"])
    expected = copy.deepcopy(model).update(new.reset_index(drop=True)).set_future_covariates(plan).predict(6, [80, 95])
    assert forecasts["mean"].to_numpy() == pytest.approx(expected["mean"].to_numpy())
    # without the new plan the Day-0 one (April-September) is stale: the error names covariate and first month
    with pytest.raises(Exception, match=r"lack covariate 'price_actual' for series .* at 2017-10-01"):
        inference_nodes.forecast_with_champion(history, inference, PANEL, None)
