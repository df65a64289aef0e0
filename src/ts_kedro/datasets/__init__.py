"""Custom Kedro datasets of ts_kedro."""
from ts_kedro.datasets.csv_chunk_source import CSVChunkSource, CSVChunkSourceDataset
from ts_kedro.datasets.history_store import DuckDBHistoryDataset, migrate_versioned_parquet

__all__ = ["CSVChunkSource", "CSVChunkSourceDataset", "DuckDBHistoryDataset", "migrate_versioned_parquet"]
