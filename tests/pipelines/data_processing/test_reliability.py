"""Regression tests of issue 13 (items 1-5 and 7-10): each is built from an input that went in wrong, crashed or hung."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.cleaning import impute_column
from ts_kedro.pipelines.data_processing.errors import SchemaError, SeriesQualityError
from ts_kedro.pipelines.data_processing.nodes import (
    infer_frequency,
    regularise_index,
    screen_series,
    validate_schema,
)

HEADER = "series_id,timestamp,value\n"


def hourly_rows(series: str, n: int, start: str = "2021-03-01 00:00:00", value=lambda i: float(i % 7)) -> list[str]:
    stamps = pd.date_range(start, periods=n, freq="h")
    return [f"{series},{ts:%Y-%m-%d %H:%M:%S},{value(i)!r}" for i, ts in enumerate(stamps)]


def csv_text(rows: list[str], header: str = HEADER) -> str:
    return header + "\n".join(rows) + "\n"


# -- 1. surplus fields ------------------------------------------------------------------------------------------
def test_a_row_with_a_surplus_field_is_refused_with_its_line(write_csv, params):
    rows = hourly_rows("S1", 20)
    rows[13] = "S1,2021-03-01 13:00:00,1,234"  # the row: stored as 1.0 before
    source = write_csv(csv_text(rows))
    with pytest.raises(SchemaError, match=r"raw\.csv.*more fields than the header's 3 at line 15") as error:
        validate_schema(source, params)
    assert "decimal" in str(error.value) and "sep: ';'" in str(error.value)


@pytest.mark.parametrize("chunk_size", [1, 3, 13, 1000])
def test_surplus_fields_are_seen_at_every_chunk_position(write_csv, params, chunk_size):
    # pandas alone drops the surplus of a long row that starts a chunk, even two fields with an empty first
    rows = hourly_rows("S1", 30)
    rows[13] = "S1,2021-03-01 13:00:00,5.0,,7"
    params["chunk_size"] = chunk_size
    with pytest.raises(SchemaError, match="line 15"):
        validate_schema(write_csv(csv_text(rows)), params)


def test_a_decimal_comma_file_is_refused_naming_what_to_set(write_csv, params):
    rows = [f"S1,2021-03-01 {h:02d}:00:00,{h},{5 * h}" for h in range(24)]  # 0,0 1,5 2,10 ...
    with pytest.raises(SchemaError, match=r"24 row\(s\).*at lines 2, 3, 4, 5, 6.*decimal commas.*decimal: ','"):
        validate_schema(write_csv(csv_text(rows)), params)


def test_a_decimal_comma_file_with_semicolons_reads_with_load_args(tmp_path, params):
    path = tmp_path / "semicolon.csv"
    path.write_text("series_id;timestamp;value\nS1;2021-03-01 00:00:00;1,234\nS1;2021-03-01 01:00:00;-0,5\n")
    validated, _ = validate_schema(CSVChunkSource(str(path), {"sep": ";", "decimal": ","}), params)
    assert validated["value"].tolist() == [1.234, -0.5]


def test_a_trailing_empty_field_loses_nothing_and_is_accepted(write_csv, params):
    rows = [row + "," for row in hourly_rows("S1", 5)]
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    assert validated["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


# -- 2. infinite values, NAN, interpolation overflow ------------------------------------------------------------
@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "INF", "-Infinity"])
def test_infinite_values_are_refused_with_file_and_line(write_csv, params, cell):
    rows = hourly_rows("S1", 10)
    rows[4] = f"S1,2021-03-01 04:00:00,{cell}"
    with pytest.raises(SchemaError, match=rf"raw\.csv: 1 non-numeric or infinite value\(s\) at line 6 \(values '{cell}'\)"):
        validate_schema(write_csv(csv_text(rows)), params)


def test_infinite_values_become_missing_under_coerce(write_csv, params):
    rows = hourly_rows("S1", 10)
    rows[4] = "S1,2021-03-01 04:00:00,inf"
    validated, found = validate_schema(write_csv(csv_text(rows)), params | {"non_numeric_policy": "coerce"})
    assert np.isnan(validated["value"].iloc[4]) and np.isfinite(validated["value"].drop(4)).all()
    assert found["non_numeric"] == {"value": {"count": 1, "first_lines": [6]}}


def test_upper_case_nan_is_a_missing_value_like_nan(write_csv, params):
    rows = hourly_rows("S1", 6)
    rows[2], rows[3] = "S1,2021-03-01 02:00:00,NAN", "S1,2021-03-01 03:00:00,NaN"
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    assert validated["value"].isna().tolist() == [False, False, True, True, False, False]


def test_linear_interpolation_between_huge_values_does_not_overflow():
    values = pd.Series([1.7e308, np.nan, -1.7e308, np.nan, np.nan, 1.0])
    filled = impute_column(values, pd.Series(["S1"] * 6), "linear", 2)
    assert np.isfinite(filled).all()
    assert filled.iloc[1] == pytest.approx(0.0, abs=1e300) and filled.iloc[0] == 1.7e308
    assert -1.7e308 < filled.iloc[3] < filled.iloc[4] < 1.0


# -- 3. duplicate header names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("header, repeated", [
    ("series_id,timestamp,value,value\n", "'value'"),
    ("series_id,timestamp,value,timestamp\n", "'timestamp'"),
    ("series_id,series_id,timestamp,value\n", "'series_id'"),
])
def test_duplicate_header_names_are_refused_naming_them(write_csv, params, header, repeated):
    rows = [row + ",9" for row in hourly_rows("S1", 3)]
    with pytest.raises(SchemaError, match=f"repeats column name\\(s\\) {repeated}"):
        validate_schema(write_csv(csv_text(rows, header)), params)


# -- 4. timestamp format ----------------------------------------------------------------------------------------
def test_day_first_dates_with_days_up_to_12_are_refused_as_ambiguous(write_csv, params):
    # 150 hourly rows from 1 to 7 March, written day-first: read month-first they became 4,350 grid rows
    stamps = pd.date_range("2021-03-01", periods=150, freq="h")
    rows = [f"S1,{ts:%d/%m/%Y %H:%M},{i % 5}.5" for i, ts in enumerate(stamps)]
    with pytest.raises(SchemaError, match=r"ambiguous.*'%m/%d/%Y %H:%M'.*'%d/%m/%Y %H:%M'.*timestamp_format"):
        validate_schema(write_csv(csv_text(rows)), params)
    params["source"]["timestamp_format"] = "%d/%m/%Y %H:%M"
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    assert validated["timestamp"].tolist() == list(stamps)


def test_day_first_dates_are_read_day_first_when_a_later_row_says_so(write_csv, params):
    stamps = pd.date_range("2021-03-10", periods=150, freq="h")  # days 10..16: the 13th settles it
    rows = [f"S1,{ts:%d/%m/%Y %H:%M},1.5" for ts in stamps]
    validated, found = validate_schema(write_csv(csv_text(rows)), params)
    assert found["timestamp_format"] == "%d/%m/%Y %H:%M"
    assert validated["timestamp"].tolist() == list(stamps)


def test_two_digit_years_are_refused_naming_the_candidates(write_csv, params):
    rows = ["S1,21-03-01 00:00,1.0", "S1,21-03-01 01:00,2.0"]  # became 2001-03-21 via 'mixed'
    with pytest.raises(SchemaError, match=r"two-digit year.*'%y-%m-%d', '%d-%m-%y', '%m-%d-%y'.*timestamp_format"):
        validate_schema(write_csv(csv_text(rows)), params)


def test_iso_timestamps_are_not_ambiguous(write_csv, params):
    validated, found = validate_schema(write_csv(csv_text(hourly_rows("S1", 30))), params)
    assert found["timestamp_format"] == "%Y-%m-%d %H:%M:%S" and len(validated) == 30


# -- 5. a typo'd date far beyond the series' span ---------------------------------------------------------------
def test_a_date_typed_ten_years_late_quarantines_the_series_instead_of_imputing(write_csv, params, panel):
    typo = hourly_rows("S1", 450)
    typo[-1] = "S1,2031-03-19 17:00:00,3.0"  # 10 years late: 450 rows became 88,098 grid rows
    healthy_rows = hourly_rows("S2", 450, value=lambda i: float(i % 5))
    validated, _ = validate_schema(write_csv(csv_text(typo + healthy_rows)), params)
    frequency = infer_frequency(validated, panel)
    healthy, screening = screen_series(validated, frequency, panel, params)
    assert screening["S1"]["reason"] == "gap_beyond_span"
    assert "max_gap_span_factor" in screening["S1"]["details"] and "2021-03-19 16:00:00" in screening["S1"]["details"]
    assert screening["S2"]["status"] == "ok"
    assert len(regularise_index(healthy, panel)) == 450
    # the bound is a parameter; null switches it off
    _, screening = screen_series(validated, frequency, panel, params | {"max_gap_span_factor": None})
    assert screening["S1"]["status"] == "ok"


def test_ordinary_gaps_are_still_imputed(write_csv, params, panel):
    rows = hourly_rows("S1", 300)
    del rows[100:160]  # a 60-hour outage in 300 hours
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    _, screening = screen_series(validated, infer_frequency(validated, panel), panel, params)
    assert screening["S1"]["status"] == "ok"


# -- 7. a bad byte after the first chunk ------------------------------------------------------------------------
def test_a_bad_byte_after_the_first_chunk_is_a_schema_error_with_line_and_column(tmp_path, params):
    rows = hourly_rows("S1", 3000)
    text = csv_text(rows).encode()
    line = 2502  # data row 2500
    lines = text.split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b",", b",\xff", 1)
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\n".join(lines))
    params["chunk_size"] = 1000
    with pytest.raises(SchemaError, match=r"latin\.csv is not valid utf-8 at line 2502, column 4 \(byte 0xff\)"):
        validate_schema(CSVChunkSource(str(path)), params)


def test_a_bad_byte_beyond_the_first_read_buffer_is_a_schema_error_not_a_crash(tmp_path, params):
    """The issue's crash: the header read decodes only the first buffer (some 100 KB), so a byte that sits
    later in a 1.2 MB file was met by the chunk loop and escaped as a bare UnicodeDecodeError."""
    rows = hourly_rows("S1", 40_000)
    lines = csv_text(rows).encode().split(b"\n")
    line = 38_002  # data row 38,000, about 1.1 MB into the file
    lines[line - 1] = lines[line - 1].replace(b",", b",\xff", 1)
    path = tmp_path / "late_byte.csv"
    path.write_bytes(b"\n".join(lines))
    assert path.stat().st_size > 1_000_000
    params["chunk_size"] = 1000
    with pytest.raises(SchemaError, match=rf"late_byte\.csv is not valid utf-8 at line {line}, column 4 \(byte 0xff\)"):
        validate_schema(CSVChunkSource(str(path)), params)


def test_a_bad_byte_in_the_header_is_a_schema_error_with_line_and_column(tmp_path, params):
    path = tmp_path / "bad_header.csv"
    path.write_bytes(b"series_id,time\xe9stamp,value\nS1,2021-03-01 00:00:00,1\n")
    with pytest.raises(SchemaError, match=r"not valid utf-8 at line 1, column 15"):
        validate_schema(CSVChunkSource(str(path)), params)


# -- 8. time-zone offsets that change (DST) ---------------------------------------------------------------------
def test_offsets_changing_across_dst_are_converted_to_utc(write_csv, params):
    local = pd.date_range("2021-10-30 22:00", "2021-10-31 05:00", freq="h", tz="UTC").tz_convert("Europe/Berlin")
    rows = [f"S1,{ts.isoformat()},{i}.0" for i, ts in enumerate(local)]  # +02:00 then +01:00
    assert {row[-10:-4] for row in rows} == {"+02:00", "+01:00"}
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    assert validated["timestamp"].tolist() == list(pd.date_range("2021-10-30 22:00", periods=8, freq="h"))
    assert validated["value"].tolist() == [float(i) for i in range(8)]


# -- 9. huge ids and cells are quoted capped --------------------------------------------------------------------
def test_a_million_character_series_id_does_not_hang_and_messages_are_capped(write_csv, params, panel, caplog):
    long_id = "X" * 1_000_000
    rows = hourly_rows("S1", 60) + [f"{long_id},2021-03-01 00:00:00,1.0"]  # one row: quarantined (too short)
    started = time.perf_counter()
    validated, _ = validate_schema(write_csv(csv_text(rows)), params)
    with caplog.at_level(logging.WARNING):
        _, screening = screen_series(validated, infer_frequency(validated, panel), panel, params)
    assert screening[long_id]["status"] == "quarantined"
    assert time.perf_counter() - started < 30
    assert caplog.records and all(len(record.getMessage()) < 2_000 for record in caplog.records)
    assert "(1,000,000 characters)" in caplog.text


def test_a_five_megabyte_bad_cell_gives_a_short_error(write_csv, params):
    rows = hourly_rows("S1", 5)
    rows[2] = "S1,2021-03-01 02:00:00," + "z" * 5_000_000
    with pytest.raises(SchemaError) as error:
        validate_schema(write_csv(csv_text(rows)), params)
    assert len(str(error.value)) < 2_000 and "line 4" in str(error.value) and "5,000,000 characters" in str(error.value)


# -- 10. real line numbers --------------------------------------------------------------------------------------
def test_lines_are_file_lines_across_blank_lines_and_quoted_newlines(write_csv, params):
    rows = hourly_rows("S1", 40)
    rows[8] = '"T\nX",2021-03-01 08:00:00,1.0'  # a quoted newline: one record on two lines
    rows[20] = "S1,2021-03-01 20:00:00,oops"
    text = HEADER + rows[0] + "\n\n" + "\n".join(rows[1:]) + "\n"  # a blank line after the first row
    expected_line = next(i for i, line in enumerate(text.split("\n"), start=1) if "oops" in line)
    assert expected_line == 20 + 2 + 1 + 1  # data row 20 + header + the blank line + the quoted newline
    with pytest.raises(SchemaError, match=rf"at line {expected_line} \(values 'oops'\)"):
        validate_schema(write_csv(text), params)


def test_a_quoted_newline_shifts_the_reported_line(write_csv, params, panel):
    text = (HEADER + "S1,2021-03-01 00:00:00,1.0\n"
            '"S1",2021-03-01 01:00:00,"2\n.0"\n'  # one record on lines 3-4 (a bad value, on purpose)
            "S1,2021-03-01 02:00:00,x\n")
    with pytest.raises(SchemaError, match=r"2 non-numeric or infinite value\(s\) at lines 3, 5"):
        validate_schema(write_csv(text), params)


def test_every_series_quarantined_names_the_file(write_csv, params, panel):
    rows = [f"S{i},2021-03-01 00:00:00,1.0" for i in range(3)]  # one row each: every series too short
    validated, _ = validate_schema(write_csv(csv_text(rows), name="tiny.csv"), params)
    with pytest.raises(SeriesQualityError, match=r"every one of the 3 series of .*tiny\.csv was quarantined"):
        screen_series(validated, infer_frequency(validated, panel), panel, params)
