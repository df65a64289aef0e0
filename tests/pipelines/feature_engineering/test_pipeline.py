"""Pipeline-level tests: structure, a full run through the shipped catalog entries, and a slice run."""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from ts_kedro.pipelines.feature_engineering import create_pipeline

CATALOG_FILE = Path(__file__).resolve().parents[3] / "conf" / "base" / "catalog_feature_engineering.yml"
OUTPUTS = {"feature_panel", "series_decomposition", "feature_manifest"}


def _run(pipeline: Pipeline, panel: pd.DataFrame, panel_params: dict, feature_params: dict, catalog=None):
    catalog = catalog or DataCatalog()
    catalog["primary_panel"] = panel
    catalog["params:panel"] = panel_params
    catalog["params:feature_engineering"] = feature_params
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = MemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog


def _shipped_catalog_in(tmp_path: Path) -> DataCatalog:
    """The shipped catalog entries of this pipeline, with their files moved under tmp_path."""
    config = yaml.safe_load(CATALOG_FILE.read_text())
    for entry in config.values():
        entry["filepath"] = str(tmp_path / Path(entry["filepath"]).name)
    return DataCatalog.from_config(config)


FEATURE_NODES = {"resolve_feature_spec_node", "build_calendar_features_node", "build_lag_features_node",
                 "build_rolling_features_node", "build_decomposition_features_node", "decompose_series_node",
                 "assemble_feature_panel_node", "build_feature_manifest_node"}


def test_pipeline_has_named_nodes_and_the_contract_inputs_and_outputs():
    pipeline = create_pipeline(families=["seasonal_naive", "arima"])  # no feature-based family
    assert {node.name for node in pipeline.nodes} == FEATURE_NODES
    assert pipeline.inputs() == {"primary_panel", "params:panel", "params:feature_engineering"}
    assert pipeline.outputs() == OUTPUTS
    # the shipped families include lightgbm: the shipped pipeline also builds its training rows
    shipped = create_pipeline()
    assert {node.name for node in shipped.nodes} == FEATURE_NODES | {"build_lightgbm_model_input_node"}
    assert shipped.outputs() == OUTPUTS | {"lightgbm_model_input"}


def test_catalog_entries_are_feature_layer_files():
    config = yaml.safe_load(CATALOG_FILE.read_text())
    model_inputs = {"lightgbm_model_input"}  # rows of the feature-based families, written only when they are enabled
    assert set(config) == OUTPUTS | model_inputs
    for name, entry in config.items():
        layer, folder = ("model_input", "05_model_input") if name in model_inputs else ("feature", "04_feature")
        assert entry["filepath"].startswith(f"data/{folder}/"), name
        assert entry["metadata"]["kedro-viz"]["layer"] == layer, name


def test_an_enabled_lightgbm_family_reads_its_model_input_from_feature_engineering():
    """The edge kedro-viz shows: feature_engineering writes lightgbm_model_input, the lightgbm namespace reads it."""
    from ts_kedro.pipelines.training import pipeline as training

    features = create_pipeline(families=["seasonal_naive", "lightgbm"])
    assert "lightgbm_model_input" in features.outputs()
    trained = training.create_pipeline(families=["seasonal_naive", "lightgbm"])
    readers = {node.name for node in trained.nodes if "lightgbm_model_input" in node.inputs}
    assert readers == {"lightgbm.backtest_model_node", "lightgbm.fit_model_node"}
    assert not any("model_input" in name for node in trained.nodes if node.namespace == "seasonal_naive"
                   for name in node.inputs)
    assert "lightgbm_model_input" not in create_pipeline(families=["seasonal_naive"]).outputs()


def test_full_run_writes_and_reads_back_through_the_shipped_catalog(
    tmp_path, long_hourly_panel, panel_params, feature_params
):
    catalog = _run(create_pipeline(families=["seasonal_naive"]), long_hourly_panel, panel_params, feature_params,
                   _shipped_catalog_in(tmp_path))

    feature_panel = pd.read_parquet(tmp_path / "feature_panel.parquet")
    manifest = catalog["feature_manifest"].load()
    decomposition = pd.read_parquet(tmp_path / "series_decomposition.parquet")

    assert list(feature_panel.columns) == [*long_hourly_panel.columns, *manifest["features"]]
    pd.testing.assert_frame_equal(feature_panel[long_hourly_panel.columns], long_hourly_panel)
    assert set(manifest["groups"]) == {"calendar", "lag", "rolling", "decomposition"}
    assert manifest["nan_rows"]["decomposition"] == 2 * 337  # first min_history rows of each series
    assert list(decomposition.columns) == ["series_id", "timestamp", "trend", "seasonal_24", "seasonal_168", "resid"]
    assert len(decomposition) == len(feature_panel) == len(long_hourly_panel)
    assert decomposition["timestamp"].dtype == "datetime64[ns]"


def test_slice_run_of_the_lag_branch_only(hourly_panel, panel_params, feature_params):
    sliced = create_pipeline().from_nodes("resolve_feature_spec_node").to_nodes("build_lag_features_node")
    assert {node.name for node in sliced.nodes} == {"resolve_feature_spec_node", "build_lag_features_node"}
    catalog = _run(sliced, hourly_panel, panel_params, copy.deepcopy(feature_params))
    lags = catalog["lag_features"].load()
    assert list(lags.columns) == ["series_id", "timestamp", "lag_1", "lag_24", "lag_168"]
    assert len(lags) == len(hourly_panel)
    assert "feature_panel" not in catalog and "decomposition_features" not in catalog  # not run
