"""Files laid out as real exports are: another separator, decimal commas, thousands separators, a column per
series, headers in other case, stamps inside the period instead of at its start.

Each was tried as a new user would (2026-12-07) on real values (the M3 monthly sample): before, the semicolon
file was refused with "set id_column to one of the header's columns" (its header read as one column), the
thousands separators with "set non_numeric_policy: coerce" (which would have dropped every value), the wide
file with "set id_column", and monthly stamps on the 15th with "check panel.freq". Each refusal now names what
to set, and the setting reads the file to the same panel as the plain long CSV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError, SeriesQualityError
from ts_kedro.pipelines.data_processing.nodes import infer_frequency, screen_series, validate_schema
from ts_kedro.pipelines.data_processing.schema import snap_to_freq

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "m3_monthly.csv"


@pytest.fixture(scope="module")
def m3() -> pd.DataFrame:
    return pd.read_csv(SAMPLE, parse_dates=["timestamp"])


@pytest.fixture
def monthly(panel) -> dict:
    return panel | {"freq": "MS", "horizon": 18}


@pytest.fixture
def reference(m3, write_csv, params, monthly) -> pd.DataFrame:
    """The sample read as shipped: the panel every other layout must give."""
    return validate_schema(write_csv(m3.to_csv(index=False), name="long.csv"), params, monthly)[0]


def _same(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    columns = ["series_id", "timestamp", "value"]
    got = frame[columns].dropna(subset=["value"]).astype({"series_id": str}).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, reference[columns].astype({"series_id": str}).reset_index(drop=True))


def test_a_semicolon_file_with_decimal_commas_names_sep_then_reads(m3, tmp_path, params, monthly, reference):
    path = tmp_path / "semicolon.csv"
    m3.to_csv(path, sep=";", decimal=",", index=False)
    with pytest.raises(SchemaError, match=r"the header is one field holding ';': the file looks semicolon-separated. "
                                          r"Give its catalog entry .*load_args: \{sep: ';'\}, with decimal: ','"):
        validate_schema(CSVChunkSource(str(path)), params, monthly)
    with pytest.raises(SchemaError, match=r"values '14300,0', .*numbers with a decimal comma: .*\{decimal: ','\}"):
        validate_schema(CSVChunkSource(str(path), read_args={"sep": ";"}), params, monthly)
    _same(validate_schema(CSVChunkSource(str(path), read_args={"sep": ";", "decimal": ","}), params, monthly)[0],
          reference)


def test_thousands_separators_name_the_setting_instead_of_coerce(m3, tmp_path, params, monthly, reference):
    path = tmp_path / "thousands.csv"
    m3.assign(value=m3["value"].map(lambda v: f"{v:,}")).to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"values '14,300.0', .*numbers with ',' as thousands separator: "
                                          r".*load_args: \{thousands: ','\}") as refusal:
        validate_schema(CSVChunkSource(str(path)), params, monthly)
    assert "coerce" not in str(refusal.value)  # coercing would have dropped every value of the column
    _same(validate_schema(CSVChunkSource(str(path), read_args={"thousands": ","}), params, monthly)[0], reference)
    # European: '.' groups thousands and ',' is the decimal point
    european = tmp_path / "european.csv"
    m3.assign(value=m3["value"].map(lambda v: f"{v:,}".replace(",", " ").replace(".", ",").replace(" ", "."))
              ).to_csv(european, sep=";", index=False)
    with pytest.raises(SchemaError, match=r"numbers with '.' as thousands separator: .*\{thousands: '.', decimal: ','\}"):
        validate_schema(CSVChunkSource(str(european), read_args={"sep": ";"}), params, monthly)
    _same(validate_schema(CSVChunkSource(str(european), read_args={"sep": ";", "thousands": ".", "decimal": ","}),
                          params, monthly)[0], reference)


def test_a_wide_file_names_layout_wide_then_reads_one_series_per_column(m3, write_csv, params, monthly, reference):
    wide = m3.pivot(index="timestamp", columns="series_id", values="value").reset_index()
    source = write_csv(wide.to_csv(index=False), name="wide.csv")
    with pytest.raises(SchemaError, match=r"the file looks wide \(a time column 'timestamp' and one column per series: "
                                          r"'N2479', 'N2480', .*set data_processing.source.layout: wide"):
        validate_schema(source, params, monthly)
    params["source"]["layout"] = "wide"
    validated, found = validate_schema(source, params, monthly)
    # the series start and end at different months: the empty cells around a series are missing values, which
    # the grid cuts (kept here, dropped by _same)
    _same(validated, reference)
    assert found["rows_read"] == len(wide) and found["columns"]["layout"] == "wide"
    kept, _ = screen_series(validated, infer_frequency(validated, monthly), monthly, params)
    assert sorted(kept["series_id"].unique()) == sorted(m3["series_id"].unique())
    with pytest.raises(DataProcessingConfigError, match="covariates needs layout: long"):
        validate_schema(source, params | {"source": {"layout": "wide", "covariates": ["x"]}}, monthly)


def test_files_of_other_column_names_are_read_for_what_they_look_like(shared_data, m3, write_csv, params, monthly):
    """Prophet's ``ds,y`` and the pedestrian counts (``ds`` and a column per location) under the shipped column
    names: the refusal says which time column, and whether one series or a wide file."""
    prophet = shared_data / "prophet_examples" / "example_retail_sales.csv"
    with pytest.raises(SchemaError, match=r"looks like one series \(a time column 'ds' and one value column 'y'\): "
                                          r"set data_processing.source.id_column: null, timestamp_column: 'ds', "
                                          r"target_column: 'y'"):
        validate_schema(CSVChunkSource(str(prophet)), params, monthly)
    pedestrians = shared_data / "prophet_examples" / "example_pedestrians_multivariate.csv"
    with pytest.raises(SchemaError, match=r"looks wide \(a time column 'ds' and one column per series: 'location_4', "
                                          r"'location_41'\): set data_processing.source.layout: wide, "
                                          r"timestamp_column: 'ds'"):
        validate_schema(CSVChunkSource(str(pedestrians)), params, monthly | {"freq": "h"})
    params["source"] |= {"id_column": "series_id"}
    dated = write_csv(m3.rename(columns={"timestamp": "Date"}).to_csv(index=False), name="dated.csv")
    with pytest.raises(SchemaError, match=r"set data_processing.source.timestamp_column: 'Date' \(the header's time"):
        validate_schema(dated, params, monthly)


def test_a_header_in_other_case_or_spacing_names_its_spelling(m3, write_csv, params, monthly):
    source = write_csv(m3.rename(columns={"series_id": "Series_ID", "timestamp": "Timestamp "}).to_csv(index=False))
    with pytest.raises(SchemaError, match=r"set data_processing.source.id_column: 'Series_ID' \(the header's"):
        validate_schema(source, params, monthly)
    params["source"]["id_column"] = "Series_ID"
    with pytest.raises(SchemaError, match=r"set data_processing.source.timestamp_column: 'Timestamp '"):
        validate_schema(source, params, monthly)


def test_stamps_inside_the_month_name_snap_to_freq_then_read(m3, write_csv, params, monthly, reference):
    mid = m3.assign(timestamp=m3["timestamp"] + pd.Timedelta(days=14))
    source = write_csv(mid.to_csv(index=False), name="midmonth.csv")
    validated, _ = validate_schema(source, params, monthly)
    with pytest.raises(SeriesQualityError, match=r"5 of 5 series with stamps off the 'MS' grid \(e.g. 1970-01-15.*\) "
                                                 r"have one stamp per period: set data_processing.source.snap_to_freq: "
                                                 r"true .*\(1970-01-01 00:00:00\)"):
        screen_series(validated, infer_frequency(validated, monthly), monthly, params)
    params["source"]["snap_to_freq"] = True
    snapped, found = validate_schema(source, params, monthly)
    _same(snapped, reference)
    assert found["snapped_to_freq"] == "MS"
    # two stamps of one series in one month share a key after snapping: the duplicate policy decides, as ever
    twice = pd.concat([mid, mid.head(1).assign(timestamp=mid["timestamp"].iloc[0] + pd.Timedelta(days=3),
                                                value=mid["value"].iloc[0] + 1)])
    with pytest.raises(SchemaError, match=r"rows share a key with different values, first \('N2479', 1970-01-01"):
        validate_schema(write_csv(twice.to_csv(index=False), name="twice.csv"), params, monthly)
    with pytest.raises(DataProcessingConfigError, match="snap_to_freq .* set panel.freq"):
        validate_schema(source, params, {k: v for k, v in monthly.items() if k != "freq"})


@pytest.mark.parametrize(("freq", "stamps", "expected"), [
    ("h", ["2024-03-01 09:30", "2024-03-01 10:59"], ["2024-03-01 09:00", "2024-03-01 10:00"]),
    ("D", ["2024-03-01 09:00", "2024-03-02 23:00"], ["2024-03-01", "2024-03-02"]),
    ("W-SUN", ["2024-03-06", "2024-03-10 08:00"], ["2024-03-03", "2024-03-10"]),   # a Wednesday; a Sunday
    ("B", ["2024-03-09", "2024-03-11 12:00"], ["2024-03-08", "2024-03-11"]),       # a Saturday -> Friday
    ("QS", ["2024-05-15", "2024-12-31"], ["2024-04-01", "2024-10-01"]),
    ("YS", ["2024-07-01"], ["2024-01-01"]),
    # business hours (09:00-17:00): inside, after closing, on a Saturday (was: 10:30 kept, 18:20 -> 17:00, which
    # is no bh stamp, and the Saturday's time of day dropped by the day-offset rule)
    ("bh", ["2024-03-04 10:30", "2024-03-04 18:20", "2024-03-09 11:00"],
     ["2024-03-04 10:00", "2024-03-04 16:00", "2024-03-08 16:00"]),
])
def test_snap_dates_each_stamp_by_the_last_grid_stamp_at_or_before_it(freq, stamps, expected):
    got = snap_to_freq(pd.to_datetime(stamps, format="ISO8601").to_numpy("datetime64[ns]"), freq)
    np.testing.assert_array_equal(got, pd.to_datetime(expected).to_numpy("datetime64[ns]"))


@pytest.mark.parametrize(("written", "says"), [
    (lambda v: f"${v:.2f}", "carry a currency or percent sign"),
    (lambda v: f"{v / 1000:.1f}%", "carry a currency or percent sign"),
    (lambda v: "pending", "are not numbers"),
])
def test_a_column_of_no_plain_numbers_is_not_told_to_coerce(m3, write_csv, params, monthly, written, says):
    """Coercing a column every value of which is refused would empty it: the refusal says what the values carry."""
    source = write_csv(m3.assign(value=m3["value"].map(written)).to_csv(index=False))
    with pytest.raises(SchemaError, match=rf"441 of the 441 values in this chunk of the file {says}, so "
                                          r"non_numeric_policy: coerce would leave the column empty") as refusal:
        validate_schema(source, params, monthly)
    assert "set data_processing.non_numeric_policy: coerce to treat" not in str(refusal.value)
    # a few bad rows in a numeric column keep the coerce suggestion
    few = m3.astype({"value": object})
    few.loc[3, "value"] = "pending"
    with pytest.raises(SchemaError, match="set data_processing.non_numeric_policy: coerce to treat them as missing"):
        validate_schema(write_csv(few.to_csv(index=False), name="few.csv"), params, monthly)


def test_columns_no_role_reads_are_named_in_the_quality_report(m3, tmp_path, params, monthly):
    """A price or promotion column the user may expect the models to use: reported as not read, with the setting.
    (SYNTHETIC columns beside the real values.)"""
    from .conftest import run_data_processing

    path = tmp_path / "extra.csv"
    m3.assign(price=1.0, promo=0).to_csv(path, index=False)
    catalog = run_data_processing(path, params, monthly)
    report = catalog["data_quality_report"].load()
    assert report["summary"]["columns_not_read"] == ["price", "promo"]
    assert ("- columns of the file not read: `price`, `promo` (declare them in data_processing.source.covariates to "
            "use them)") in catalog["data_quality_table"].load()
    params["source"]["covariates"] = ["price"]
    assert run_data_processing(path, params, monthly)["data_quality_report"].load()["summary"][
        "columns_not_read"] == ["promo"]
