"""Property-based fuzz test of the reader and the schema checks (issue 13).

Random small long CSVs (awkward ids, quoted newlines, blank lines, CRLF, empty values, any finite float, chunk
sizes that cut anywhere) with up to two planted faults (a non-numeric or infinite value, a surplus field, a
byte that is not UTF-8, an empty id, an unparseable timestamp). The oracle: a file with a fault raises a
``SchemaError`` that names the file and only lines holding a planted fault; a file without one is accepted
and the validated panel holds exactly the file's ids, timestamps and values.
"""
from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.errors import SchemaError
from ts_kedro.pipelines.data_processing.nodes import validate_schema

PARAMS = {
    "source": {"id_column": "series_id", "timestamp_column": "timestamp", "target_column": "value",
               "timestamp_format": None, "covariates": [], "series_id_constant": None},
    "non_numeric_policy": "fail", "duplicate_policy": "fail", "max_reported_rows": 5,
}
IDS = ["S1", "NA", "nan", "a b", "ü-ß", 'q"uote', "com,ma", "new\nline", "x" * 200]
FAULTS = ["non_numeric", "infinite", "surplus", "bad_byte", "empty_id", "bad_timestamp"]
START = pd.Timestamp("2021-03-01 00:00:00")

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-10**9, 10**9).map(str),
    st.just(""),
)


@st.composite
def csv_files(draw):
    rows = []  # [series_id, timestamp text, value text]
    for series_id in draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=3, unique=True)):
        hours = draw(st.lists(st.integers(0, 400), min_size=1, max_size=8, unique=True))
        rows += [[series_id, f"{START + pd.Timedelta(hours=h):%Y-%m-%d %H:%M:%S}", draw(values)] for h in hours]
    rows = draw(st.permutations(rows))
    faults = draw(st.dictionaries(st.integers(0, len(rows) - 1), st.sampled_from(FAULTS), max_size=2))
    return {"rows": rows, "faults": faults, "crlf": draw(st.booleans()),
            "blank_before": draw(st.sets(st.integers(0, len(rows)), max_size=3)),
            "chunk_size": draw(st.sampled_from([1, 2, 3, 7, 100_000]))}


def render(case) -> tuple[bytes, list[dict], dict[int, int]]:
    """The file's bytes, the rows it holds (for the oracle) and the start line of each faulty row."""
    ending = "\r\n" if case["crlf"] else "\n"
    out, line, kept, fault_lines = [("series_id,timestamp,value" + ending).encode()], 2, [], {}
    for index, (series_id, stamp, value) in enumerate(case["rows"]):
        if index in case["blank_before"]:
            out.append(("  " + ending).encode())
            line += 1
        fields, fault = [series_id, stamp, value], case["faults"].get(index)
        if fault == "non_numeric":
            fields[2] = "abc"
        elif fault == "infinite":
            fields[2] = "-inf"
        elif fault == "surplus":
            fields.append("7")
        elif fault == "empty_id":
            fields[0] = ""
        elif fault == "bad_timestamp":
            fields[1] = "not a time"
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=ending).writerow(fields)
        data = buffer.getvalue().encode()
        if fault == "bad_byte":
            data = b"\xff" + data
        out.append(data)
        if fault:
            fault_lines[index] = line
        else:
            kept.append({"series_id": series_id, "timestamp": pd.Timestamp(stamp),
                         "value": float(value) if value else np.nan})
        line += buffer.getvalue().count("\n")
    return b"".join(out), kept, fault_lines


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(csv_files())
def test_reader_either_refuses_naming_file_and_line_or_keeps_the_values(case):
    content, kept, fault_lines = render(case)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(content)
        params = {**PARAMS, "chunk_size": case["chunk_size"]}
        if fault_lines:
            try:
                validate_schema(CSVChunkSource(str(path)), params)
            except SchemaError as error:
                message = str(error)
            else:
                raise AssertionError(f"faults at lines {sorted(fault_lines.values())} were accepted:\n{content!r}")
            assert str(path) in message, message
            named = re.search(r"\blines? (\d+(?:, \d+)*)", message)
            assert named, f"no line named: {message}"
            lines = {int(n) for n in named.group(1).split(", ")}
            assert lines <= set(fault_lines.values()), (message, fault_lines)
            return
        validated, found = validate_schema(CSVChunkSource(str(path)), params)
    expected = pd.DataFrame(kept).sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    assert found["rows_read"] == len(kept)
    pd.testing.assert_frame_equal(validated[["series_id", "timestamp", "value"]], expected, check_dtype=False)
    assert validated["value"].dtype == "float64"
