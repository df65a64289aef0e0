"""Ingestion on real M4 Hourly continuations: valid batches extend the history, faulty ones are quarantined."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ts_kedro.datasets import CSVChunkSource, DuckDBHistoryDataset
from ts_kedro.pipelines.data_processing.nodes import validate_schema
from ts_kedro.pipelines.ingestion import create_pipeline
from ts_kedro.pipelines.ingestion.batch_files import BatchFileRouterDataset, move_file_safely
from ts_kedro.pipelines.ingestion.nodes import (
    HistoryIntegrityError,
    IngestionConfigError,
    append_to_history,
    check_continuity,
    plan_batch_moves,
    select_previous_history,
    validate_incoming_batches,
)

PANEL = {"freq": "h", "season_length": 24, "seasonal_periods": [24, 168], "horizon": 48, "levels": [80, 95]}
SERIES = ["H1", "H103", "H120", "H137"]
SETTINGS = {"new_series_policy": "quarantine", "max_gap_steps": 6, "max_reported_rows": 5}


@pytest.fixture(scope="module")
def project_params(project_root):
    def read(name):
        return yaml.safe_load((project_root / "conf" / "base" / name).read_text())
    return {**read("parameters_data_processing.yml"), **read("parameters_ingestion.yml")}


@pytest.fixture(scope="module")
def history_seed(m4_sample_panel) -> pd.DataFrame:
    """Day-0 validated panel of four real series (last 400 training hours each)."""
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(SERIES)]
    return panel.groupby("series_id", group_keys=False).tail(400).reset_index(drop=True)


@pytest.fixture(scope="module")
def continuation(shared_data) -> pd.DataFrame:
    """The real next 48 hours (M4 Hourly test part) of the same series."""
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    test = test[test["series_id"].isin(SERIES)].copy()
    test["value"] = test["value"].astype(float)
    return test.sort_values(["series_id", "timestamp"]).reset_index(drop=True)


def write_batch(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return path


def as_batch(path: Path):
    return lambda: CSVChunkSource(str(path))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- unit tests per node -------------------------------------------------------------------------------------

def test_select_previous_history_seeds_with_validated_panel_then_takes_the_store(history_seed):
    assert select_previous_history(history_seed, pd.DataFrame()).equals(history_seed)  # no store yet
    stored = history_seed.head(20).astype({"timestamp": "datetime64[us]"})  # what DuckDB hands back
    previous = select_previous_history(history_seed, stored)
    assert len(previous) == 20 and previous["timestamp"].dtype == history_seed["timestamp"].dtype
    assert not previous.attrs["seeded_from_day0"]


def test_real_continuation_is_all_new_rows(history_seed, continuation):
    new_rows, facts, violations = check_continuity(continuation, history_seed, "h", SETTINGS)
    assert violations == []
    assert facts["new_rows"] == len(continuation) == 4 * 48
    assert facts["missing_steps_before_batch"] == {s: 0 for s in SERIES}


def test_exact_duplicates_of_history_are_ignored_and_counted(history_seed, continuation):
    repeated = history_seed.groupby("series_id").tail(3)
    batch = pd.concat([repeated, continuation]).sort_values(["series_id", "timestamp"])
    new_rows, facts, violations = check_continuity(batch, history_seed, "h", SETTINGS)
    assert violations == []
    assert facts["duplicate_rows_ignored"] == 12
    assert len(new_rows) == len(continuation)


def test_overlap_with_different_values_is_a_conflict_naming_series_and_rows(history_seed, continuation):
    # synthetic edit: the last two history hours of H103 re-sent with +1 added
    changed = history_seed[history_seed["series_id"] == "H103"].tail(2).assign(value=lambda f: f["value"] + 1)
    batch = pd.concat([changed, continuation[continuation["series_id"] == "H103"]])
    _, _, violations = check_continuity(batch, history_seed, "h", SETTINGS)
    assert [(v["rule"], v["series_id"]) for v in violations] == [("overlap_conflict", "H103")]
    first = violations[0]["first_rows"][0]
    assert first["value"] == first["value_history"] + 1


def test_gap_beyond_policy_is_a_violation_but_within_policy_is_not(history_seed, continuation):
    h1 = continuation[continuation["series_id"] == "H1"]
    _, facts, violations = check_continuity(h1.iloc[6:], history_seed, "h", SETTINGS)
    assert violations == [] and facts["missing_steps_before_batch"] == {"H1": 6}
    _, _, violations = check_continuity(h1.iloc[7:], history_seed, "h", SETTINGS)
    assert [(v["rule"], v["series_id"]) for v in violations] == [("gap", "H1")]
    assert "7 missing step(s)" in violations[0]["message"]


def test_unknown_series_follows_policy(history_seed, continuation):
    known = history_seed[history_seed["series_id"] != "H137"]
    batch = continuation[continuation["series_id"] == "H137"]
    _, _, violations = check_continuity(batch, known, "h", SETTINGS)
    assert [v["rule"] for v in violations] == ["unknown_series"]
    new_rows, _, violations = check_continuity(batch, known, "h", {**SETTINGS, "new_series_policy": "accept"})
    assert violations == [] and len(new_rows) == 48


def test_batches_are_checked_in_order_against_the_growing_history(
    tmp_path, history_seed, continuation, project_params
):
    first = write_batch(tmp_path, "batch_01", continuation.groupby("series_id").head(24))
    second = write_batch(tmp_path, "batch_02", continuation.groupby("series_id").tail(24))
    accepted, report = validate_incoming_batches(
        {"batch_02": as_batch(second), "batch_01": as_batch(first)}, history_seed,
        project_params["data_processing"], project_params["ingestion"], PANEL)
    assert [b["status"] for b in report["batches"]] == ["accepted", "accepted"]
    assert len(accepted) == 4 * 48 and report["history_rows_after"] == len(history_seed) + 4 * 48
    assert list(accepted.columns) == list(history_seed.columns)


def test_malformed_batch_is_quarantined_with_the_schema_rule(tmp_path, history_seed, project_params):
    path = tmp_path / "broken.csv"
    path.write_text("series_id,timestamp\nH1,2015-07-30 16:00:00\n")
    accepted, report = validate_incoming_batches({"broken": as_batch(path)}, history_seed,
                                                 project_params["data_processing"], project_params["ingestion"], PANEL)
    assert accepted.empty and report["n_quarantined"] == 1
    violation = report["batches"][0]["violations"][0]
    assert violation["rule"] == "schema" and "column 'value' missing" in violation["message"]


def test_bad_ingestion_parameters_fail_clearly(history_seed, project_params):
    with pytest.raises(IngestionConfigError, match="new_series_policy"):
        validate_incoming_batches({}, history_seed, project_params["data_processing"],
                                  {"new_series_policy": "maybe"}, PANEL)


def test_append_to_history_never_rewrites_existing_keys(history_seed, continuation):
    history = append_to_history(history_seed, continuation)
    assert len(history) == len(history_seed) + len(continuation)
    assert history.groupby("series_id")["timestamp"].is_monotonic_increasing.all()
    with pytest.raises(HistoryIntegrityError, match="already exist"):
        append_to_history(history_seed, history_seed.tail(1))


def test_plan_batch_moves_refuses_when_saved_history_lacks_accepted_rows(history_seed):
    report = {"history_rows_after": len(history_seed) + 5, "history_end": {}, "batches": []}
    with pytest.raises(HistoryIntegrityError, match="left in data/01_raw/incoming"):
        plan_batch_moves(report, history_seed)


def test_move_file_safely_keeps_bytes_and_never_overwrites(tmp_path):
    source = tmp_path / "in" / "a.csv"
    source.parent.mkdir()
    source.write_bytes(b"series_id,timestamp,value\nH1,2015-07-30 16:00:00,619\n")
    digest = sha256(source)
    moved = move_file_safely(source, tmp_path / "out" / "a.csv")
    assert not source.exists() and sha256(tmp_path / "out" / "a.csv") == digest == moved["sha256"]
    source.write_bytes(b"other")
    with pytest.raises(Exception, match="refusing to overwrite"):
        move_file_safely(source, tmp_path / "out" / "a.csv")
    assert source.exists()


def test_router_rejects_paths_outside_the_drop_folder(tmp_path):
    router = BatchFileRouterDataset(str(tmp_path / "in"), str(tmp_path / "arch"), str(tmp_path / "q"))
    (tmp_path / "in").mkdir()
    with pytest.raises(Exception, match="outside"):
        router.save({"archive": ["../escape"], "quarantine": {}})


# -- slice run on the project's own catalog entries --------------------------------------------------------

def project_catalog(project_root: Path, root: Path, save_version: str, params: dict) -> DataCatalog:
    """The catalog_ingestion.yml entries with every data/ path moved under ``root``."""
    text = (project_root / "conf" / "base" / "catalog_ingestion.yml").read_text()
    # ${runtime_params:name, default} -> default, as Kedro resolves it when the run sets no such parameter
    text = re.sub(r"\$\{runtime_params:[^,}]+,\s*([^}]+)\}", r"\1", text)
    config = yaml.safe_load(text.replace("data/", f"{root.as_posix()}/data/"))
    catalog = DataCatalog.from_config(config, save_version=save_version)
    for name, value in {**params, "panel": PANEL}.items():
        catalog[f"params:{name}"] = value
    return catalog


def run_ingestion(project_root, root, save_version, params, validated_panel):
    catalog = project_catalog(project_root, root, save_version, params)
    catalog["validated_panel"] = MemoryDataset(validated_panel)
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def test_ingestion_pipeline_end_to_end_on_real_batches(
    tmp_path, project_root, history_seed, continuation, project_params
):
    incoming = tmp_path / "data" / "01_raw" / "incoming"
    # seed = Day-0 validated panel, produced by data_processing's own schema node from a real CSV
    seed_csv = write_batch(tmp_path, "day0", history_seed)
    validated, _ = validate_schema(CSVChunkSource(str(seed_csv)), project_params["data_processing"])

    first_three = continuation[continuation["series_id"] != "H137"]
    files = {
        "2015-07-30_a": write_batch(incoming, "2015-07-30_a", first_three.groupby("series_id").head(24)),
        "2015-07-31_b": write_batch(incoming, "2015-07-31_b", first_three.groupby("series_id").tail(24)),
        # synthetic edit: the last history hour of H1 re-sent with another value
        "conflict": write_batch(incoming, "conflict", history_seed[history_seed["series_id"] == "H1"].tail(1)
                                .assign(value=lambda f: f["value"] * 2)),
        # real H137 values, but its first 24 hours are missing: a 24-step gap > max_gap_steps
        "gap": write_batch(incoming, "gap", continuation[continuation["series_id"] == "H137"].iloc[24:]),
    }
    (incoming / "malformed.csv").write_text('series_id,timestamp,value\nH1,"2015-08-01 16:00:00,7\n')
    digests = {name: sha256(path) for name, path in files.items()}

    catalog = run_ingestion(project_root, tmp_path, "2026-11-27T10.00.00.000Z", project_params, validated)

    report = json.loads((tmp_path / "data" / "08_reporting" / "ingestion_report.json").read_text())
    status = {b["batch"]: b["status"] for b in report["batches"]}
    assert status == {"2015-07-30_a": "accepted", "2015-07-31_b": "accepted", "conflict": "quarantined",
                      "gap": "quarantined", "malformed": "quarantined"}
    assert not any(incoming.iterdir())

    history = catalog.load("history_panel")
    assert len(history) == len(validated) + 3 * 48
    pd.testing.assert_frame_equal(  # quarantined series and values untouched
        history[history["series_id"] == "H137"].reset_index(drop=True),
        validated[validated["series_id"] == "H137"].reset_index(drop=True))
    assert history[history["series_id"] == "H1"]["value"].iloc[-48:].tolist() == \
        continuation[continuation["series_id"] == "H1"]["value"].tolist()

    archived = {p.stem: p for p in (tmp_path / "data" / "01_raw" / "archive").rglob("*.csv")}
    assert {name: sha256(archived[name]) for name in ("2015-07-30_a", "2015-07-31_b")} == \
        {name: digests[name] for name in ("2015-07-30_a", "2015-07-31_b")}
    quarantine = tmp_path / "data" / "01_raw" / "quarantine"
    assert sha256(next(quarantine.rglob("conflict.csv"))) == digests["conflict"]
    reports = {p.name.split(".")[0]: json.loads(p.read_text()) for p in quarantine.rglob("*.report.json")}
    assert {k: r["quarantined_because"] for k, r in reports.items()} == {
        "conflict": ["overlap_conflict"], "gap": ["gap"], "malformed": ["schema"]}
    assert reports["conflict"]["violations"][0]["series_id"] == "H1"
    gap_start = continuation[continuation["series_id"] == "H137"]["timestamp"].iloc[24]
    assert reports["gap"]["violations"][0]["first_rows"][0]["timestamp"] == f"{gap_start:%Y-%m-%d %H:%M:%S}"
    assert len(catalog.load("batch_file_moves")) == 5

    primary = catalog.load("history_primary_panel")
    ends = primary.groupby("series_id")["timestamp"].max()
    assert ends["H1"] == continuation[continuation["series_id"] == "H1"]["timestamp"].max()
    assert ends["H137"] == validated[validated["series_id"] == "H137"]["timestamp"].max()
    assert not primary["value"].isna().any()

    # one file for the whole history, no Parquet copy; the run is one batch (the Day-0 seed plus the two files)
    assert not (tmp_path / "data" / "02_intermediate" / "history_panel.parquet").exists()
    store = DuckDBHistoryDataset(str(tmp_path / "data" / "02_intermediate" / "history.duckdb"))
    batches = store.batches()
    assert batches["n_rows"].tolist() == [len(validated) + 3 * 48]
    assert batches["source"].iloc[0].endswith("2015-07-30_a.csv, 2015-07-31_b.csv")
    assert sorted(store.recorded_files()["sha256"]) == sorted(digests[n] for n in ("2015-07-30_a", "2015-07-31_b"))
    assert report["retention"]["archive_files_removed"] == [] and report["retention"]["model_versions"] == \
        {"status": "off", "deleted": [], "would_delete": []}

    # a second day with nothing new, then a retried delivery of an archived file: nothing is stored twice
    run_ingestion(project_root, tmp_path, "2026-11-28T10.00.00.000Z", project_params, validated)
    assert len(store.batches()) == 1
    (incoming / "2015-07-30_a.csv").write_bytes(archived["2015-07-30_a"].read_bytes())
    run_ingestion(project_root, tmp_path, "2026-11-29T10.00.00.000Z", project_params, validated)
    report = json.loads((tmp_path / "data" / "08_reporting" / "ingestion_report.json").read_text())
    assert [b["status"] for b in report["batches"]] == ["accepted"] and report["rows_accepted"] == 0
    assert len(store.batches()) == 1 and len(store.load()) == len(validated) + 3 * 48
    assert not any(incoming.iterdir())


def test_an_old_versioned_parquet_history_is_migrated_by_the_first_run(
    tmp_path, project_root, history_seed, continuation, project_params
):
    seed_csv = write_batch(tmp_path, "day0", history_seed)
    validated, _ = validate_schema(CSVChunkSource(str(seed_csv)), project_params["data_processing"])
    old = tmp_path / "data" / "02_intermediate" / "history_panel.parquet"
    grown = pd.concat([validated, continuation.groupby("series_id").head(24)]).sort_values(["series_id", "timestamp"])
    for version, frame in (("2026-11-01T00.00.00.000Z", validated), ("2026-11-02T00.00.00.000Z", grown)):
        (old / version).mkdir(parents=True)
        frame.reset_index(drop=True).to_parquet(old / version / "history_panel.parquet")
    listing = sorted(str(p.relative_to(old)) for p in old.rglob("*"))
    incoming = tmp_path / "data" / "01_raw" / "incoming"
    write_batch(incoming, "day2", continuation.groupby("series_id").tail(24))

    run_ingestion(project_root, tmp_path, "2026-11-27T10.00.00.000Z", project_params, validated)

    store = DuckDBHistoryDataset(str(tmp_path / "data" / "02_intermediate" / "history.duckdb"))
    batches = store.batches()
    assert batches["source"].iloc[0] == "migration:history_panel.parquet/2026-11-02T00.00.00.000Z"
    assert batches["n_rows"].tolist() == [len(grown), 4 * 24]  # the newest version, then this run's batch
    assert len(store.load()) == len(validated) + 4 * 48
    assert sorted(str(p.relative_to(old)) for p in old.rglob("*")) == listing  # the Parquet folder is untouched


def _planted_batches(history_seed: pd.DataFrame, continuation: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Real continuations plus synthetic faults: duplicates, a revised value, a gap, an early row, an off-grid
    row, an unknown series, and a clean batch."""
    h1 = continuation[continuation["series_id"] == "H1"]
    early = history_seed[history_seed["series_id"] == "H1"].head(1).assign(
        timestamp=lambda f: f["timestamp"] - pd.Timedelta(hours=5))
    off_grid = h1.head(1).assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(minutes=30))
    return {
        "clean": continuation,
        "duplicates": pd.concat([history_seed.groupby("series_id").tail(3), continuation]),
        "conflict": pd.concat([history_seed[history_seed["series_id"] == "H103"].tail(2).assign(
            value=lambda f: f["value"] + 1), continuation[continuation["series_id"] == "H103"]]),
        "gap": h1.iloc[7:],
        "early": pd.concat([early, h1]),
        "off_grid": pd.concat([off_grid, h1.iloc[1:]]),
        "unknown": continuation.assign(series_id=lambda f: f["series_id"] + "_new"),
    }


