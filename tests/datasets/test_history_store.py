"""The append-only DuckDB history store on real M4 Hourly data fed as hourly batches."""
from __future__ import annotations

import pandas as pd
import pytest
from kedro.io.core import DatasetError

from ts_kedro.datasets.history_store import DuckDBHistoryDataset, migrate_versioned_parquet, rows_sha256


@pytest.fixture()
def panel(m4_sample_panel) -> pd.DataFrame:
    ids = sorted(m4_sample_panel["series_id"].unique())[:4]
    frame = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)].groupby("series_id").tail(120)
    return frame[["series_id", "timestamp", "value"]].reset_index(drop=True)


def _cycles(panel: pd.DataFrame, first: int, step: int):
    """The full history after Day 0 (first points) and after each later cycle of ``step`` new points."""
    position = panel.groupby("series_id").cumcount()
    for end in range(first, int(position.max()) + 2, step):
        yield panel[position < end].reset_index(drop=True)


def test_full_history_saves_append_only_the_new_rows_and_load_returns_the_history(tmp_path, panel):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    histories = list(_cycles(panel, 96, 6))
    for history in histories:
        store.save(history)  # what the ingestion node saves today: the whole grown history
    batches = store.batches()
    assert batches["batch_id"].tolist() == list(range(1, len(histories) + 1))
    assert batches["parent_batch_id"].isna().iloc[0] and batches["parent_batch_id"].iloc[1:].tolist() == \
        list(range(1, len(histories)))
    assert batches["n_rows"].tolist() == [96 * 4] + [6 * 4] * (len(histories) - 1)
    pd.testing.assert_frame_equal(store.load(), panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True),
                                  check_dtype=False)
    # "the history as of batch N" is a query
    as_of = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), as_of_batch=2).load()
    pd.testing.assert_frame_equal(as_of, histories[1].sort_values(["series_id", "timestamp"]).reset_index(drop=True),
                                  check_dtype=False)


def test_saving_the_same_data_again_stores_nothing_twice(tmp_path, panel):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    assert store.append(panel, source="day0.csv") == 1
    assert store.append(panel, source="day0.csv") is None  # a retried cycle
    assert len(store.batches()) == 1 and len(store.load()) == len(panel)
    assert store.batches()["sha256"].iloc[0] == rows_sha256(panel)
    assert store.batches()["source"].iloc[0] == "day0.csv"


def test_a_revised_value_is_refused_and_nothing_is_written(tmp_path, panel):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    store.save(panel.iloc[:-10])
    revised = panel.copy()
    revised.loc[3, "value"] += 1.0
    with pytest.raises(DatasetError, match=f"series {revised.loc[3, 'series_id']!r} at .* another value"):
        store.save(revised)
    assert len(store.batches()) == 1 and len(store.load()) == len(panel) - 10


def test_bad_frames_are_named(tmp_path, panel):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    with pytest.raises(DatasetError, match="does not exist yet"):
        store.load()
    store.save(panel.iloc[:100])
    with pytest.raises(DatasetError, match="columns are fixed"):
        store.save(panel.assign(extra=1.0))
    with pytest.raises(DatasetError, match="lacks column"):
        store.save(panel.drop(columns=["timestamp"]))
    with pytest.raises(DatasetError, match="more than once"):
        store.save(pd.concat([panel.iloc[100:110], panel.iloc[100:101]]))
    with pytest.raises(DatasetError, match="as_of_batch"):
        DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), as_of_batch=0)


def test_a_failure_inside_the_append_leaves_the_store_as_it_was(tmp_path, panel, monkeypatch):
    import ts_kedro.datasets.history_store as module

    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    store.save(panel.iloc[:100])

    def broken_digest(rows):  # fails inside the transaction: after the rows are inserted, before the batch row
        raise OSError("disk gone")

    monkeypatch.setattr(module, "rows_sha256", broken_digest)
    with pytest.raises(DatasetError, match="disk gone"):
        store.save(panel)
    monkeypatch.undo()
    assert len(store.load()) == 100 and len(store.batches()) == 1
    store.save(panel)
    assert len(store.load()) == len(panel) and len(store.batches()) == 2


