"""The pipeline on every real file in ../shared/data: Prophet examples, ETTh1 and the full M4 Hourly train set.

Each file's frequency, season and target come from parameters, as a user would set them.
"""
from __future__ import annotations

import tracemalloc

import pandas as pd
import pytest

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.nodes import validate_schema

from .conftest import run_data_processing

PROPHET_FILES = {
    # file: (panel.freq, season_length, horizon, target column, covariates)
    "example_air_passengers.csv": ("MS", 12, 12, "y", []),  # CR-only line endings
    "example_pedestrians_covid.csv": ("D", 7, 14, "y", []),
    "example_pedestrians_multivariate.csv": ("h", 24, 48, "location_4", ["location_41"]),
    "example_retail_sales.csv": ("MS", 12, 12, "y", []),
    "example_wp_log_R.csv": ("D", 7, 14, "y", []),  # unsorted, gaps
    "example_wp_log_R_outliers1.csv": ("D", 7, 14, "y", []),  # unsorted, gaps, outliers
    "example_wp_log_R_outliers2.csv": ("D", 7, 14, "y", []),  # unsorted, gaps, outliers
    "example_wp_log_peyton_manning.csv": ("D", 7, 14, "y", []),
    "example_yosemite_temps.csv": ("5min", 288, 288, "y", []),  # 12 empty y
}


def _check_canonical(primary: pd.DataFrame, raw: pd.DataFrame, freq: str, covariates: list[str]) -> None:
    """Regular grid, no NaN, sorted, and every observed raw value unchanged at its timestamp."""
    assert list(primary.columns) == ["series_id", "timestamp", "value", "is_imputed", "is_anomaly", *covariates]
    assert primary["value"].notna().all()
    assert primary["timestamp"].is_monotonic_increasing
    grid = pd.date_range(primary["timestamp"].iloc[0], primary["timestamp"].iloc[-1], freq=freq)
    assert primary["timestamp"].tolist() == grid.tolist()
    merged = raw.dropna(subset=["value"]).merge(primary, on="timestamp", suffixes=("_raw", ""))
    assert len(merged) == raw["value"].notna().sum()
    assert (merged["value"] == merged["value_raw"]).all()
    assert not merged["is_imputed"].any()


def test_every_prophet_example_is_covered(shared_data):
    assert {p.name for p in (shared_data / "prophet_examples").glob("*.csv")} == set(PROPHET_FILES)


@pytest.mark.parametrize("file_name", sorted(PROPHET_FILES))
def test_prophet_example_loads_through_configuration(shared_data, params, panel, file_name):
    freq, season_length, horizon, target, covariates = PROPHET_FILES[file_name]
    path = shared_data / "prophet_examples" / file_name
    params["source"] = {"id_column": None, "timestamp_column": "ds", "target_column": target,
                        "covariates": covariates, "series_id_constant": None}
    panel |= {"freq": freq, "season_length": season_length, "horizon": horizon}

    catalog = run_data_processing(path, params, panel)

    primary = catalog["primary_panel"].load()
    raw = pd.read_csv(path).rename(columns={"ds": "timestamp", target: "value"})
    raw["timestamp"] = pd.to_datetime(raw["timestamp"])
    _check_canonical(primary, raw, freq, covariates)
    assert primary["series_id"].unique().tolist() == [path.stem]
    assert catalog["series_quarantine"].load() == []
    report = catalog["data_quality_report"].load()
    row = report["series"][0]
    grid_missing = len(primary) - raw["value"].notna().sum()
    assert row["missing"] == grid_missing == primary["is_imputed"].sum()
    assert row["inferred_freq"] in (freq, pd.tseries.frequencies.to_offset(freq).freqstr)
    assert report["summary"]["sorted_by_pipeline"] == (not raw["timestamp"].is_monotonic_increasing)
    assert 0 <= row["anomalies"] < 0.05 * len(primary)