def test_the_store_index_checks_batches_like_the_history_frame(tmp_path, history_seed, continuation):
    """``load_as: index`` (bounds and keyed rows by query) gives check_continuity and append_to_history the same
    answers as the whole history frame, on every planted fault, and never loads the history whole."""
    store = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"))
    store.save(history_seed)
    index = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), load_as="index").load()
    assert len(index) == len(history_seed) and list(index.bounds.index) == sorted(SERIES)
    frame = select_previous_history(history_seed, store.load())

    def whole_load(self):
        raise AssertionError("the history was loaded whole")

    original = DuckDBHistoryDataset.load
    DuckDBHistoryDataset.load = whole_load
    try:
        for name, batch in _planted_batches(history_seed, continuation).items():
            batch = batch.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
            for policy in ("quarantine", "accept"):
                settings = {**SETTINGS, "new_series_policy": policy}
                expected = check_continuity(batch, frame, "h", settings)
                got = check_continuity(batch, index, "h", settings)
                assert got[1] == expected[1] and got[2] == expected[2], name
                pd.testing.assert_frame_equal(got[0].reset_index(drop=True), expected[0].reset_index(drop=True))
        rules = {name: sorted({v["rule"] for v in check_continuity(
            b.sort_values(["series_id", "timestamp"]).reset_index(drop=True), index, "h", SETTINGS)[2]})
                 for name, b in _planted_batches(history_seed, continuation).items()}
        assert rules == {"clean": [], "duplicates": [], "conflict": ["overlap_conflict"], "gap": ["gap"],
                         "early": ["before_history_start"], "off_grid": ["off_grid"], "unknown": ["unknown_series"]}
        # the next batch of a run is checked against the history extended by the accepted one
        extended = index.extended(continuation)
        _, facts, violations = check_continuity(continuation, extended, "h", SETTINGS)
        assert violations == [] and facts["new_rows"] == 0 and facts["duplicate_rows_ignored"] == len(continuation)
        # append: only the new rows go to the store, and a stored key is refused as with the frame
        new_rows = append_to_history(index, continuation)
        assert len(new_rows) == len(continuation)
        with pytest.raises(HistoryIntegrityError, match="already exist"):
            append_to_history(index, history_seed.tail(1))
    finally:
        DuckDBHistoryDataset.load = original
    store.save(new_rows)
    grown = store.load()
    pd.testing.assert_frame_equal(
        grown.astype({"timestamp": "datetime64[ns]"}),
        append_to_history(frame, continuation).reset_index(drop=True), check_like=True)
    saved = DuckDBHistoryDataset(str(tmp_path / "history.duckdb"), load_as="index").load()
    report = {"history_rows_after": len(history_seed) + len(continuation),
              "history_end": {s: e.isoformat() for s, e in continuation.groupby("series_id")["timestamp"].max().items()},
              "batches": []}
    assert plan_batch_moves(report, saved) == plan_batch_moves(report, grown)
