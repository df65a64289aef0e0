"""Regression tests of issue 13 for Day-N batches: what went into the history wrong, or blocked the drop folder."""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.ingestion.batch_files import OptionalPartitionedDataset
from ts_kedro.pipelines.ingestion.nodes import plan_batch_moves, select_previous_history, validate_incoming_batches

CONF = Path(__file__).resolve().parents[3] / "conf" / "base"
PANEL = {"freq": "h", "horizon": 48}
INGESTION = {"new_series_policy": "quarantine", "max_gap_steps": 6, "max_reported_rows": 5}


@pytest.fixture
def data_processing() -> dict:
    return copy.deepcopy(yaml.safe_load((CONF / "parameters_data_processing.yml").read_text())["data_processing"])


@pytest.fixture
def history() -> pd.DataFrame:
    """200 hours of two series, ending 2021-03-09 07:00 (UTC, naive as the history keeps it)."""
    stamps = pd.date_range("2021-03-01 00:00", periods=200, freq="h")
    frames = [pd.DataFrame({"series_id": sid, "timestamp": stamps, "value": [float(i % 24 + k) for i in range(200)]})
              for k, sid in enumerate(["H1", "H103"])]
    return pd.concat(frames, ignore_index=True)


def batch_rows(series: str, start: str, n: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> list[str]:
    return [f"{series},{ts.strftime(fmt)},{float(i)!r}" for i, ts in enumerate(pd.date_range(start, periods=n, freq="h"))]


def write(folder: Path, name: str, rows: list[str], header: str = "series_id,timestamp,value\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def loaders(*paths: Path) -> dict:
    return {path.stem: (lambda p=path: CSVChunkSource(str(p))) for path in paths}


def run(batches: dict, history: pd.DataFrame, data_processing: dict) -> tuple[pd.DataFrame, dict]:
    return validate_incoming_batches(batches, history, data_processing, INGESTION, PANEL)


def rules(report: dict, batch: str) -> list[str]:
    entry = next(b for b in report["batches"] if b["batch"] == batch)
    return [v["rule"] for v in entry["violations"]]


def test_a_batch_row_with_a_surplus_field_is_quarantined(tmp_path, history, data_processing):
    rows = batch_rows("H103", "2021-03-09 08:00", 5)
    rows[2] = "H103,2021-03-09 10:00:00,1,5"  # stored as 1.0 before
    accepted, report = run(loaders(write(tmp_path, "day1.csv", rows)), history, data_processing)
    assert report["n_quarantined"] == 1 and accepted.empty
    message = report["batches"][0]["violations"][0]["message"]
    assert rules(report, "day1") == ["schema"] and "line 4" in message and "day1.csv" in message


def test_an_infinite_value_in_a_batch_is_quarantined(tmp_path, history, data_processing):
    rows = batch_rows("H1", "2021-03-09 08:00", 5)
    rows[1] = "H1,2021-03-09 09:00:00,-inf"
    accepted, report = run(loaders(write(tmp_path, "day1.csv", rows)), history, data_processing)
    assert rules(report, "day1") == ["schema"] and accepted.empty
    assert "infinite" in report["batches"][0]["violations"][0]["message"]


def test_rows_before_the_history_start_are_refused(tmp_path, history, data_processing):
    early = batch_rows("H1", "2011-03-01 00:00", 24)  # a batch 10 years early grew the history fivefold
    accepted, report = run(loaders(write(tmp_path, "early.csv", early)), history, data_processing)
    assert rules(report, "early") == ["before_history_start"] and accepted.empty
    assert "history start 2021-03-01 00:00:00" in report["batches"][0]["violations"][0]["message"]


def test_off_grid_rows_are_refused_at_ingestion(tmp_path, history, data_processing):
    rows = batch_rows("H1", "2021-03-09 08:00", 4) + ["H1,2021-03-09 11:30:00,7.0"]
    accepted, report = run(loaders(write(tmp_path, "half_hour.csv", rows)), history, data_processing)
    assert rules(report, "half_hour") == ["off_grid"] and accepted.empty
    assert report["batches"][0]["violations"][0]["first_rows"][0]["timestamp"] == "2021-03-09 11:30:00"


def test_files_with_another_suffix_in_incoming_are_reported(tmp_path, history, data_processing):
    incoming = tmp_path / "incoming"
    write(incoming, "day1.csv", batch_rows("H1", "2021-03-09 08:00", 3))
    write(incoming, "day2.CSV", batch_rows("H1", "2021-03-09 11:00", 3))
    write(incoming, "notes.txt", ["nothing"])
    (incoming / ".gitkeep").write_text("")
    dataset = OptionalPartitionedDataset(path=str(incoming), dataset="ts_kedro.datasets.CSVChunkSourceDataset",
                                         filename_suffix=".csv", report_other_files=True)
    accepted, report = run(dataset.load(), history, data_processing)
    assert report["n_accepted"] == 1 and len(accepted) == 3
    assert report["n_ignored"] == 2 and [Path(f).name for f in report["ignored_files"]] == ["day2.CSV", "notes.txt"]
    reasons = {b["batch"]: b["violations"][0]["message"] for b in report["batches"] if b["status"] == "ignored"}
    assert "rename it to day2.csv" in reasons["day2.CSV"]
    # ignored files are neither archived nor quarantined: they stay in incoming/ and are reported each run
    history_after = pd.concat([history, accepted], ignore_index=True)
    moves = plan_batch_moves(report, history_after)
    assert moves["archive"] == ["day1"] and moves["quarantine"] == {}


def test_a_bad_byte_after_the_first_chunk_quarantines_only_that_batch(tmp_path, history, data_processing):
    bad = write(tmp_path, "day1.csv", batch_rows("H1", "2021-03-09 08:00", 50))
    raw = bad.read_bytes().split(b"\n")
    raw[41] = raw[41].replace(b"H1", b"H\xff1")
    bad.write_bytes(b"\n".join(raw))
    good = write(tmp_path, "day2.csv", batch_rows("H103", "2021-03-09 08:00", 5))
    data_processing["chunk_size"] = 10
    accepted, report = run(loaders(bad, good), history, data_processing)
    assert rules(report, "day1") == ["schema"] and rules(report, "day2") == []
    assert "line 42, column 2 (byte 0xff)" in report["batches"][0]["violations"][0]["message"]
    assert report["n_accepted"] == 1 and len(accepted) == 5


def test_a_bad_byte_late_in_a_large_batch_is_a_schema_violation_with_its_line(tmp_path, history, data_processing):
    """Past the header read's first buffer (the 1.2 MB batch of the issue's kind): a bare UnicodeDecodeError
    before, which stopped the whole ingestion run and left every batch in incoming/."""
    bad = write(tmp_path, "day1.csv", batch_rows("H1", "2021-03-09 08:00", 40_000))
    raw = bad.read_bytes().split(b"\n")
    raw[38_001] = raw[38_001].replace(b"H1", b"H\xff1")  # file line 38,002
    bad.write_bytes(b"\n".join(raw))
    assert bad.stat().st_size > 1_000_000
    good = write(tmp_path, "day2.csv", batch_rows("H103", "2021-03-09 08:00", 5))
    data_processing["chunk_size"] = 1000
    accepted, report = run(loaders(bad, good), history, data_processing)
    assert rules(report, "day1") == ["schema"] and rules(report, "day2") == []
    assert "line 38002, column 2 (byte 0xff)" in report["batches"][0]["violations"][0]["message"]
    assert report["n_accepted"] == 1 and len(accepted) == 5


def test_any_unreadable_batch_is_quarantined_and_the_others_go_through(tmp_path, history, data_processing,
                                                                        monkeypatch):
    from ts_kedro.pipelines.ingestion import nodes

    bad = write(tmp_path, "day1.csv", batch_rows("H1", "2021-03-09 08:00", 5))
    good = write(tmp_path, "day2.csv", batch_rows("H103", "2021-03-09 08:00", 5))
    real = nodes.validate_schema

    def flaky(source, params, panel=None):
        if source.filepath == str(bad):
            raise RuntimeError("a fault no schema rule knows")
        return real(source, params, panel)

    monkeypatch.setattr(nodes, "validate_schema", flaky)
    accepted, report = run(loaders(bad, good), history, data_processing)
    assert rules(report, "day1") == ["unreadable"] and rules(report, "day2") == []
    assert "RuntimeError: 'a fault no schema rule knows'" in report["batches"][0]["violations"][0]["message"]
    assert len(accepted) == 5


def test_batch_offsets_changing_across_dst_are_converted_to_utc(tmp_path, data_processing):
    stamps = pd.date_range("2021-10-30 00:00", periods=22, freq="h")  # UTC, the history's clock
    history = pd.DataFrame({"series_id": "B1", "timestamp": stamps, "value": 1.0})
    local = pd.date_range("2021-10-30 22:00", periods=6, freq="h", tz="UTC").tz_convert("Europe/Berlin")
    rows = [f"B1,{ts.isoformat()},{i}.0" for i, ts in enumerate(local)]  # +02:00 then +01:00
    accepted, report = run(loaders(write(tmp_path, "dst.csv", rows)), history, data_processing)
    assert report["n_accepted"] == 1
    assert accepted["timestamp"].tolist() == list(pd.date_range("2021-10-30 22:00", periods=6, freq="h"))


def test_a_million_character_series_id_in_a_batch_is_fast_and_capped(tmp_path, history, data_processing, caplog):
    rows = [f"{'Y' * 1_000_000},2021-03-09 08:00:00,1.0"]
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        _, report = run(loaders(write(tmp_path, "long.csv", rows)), history, data_processing)
    assert time.perf_counter() - started < 30
    assert rules(report, "long") == ["unknown_series"]
    assert len(report["batches"][0]["violations"][0]["message"]) < 2_000
    assert all(len(record.getMessage()) < 2_000 for record in caplog.records)


def test_the_history_says_where_it_came_from(history):
    history.attrs["source_file"] = "data/01_raw/day0.csv"
    assert "day0.csv" in select_previous_history(history, {}).attrs["source_file"]


def test_a_batch_of_time_steps_continues_a_history_of_steps(tmp_path, data_processing):
    # synthetic: a history read from steps 0-199 (dated hourly from the default origin) and a batch of steps 200-204
    data_processing["source"]["timestamp_format"] = "steps"
    stamps = pd.date_range("2000-01-01", periods=200, freq="h")
    history = pd.DataFrame({"series_id": "S1", "timestamp": stamps, "value": 1.0})
    batch = write(tmp_path, "day1.csv", [f"S1,{k},{k}.5" for k in range(200, 205)])
    accepted, report = run(loaders(batch), history, data_processing)
    assert report["n_accepted"] == 1
    assert list(accepted["timestamp"]) == list(pd.date_range("2000-01-09 08:00", periods=5, freq="h"))
    overlap = write(tmp_path, "day2.csv", [f"S1,{k},{k}.0" for k in range(198, 201)])  # steps already stored
    _, report = run(loaders(overlap), history, data_processing)
    assert report["n_accepted"] == 0


def test_a_wide_batch_and_snapped_stamps_are_read_as_the_day0_file_was(tmp_path, history, data_processing):
    """Day-N batches go through the same reader: with ``layout: wide`` a batch has a column per series, with
    ``snap_to_freq`` a reading at :30 is the full hour (without it the same row is refused as off the grid)."""
    stamps = pd.date_range("2021-03-09 08:00", periods=5, freq="h")
    wide = write(tmp_path, "wide.csv", [f"{t:%Y-%m-%d %H:%M:%S},{i}.5,{10 + i}.5" for i, t in enumerate(stamps)],
                 header="timestamp,H1,H103\n")
    params = copy.deepcopy(data_processing)
    params["source"]["layout"] = "wide"
    accepted, report = run(loaders(wide), history, params)
    assert report["n_quarantined"] == 0 and len(accepted) == 10
    h103 = accepted[accepted["series_id"] == "H103"].sort_values("timestamp")
    assert h103["timestamp"].tolist() == stamps.tolist() and h103["value"].tolist() == [10.5, 11.5, 12.5, 13.5, 14.5]

    late = write(tmp_path / "late", "late.csv", ["H1,2021-03-09 08:30:00,1.0", "H1,2021-03-09 09:29:59,2.0"])
    _, refused = run(loaders(late), history, data_processing)
    assert rules(refused, "late") == ["off_grid"]
    data_processing["source"]["snap_to_freq"] = True
    accepted, report = run(loaders(late), history, data_processing)
    assert report["n_quarantined"] == 0
    assert accepted["timestamp"].tolist() == list(pd.to_datetime(["2021-03-09 08:00", "2021-03-09 09:00"]))