def test_storage_grows_with_the_new_data_not_with_the_history(tmp_path, m4_sample_panel):
    # 100 hourly cycles of the 24 real series. DuckDB allocates its file in 256 KB blocks, so on data this small the
    # file size moves in block steps; over cycles 10..100 it must grow by less than 3x the raw size of the rows
    # those cycles appended plus two blocks, where the versioned Parquet history writes the whole history again
    # every cycle (docs/benchmarks.md measures 200 cycles of all 414 M4 Hourly series)
    block = 256 * 1024  # not a period: DuckDB's storage block size
    frame = m4_sample_panel[["series_id", "timestamp", "value"]]
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    histories = list(_cycles(frame.groupby("series_id").tail(400).reset_index(drop=True), 300, 1))
    parquet_bytes, sizes = 0, []
    for i, history in enumerate(histories):
        store.save(history)
        sizes.append((tmp_path / "history.duckdb").stat().st_size)
        if i % 10 == 0:  # the Parquet copies are written for every 10th cycle only and extrapolated (time)
            path = tmp_path / f"copy{i}.parquet"
            history.to_parquet(path)
            parquet_bytes += path.stat().st_size * 10
    appended = histories[-1].merge(histories[10], how="left", indicator=True).query("_merge == 'left_only'")
    raw_appended = len(appended.drop(columns="_merge").to_csv(index=False).encode())
    assert len(store.batches()) == len(histories) == 101
    assert sizes[-1] - sizes[10] < 3 * raw_appended + 2 * block
    assert sizes[-1] < parquet_bytes / 3


def test_migration_imports_the_newest_parquet_version_once(tmp_path, panel):
    root = tmp_path / "history_panel.parquet"
    for version, rows in (("2026-11-01T00.00.00.000Z", panel.iloc[:50]), ("2026-11-02T00.00.00.000Z", panel)):
        (root / version).mkdir(parents=True)
        rows.to_parquet(root / version / "history_panel.parquet")
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    assert migrate_versioned_parquet(root, store) == 1
    assert migrate_versioned_parquet(root, store) is None
    assert store.batches()["source"].tolist() == ["migration:history_panel.parquet/2026-11-02T00.00.00.000Z"]
    assert len(store.load()) == len(panel)


def test_the_first_load_or_save_migrates_the_newest_parquet_version_and_leaves_the_folder(tmp_path, panel, caplog):
    root = tmp_path / "history_panel.parquet"
    for version, rows in (("2026-11-01T00.00.00.000Z", panel.iloc[:50]), ("2026-11-02T00.00.00.000Z", panel.iloc[:200])):
        (root / version).mkdir(parents=True)
        rows.to_parquet(root / version / "history_panel.parquet")
    before = sorted((p.relative_to(root), p.stat().st_size) for p in root.rglob("*"))
    reader = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), migrate_from=str(root), missing_ok=True)
    assert reader.exists()
    with caplog.at_level("WARNING", logger="ts_kedro.datasets.history_store"):
        loaded = reader.load()  # the read side of ingestion migrates first
    assert "migrating the newest, 2026-11-02T00.00.00.000Z" in caplog.text
    pd.testing.assert_frame_equal(loaded, panel.iloc[:200].sort_values(["series_id", "timestamp"])
                                  .reset_index(drop=True), check_dtype=False)
    writer = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), migrate_from=str(root))
    writer.save(panel)  # no second migration: the file exists; only the 100 new rows become batch 2
    assert writer.batches()["n_rows"].tolist() == [200, len(panel) - 200]
    assert sorted((p.relative_to(root), p.stat().st_size) for p in root.rglob("*")) == before  # never touched

    # a save on a fresh path migrates too, before appending
    fresh = DuckDBHistoryDataset(str(tmp_path / "other.duckdb"), migrate_from=str(root))
    fresh.save(panel)
    assert fresh.batches()["source"].tolist()[0].startswith("migration:history_panel.parquet/2026-11-02")
    assert fresh.batches()["n_rows"].tolist() == [200, len(panel) - 200]


def test_missing_ok_loads_an_empty_history_when_there_is_nothing(tmp_path):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), migrate_from=str(tmp_path / "none.parquet"),
                                 missing_ok=True)
    assert not store.exists() and store.load().empty and not (tmp_path / "history.duckdb").exists()


