"""Time columns that number the periods (1, 2, 3, ...) instead of dating them: ``timestamp_format: steps``.

Real panels such as M3's "other" series (tests/data/samples/m3_other_steps.csv) come that way. The steps are
dated once, at reading (step k: the k-th ``panel.freq`` stamp from ``source.step_origin``), so the grid,
profile, backtest and Day-N batches all work on dates and a later batch's steps land on the same dates.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError
from ts_kedro.pipelines.data_processing.nodes import select_future_covariates, validate_schema
from ts_kedro.pipelines.data_processing.schema import StepClock

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "m3_other_steps.csv"


@pytest.mark.parametrize("freq, expected", [
    ("D", ["2000-01-01", "2000-01-02", "2000-01-11"]),
    ("MS", ["2000-01-01", "2000-02-01", "2000-11-01"]),
    ("QS", ["2000-01-01", "2000-04-01", "2002-07-01"]),
    ("W-SUN", ["2000-01-02", "2000-01-09", "2000-03-12"]),  # anchored: the first Sunday from the origin
    ("h", ["2000-01-01 00:00", "2000-01-01 01:00", "2000-01-01 10:00"]),
])
def test_step_k_is_the_kth_stamp_from_the_origin(freq, expected):
    clock = StepClock.from_params("2000-01-01", freq)
    assert list(clock.dates(np.array([0, 1, 10]))) == list(pd.to_datetime(expected))


def test_the_real_steps_sample_is_read_as_dates(write_csv, params, panel):
    source = write_csv(SAMPLE.read_text(), name="m3_other.csv")
    params["source"]["timestamp_format"] = "steps"
    panel["freq"] = "MS"
    validated, found = validate_schema(source, params, panel)

    raw = pd.read_csv(SAMPLE, dtype={"series_id": str}).sort_values(["series_id", "timestamp"])
    expected = pd.date_range("2000-01-01", periods=int(raw["timestamp"].max()) + 1, freq="MS")[raw["timestamp"]]
    assert list(validated["timestamp"]) == list(expected)
    assert np.allclose(validated["value"], raw["value"])
    assert found["timestamp_format"].startswith("steps")


def test_a_later_batch_gets_the_same_dates(write_csv, params, panel):
    # synthetic: a history of steps 1-5 and a batch of steps 6-7 read separately (as Day N reads its batches)
    params["source"]["timestamp_format"] = "steps"
    panel["freq"] = "W-SUN"
    history, _ = validate_schema(write_csv("series_id,timestamp,value\n" + "".join(
        f"a,{k},{k}\n" for k in range(1, 6)), name="history.csv"), params, panel)
    batch, _ = validate_schema(write_csv("series_id,timestamp,value\na,6,6\na,7,7\n", name="batch.csv"),
                               params, panel)
    stamps = pd.DatetimeIndex([*history["timestamp"], *batch["timestamp"]])
    assert (stamps.to_series().diff().dropna() == pd.Timedelta(weeks=1)).all()


def test_whole_numbers_without_steps_are_refused_with_the_setting_to_use(write_csv, params, panel):
    source = write_csv(SAMPLE.read_text(), name="m3_other.csv")
    with pytest.raises(SchemaError, match=r"'timestamp' in .*m3_other\.csv holds whole numbers.*timestamp_format: "
                                          r"steps"):
        validate_schema(source, params, panel)


def test_compact_dates_are_still_dates(write_csv, params, panel):
    # 20200131 is a whole number too, but a date the format guess reads: it must not be taken for a step
    source = write_csv("series_id,timestamp,value\na,20200131,1\na,20200201,2\n")
    validated, _ = validate_schema(source, params, panel)
    assert list(validated["timestamp"]) == list(pd.to_datetime(["2020-01-31", "2020-02-01"]))


def test_a_step_that_is_not_a_whole_number_is_named_with_its_line(write_csv, params, panel):
    params["source"]["timestamp_format"] = "steps"
    source = write_csv("series_id,timestamp,value\na,1,1\na,2.5,2\na,-3,3\n", name="bad_steps.csv")
    with pytest.raises(SchemaError, match=r"bad_steps\.csv: 2 time step\(s\).*lines 3, 4 \(values '2\.5', '-3'\)"):
        validate_schema(source, params, panel)


def test_steps_without_a_panel_frequency_name_the_parameter(write_csv, params):
    params["source"]["timestamp_format"] = "steps"
    source = write_csv("series_id,timestamp,value\na,1,1\n")
    with pytest.raises(DataProcessingConfigError, match="set panel.freq"):
        validate_schema(source, params, {})
    with pytest.raises(DataProcessingConfigError, match="step_origin 'not a date'"):
        validate_schema(source, params | {"source": params["source"] | {"step_origin": "not a date"}},
                        {"freq": "D"})


def test_future_covariates_in_steps_are_dated_like_the_panel(params, panel):
    # synthetic: one series ending at step 3 (dated), a known covariate given for steps 4-5
    params["source"] |= {"timestamp_format": "steps", "covariates": {"price": "known_in_advance"}}
    panel |= {"freq": "D", "horizon": 2}
    primary = pd.DataFrame({"series_id": ["a"] * 3, "timestamp": pd.date_range("2000-01-02", periods=3, freq="D"),
                            "value": [1.0, 2.0, 3.0], "price": [1.0, 1.0, 1.0]})
    future = pd.DataFrame({"series_id": ["a", "a"], "timestamp": [4, 5], "price": [2.0, 3.0]})
    rows = select_future_covariates(future, primary, params, panel)
    assert list(rows["timestamp"]) == list(pd.to_datetime(["2000-01-05", "2000-01-06"]))
    assert list(rows["price"]) == [2.0, 3.0]


def test_the_partitioned_plan_reads_steps_to_the_same_lengths():
    from ts_kedro.datasets import CSVChunkSource
    from ts_kedro.orchestration.partitioned import plan_csv

    plan = plan_csv(CSVChunkSource(str(SAMPLE)), "series_id", "timestamp", "value",
                    StepClock.from_params("2000-01-01", "D"), "D", chunk_size=50, rows_per_partition=100)
    raw = pd.read_csv(SAMPLE, dtype={"series_id": str})
    assert plan.observed.sort_index().to_dict() == raw.groupby("series_id").size().sort_index().to_dict()


def test_dates_before_the_nanosecond_clock_point_to_steps(write_csv, params, panel):
    # synthetic: a yearly series from 1500, which pandas' nanosecond timestamps cannot hold
    source = write_csv("series_id,timestamp,value\na,1500-01-01,1\na,1501-01-01,2\n", name="old.csv")
    with pytest.raises(SchemaError, match=r"old\.csv: '1500-01-01' at lines 2, 3 is a date outside .*"
                                          r"timestamp_format: steps"):
        validate_schema(source, params, panel | {"freq": "YS"})


def test_steps_past_the_clock_name_step_origin(write_csv, params):
    params["source"]["timestamp_format"] = "steps"
    source = write_csv("series_id,timestamp,value\na,0,1\na,400,2\n")
    with pytest.raises(DataProcessingConfigError, match=r"step 400 .* passes 2262-04-11.*set step_origin earlier"):
        validate_schema(source, params, {"freq": "YS"})
    params["source"]["step_origin"] = "1700-01-01"
    validated, _ = validate_schema(source, params, {"freq": "YS"})
    assert list(validated["timestamp"]) == list(pd.to_datetime(["1700-01-01", "2100-01-01"]))


# -- Unix epoch times (synthetic stamps: the hours of 2020-01-01 UTC) -------------------------------------------------
EPOCH_HOURS = [1577836800 + 3600 * k for k in range(3)]


@pytest.mark.parametrize("fmt, scale", [("unix_s", 1), ("unix_ms", 1000)])
def test_epoch_times_are_read_with_their_unit(write_csv, params, panel, fmt, scale):
    rows = "".join(f"a,{stamp * scale},{k}\n" for k, stamp in enumerate(EPOCH_HOURS))
    source = write_csv("series_id,timestamp,value\n" + rows, name="epoch.csv")
    with pytest.raises(SchemaError, match=rf"epoch\.csv holds whole numbers .* Unix epoch .* \(2020-01-01 00:00:00 "
                                          rf"UTC\): if they are, set data_processing.source.timestamp_format: {fmt}"):
        validate_schema(source, params, panel)
    params["source"]["timestamp_format"] = fmt
    validated, found = validate_schema(source, params, panel)
    assert list(validated["timestamp"]) == list(pd.date_range("2020-01-01", periods=3, freq="h"))
    assert found["timestamp_format"] == fmt


def test_future_covariates_in_epoch_seconds_are_dated_like_the_panel(params, panel):
    params["source"] |= {"timestamp_format": "unix_s", "covariates": {"price": "known_in_advance"}}
    panel |= {"freq": "h", "horizon": 2}
    primary = pd.DataFrame({"series_id": ["a"] * 3, "timestamp": pd.date_range("2020-01-01", periods=3, freq="h"),
                            "value": [1.0, 2.0, 3.0], "price": [1.0, 1.0, 1.0]})
    future = pd.DataFrame({"series_id": ["a", "a"], "timestamp": [EPOCH_HOURS[2] + 3600, EPOCH_HOURS[2] + 7200],
                           "price": [2.0, 3.0]})
    rows = select_future_covariates(future, primary, params, panel)
    assert list(rows["timestamp"]) == list(pd.to_datetime(["2020-01-01 03:00", "2020-01-01 04:00"]))


def test_iso_week_labels_are_dated_by_their_monday(write_csv, params, panel):
    # synthetic labels across a year end: 2020 has 53 ISO weeks, and 2021-W01 starts on 2021-01-04
    source = write_csv("series_id,timestamp,value\na,2020-W52,1\na,2020-W53,2\na,2021-W01,3\n", name="weeks.csv")
    with pytest.raises(SchemaError, match=r"weeks\.csv holds ISO week labels such as '2020-W52': set "
                                          r"data_processing.source.timestamp_format: iso_week .* panel.freq: W-MON"):
        validate_schema(source, params, panel)
    params["source"]["timestamp_format"] = "iso_week"
    validated, _ = validate_schema(source, params, panel | {"freq": "W-MON"})
    assert list(validated["timestamp"]) == list(pd.to_datetime(["2020-12-21", "2020-12-28", "2021-01-04"]))


def test_spreadsheet_serial_dates_are_named_then_read(m4_sample_panel, write_csv, params, panel):
    """A real M4 series whose dates lost their format in a spreadsheet: days since 1899-12-30, a fraction for the
    hour (44197.5 is 2021-01-01 12:00). Refused with the setting named, then read to the same stamps."""
    series = m4_sample_panel[m4_sample_panel["series_id"] == "H1"].head(60)
    serial = (series["timestamp"] - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)
    source = write_csv(series.assign(timestamp=serial.map(repr)).to_csv(index=False), name="serial.csv")
    with pytest.raises(SchemaError, match=r"serial\.csv holds numbers such as .* spreadsheet serial dates "
                                          r"\(2015-07-01 12:00:00: days since 1899-12-30.*timestamp_format: excel_days"):
        validate_schema(source, params, panel)
    params["source"]["timestamp_format"] = "excel_days"
    validated, _ = validate_schema(source, params, panel)
    assert validated["timestamp"].tolist() == series["timestamp"].tolist()  # exactly on the hours
