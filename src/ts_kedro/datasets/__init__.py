"""Custom Kedro datasets of ts_kedro."""
from ts_kedro.datasets.csv_chunk_source import CSVChunkSource, CSVChunkSourceDataset

__all__ = ["CSVChunkSource", "CSVChunkSourceDataset"]