def test_file_records_go_with_their_batch_once_and_a_redelivery_is_recorded_without_rows(tmp_path, panel):
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    first = panel.iloc[:100].copy()
    first.attrs["files"] = [{"file": "a.csv", "sha256": "a" * 64}]
    store.save(first)
    again = panel.iloc[:100].copy()
    again.attrs["files"] = [{"file": "a.csv", "sha256": "a" * 64}, {"file": "a_resent.csv", "sha256": "b" * 64}]
    store.save(again)  # retried cycle plus a re-delivered copy of the same rows: no new batch, one new file record
    records = store.recorded_files()
    assert len(store.batches()) == 1
    assert records[["file", "sha256", "batch_id"]].values.tolist() == [["a.csv", "a" * 64, 1],
                                                                       ["a_resent.csv", "b" * 64, 1]]
    with pytest.raises(DatasetError, match="sha256 hex digest"):
        store.append(panel, files=[{"file": "x.csv", "sha256": "not-a-digest"}])
    assert len(store.batches()) == 1  # refused before anything was written


def test_compact_rewrites_the_file_atomically_and_keeps_every_row(tmp_path, panel, monkeypatch):
    import ts_kedro.datasets.history_store as module

    path = tmp_path / "history.duckdb"
    store = DuckDBHistoryDataset(str(path))
    for history in _cycles(panel, 60, 20):
        store.save(history)

    def broken_digest(rows):  # a failed append after its rows were inserted: rolled back, its blocks stay
        raise OSError("disk gone")

    monkeypatch.setattr(module, "rows_sha256", broken_digest)
    with pytest.raises(DatasetError, match="disk gone"):
        store.save(pd.concat([panel, panel.assign(timestamp=panel["timestamp"] + pd.Timedelta(days=365))]))
    monkeypatch.undo()
    before_rows, before_batches = store.load(), store.batches()
    sizes = store.compact()
    assert sizes["bytes_after"] < sizes["bytes_before"]  # the rolled-back rows' blocks are gone
    assert path.stat().st_size == sizes["bytes_after"]
    assert not list(tmp_path.glob("*.compact.tmp*"))
    pd.testing.assert_frame_equal(store.load(), before_rows)
    pd.testing.assert_frame_equal(store.batches(), before_batches)
    store.save(panel.assign(timestamp=panel["timestamp"] + pd.Timedelta(days=365)))  # still appendable
    assert len(store.batches()) == len(before_batches) + 1


def test_series_range_loads_one_partition_of_series_and_series_rows_plans_it(tmp_path, panel):
    path = str(tmp_path / "history.duckdb")
    with_missing = panel.copy()
    first_id = sorted(panel["series_id"].unique())[0]
    last_row = with_missing.index[with_missing["series_id"] == first_id][-1]
    with_missing.loc[last_row, "value"] = float("nan")  # a stored row without a value: not in the observed span
    DuckDBHistoryDataset(path).save(with_missing)
    ids = sorted(panel["series_id"].unique())
    middle = DuckDBHistoryDataset(path, series_range=[ids[1], ids[2]]).load()
    expected = with_missing[with_missing["series_id"].isin(ids[1:3])].sort_values(["series_id", "timestamp"])
    pd.testing.assert_frame_equal(middle.astype({"series_id": str}), expected.reset_index(drop=True).astype({"series_id": str}),
                                  check_dtype=False)
    assert set(DuckDBHistoryDataset(path, series_range=[None, ids[0]]).load()["series_id"]) == {ids[0]}
    assert set(DuckDBHistoryDataset(path, series_range=[ids[3], None]).load()["series_id"]) == {ids[3]}
    rows = DuckDBHistoryDataset(path).series_rows()
    assert rows.index.tolist() == ids and rows["rows"].tolist() == panel.groupby("series_id").size().loc[ids].tolist()
    first = with_missing[with_missing["series_id"] == first_id]
    assert rows.loc[first_id, "last"] == first["timestamp"].iloc[-2]  # the last row has no value
    with pytest.raises(DatasetError, match="series_range must be"):
        DuckDBHistoryDataset(path, series_range="N1")
