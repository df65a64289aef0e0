"""The read-only chunked CSV source dataset behind ``raw_panel``."""
from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DatasetError

from ts_kedro.datasets import CSVChunkSource, CSVChunkSourceDataset


def test_load_gives_a_lazy_source_that_reads_in_chunks(project_root):
    path = project_root / "data/01_raw/m4_hourly_sample.csv"
    source = CSVChunkSourceDataset(str(path)).load()
    assert isinstance(source, CSVChunkSource)
    assert source.header() == ["series_id", "timestamp", "value"]
    sizes = [len(chunk) for chunk in source.chunks(5000)]
    assert sizes == [5000, 5000, 5000, 5000, 440]  # 20,440 real rows


def test_missing_file_and_save_are_refused(tmp_path, project_root):
    with pytest.raises(DatasetError, match="does not exist"):
        CSVChunkSourceDataset(str(tmp_path / "nowhere.csv")).load()
    dataset = CSVChunkSourceDataset(str(project_root / "data/01_raw/m4_hourly_sample.csv"))
    assert dataset.exists()
    with pytest.raises(DatasetError, match="never written"):
        dataset.save(pd.DataFrame({"series_id": ["H1"]}))