def test_known_facts_of_prophet_files(shared_data, params, panel):
    """Facts stated in shared/data/README.md: 12 empty y in Yosemite, wp_log_R rows not in date order."""
    params["source"] = {"id_column": None, "timestamp_column": "ds", "target_column": "y"}
    yosemite = run_data_processing(shared_data / "prophet_examples/example_yosemite_temps.csv", params,
                                   panel | {"freq": "5min", "season_length": 288})
    assert yosemite["primary_panel"].load()["is_imputed"].sum() == 12
    wp_log = run_data_processing(shared_data / "prophet_examples/example_wp_log_R.csv", params,
                                 panel | {"freq": "D", "season_length": 7, "horizon": 14})
    summary = wp_log["data_quality_report"].load()["summary"]
    assert summary["sorted_by_pipeline"] and summary["rows_out_of_order"] > 0


def test_etth1_with_target_ot_and_the_other_columns_as_covariates(shared_data, params, panel):
    path = shared_data / "ett" / "ETTh1.csv"
    params["source"] = {"id_column": None, "timestamp_column": "date", "target_column": "OT",
                        "covariates": "all", "series_id_constant": "ETTh1"}
    catalog = run_data_processing(path, params, panel)
    primary = catalog["primary_panel"].load()
    raw = pd.read_csv(path, parse_dates=["date"]).rename(columns={"date": "timestamp", "OT": "value"})
    covariates = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
    _check_canonical(primary, raw, "h", covariates)
    assert len(primary) == 17420 and primary["series_id"].unique().tolist() == ["ETTh1"]
    pd.testing.assert_frame_equal(primary[covariates], raw[covariates])


@pytest.mark.parametrize(("folder", "file_name", "time", "freq", "count"), [
    ("prophet_examples", "example_pedestrians_multivariate.csv", "ds", "h", 2),
    ("ett", "ETTh1.csv", "date", "h", 7),
])
def test_wide_real_files_read_as_one_series_per_column(shared_data, params, panel, folder, file_name, time, freq,
                                                       count):
    """``layout: wide``: every column but the time is a series, named by its header, values unchanged."""
    path = shared_data / folder / file_name
    params["source"] = {"timestamp_column": time, "layout": "wide"}
    catalog = run_data_processing(path, params, panel | {"freq": freq, "season_length": 24, "horizon": 48})
    primary = catalog["primary_panel"].load()
    raw = pd.read_csv(path, parse_dates=[time])
    assert sorted(primary["series_id"].unique()) == sorted(c for c in raw.columns if c != time)
    assert primary["series_id"].nunique() == count and catalog["series_quarantine"].load() == []
    for column in raw.columns.drop(time):
        series = primary[primary["series_id"] == column]
        _check_canonical(series, raw[[time, column]].rename(columns={time: "timestamp", column: "value"}), freq, [])


def test_m4_hourly_full_train_file(shared_data, params, panel):
    """All 353,500 rows / 414 series of the M4 Hourly train set (about 10 s here)."""
    path = shared_data / "m4_hourly" / "Hourly-train-long.csv"
    catalog = run_data_processing(path, params, panel)
    primary = catalog["primary_panel"].load()
    assert len(primary) == 353_500 and primary["series_id"].nunique() == 414
    assert catalog["series_quarantine"].load() == []
    lengths = primary.groupby("series_id").size()
    assert set(lengths.unique()) == {700, 960}  # M4 Hourly train lengths (shared/data/README.md)
    assert lengths.eq(700).sum() == 169
    report = catalog["data_quality_report"].load()
    assert report["summary"]["rows_read"] == 353_500 and report["summary"]["series_ok"] == 414
    assert report["summary"]["points_flagged_anomalous"] < 0.03 * len(primary)


def test_chunked_validation_peaks_below_a_one_shot_read(shared_data, params, tmp_path):
    """Memory stays bounded: chunked validation of 150,000 real M4 rows peaks below pandas' one-shot read."""
    lines = (shared_data / "m4_hourly" / "Hourly-train-long.csv").read_text().splitlines()[:150_001]
    path = tmp_path / "m4_slice.csv"
    path.write_text("\n".join(lines) + "\n")
    del lines

    tracemalloc.start()
    one_shot = pd.read_csv(path, parse_dates=["timestamp"])
    one_shot_peak = tracemalloc.get_traced_memory()[1]
    del one_shot
    tracemalloc.reset_peak()
    validated, _ = validate_schema(CSVChunkSource(str(path)), params | {"chunk_size": 20_000})
    chunked_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert len(validated) == 150_000
    assert chunked_peak < 0.8 * one_shot_peak, (chunked_peak, one_shot_peak)
