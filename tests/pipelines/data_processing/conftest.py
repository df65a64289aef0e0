"""Fixtures of the data_processing tests: shipped parameters, CSV writing and a catalog-backed runner."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ts_kedro.datasets import CSVChunkSource, CSVChunkSourceDataset
from ts_kedro.pipelines.data_processing import create_pipeline

CONF = Path(__file__).resolve().parents[3] / "conf" / "base"


@pytest.fixture(scope="session")
def shipped_params() -> dict:
    """``data_processing`` parameters exactly as shipped in conf/base."""
    return yaml.safe_load((CONF / "parameters_data_processing.yml").read_text())["data_processing"]


@pytest.fixture(scope="session")
def shipped_panel() -> dict:
    return yaml.safe_load((CONF / "parameters.yml").read_text())["panel"]


@pytest.fixture
def params(shipped_params) -> dict:
    return copy.deepcopy(shipped_params)


@pytest.fixture
def panel(shipped_panel) -> dict:
    return copy.deepcopy(shipped_panel)


@pytest.fixture
def write_csv(tmp_path):
    """Write CSV text to a file in tmp_path and return a lazy source of it."""
    def write(text: str, name: str = "raw.csv") -> CSVChunkSource:
        path = tmp_path / name
        path.write_text(text)
        return CSVChunkSource(str(path))
    return write


def add_training_params(catalog: DataCatalog) -> DataCatalog:
    """The shipped training parameters the quality report needs (which families can fit each series)."""
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())
    catalog["params:backtest"] = training["backtest"]
    for family in training["training"]["families"]:
        catalog[f"params:{family}.model"] = training[family]["model"]
    return catalog


def run_data_processing(raw_path, params: dict, panel: dict, pipeline=None) -> DataCatalog:
    """Run (a slice of) the pipeline on an in-memory catalog and return the catalog with every output."""
    catalog = DataCatalog({"raw_panel": CSVChunkSourceDataset(str(raw_path))})
    catalog["params:data_processing"] = params
    catalog["params:panel"] = panel
    add_training_params(catalog)
    pipeline = pipeline or create_pipeline()
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = MemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog
