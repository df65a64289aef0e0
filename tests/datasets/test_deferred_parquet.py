"""DeferrableParquetDataset: a pandas Parquet dataset whose load can hand back a loader instead of the frame."""
from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from ts_kedro.datasets.deferred_parquet import DeferrableParquetDataset


def test_deferred_load_returns_a_loader_and_the_flag_comes_from_yaml_or_runtime_text(tmp_path, m4_sample_panel):
    path = str(tmp_path / "validated_panel.parquet")
    frame = m4_sample_panel.head(50)
    DeferrableParquetDataset(filepath=path).save(frame)
    pd.testing.assert_frame_equal(DeferrableParquetDataset(filepath=path).load(), frame)
    for flag in (True, "true", " True "):
        loader = DeferrableParquetDataset(filepath=path, deferred=flag).load()
        assert callable(loader)
        pd.testing.assert_frame_equal(loader(), frame)
    assert isinstance(DeferrableParquetDataset(filepath=path, deferred="false").load(), pd.DataFrame)
    with pytest.raises(DatasetError, match="deferred must be true or false, got 'yes please'"):
        DeferrableParquetDataset(filepath=path, deferred="yes please")


def test_the_catalog_entry_defers_only_when_the_runtime_parameter_says_so(tmp_path, m4_sample_panel):
    entry = {"type": "ts_kedro.datasets.deferred_parquet.DeferrableParquetDataset",
             "filepath": str(tmp_path / "p.parquet")}
    DataCatalog.from_config({"validated_panel": entry}).save("validated_panel", m4_sample_panel.head(5))
    assert isinstance(DataCatalog.from_config({"validated_panel": entry}).load("validated_panel"), pd.DataFrame)
    deferred = DataCatalog.from_config({"validated_panel": {**entry, "deferred": True}}).load("validated_panel")
    assert callable(deferred) and len(deferred()) == 5


def test_the_entry_survives_to_config_with_its_filepath(tmp_path):
    """Partition-by-partition runs rebuild the catalog from ``to_config()``: the entry must come back whole."""
    entry = {"type": "ts_kedro.datasets.deferred_parquet.DeferrableParquetDataset",
             "filepath": str(tmp_path / "p.parquet"), "deferred": "false"}
    assert DataCatalog.from_config({"validated_panel": entry}).to_config()[0]["validated_panel"] == entry
