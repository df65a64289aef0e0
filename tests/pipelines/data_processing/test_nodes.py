"""Unit tests, one (or a few) per data_processing node, on slices of the shipped real M4 sample.

Where a fault has to be planted (a gap, a spike, a constant series) the test says so: those rows are synthetic.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SeriesQualityError
from ts_kedro.pipelines.data_processing.nodes import (
    build_quality_report,
    conform_primary_panel,
    flag_anomalies,
    impute_missing,
    infer_frequency,
    list_quarantine,
    minimum_length,
    regularise_index,
    screen_series,
    validate_schema,
)


@pytest.fixture
def two_series(m4_sample_panel) -> pd.DataFrame:
    """Two real M4 Hourly series (H1, H18), canonical columns."""
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(["H1", "H18"])]
    return panel[["series_id", "timestamp", "value"]].reset_index(drop=True)


def _ok_frequency(panel: pd.DataFrame) -> dict:
    return {sid: {"expected_freq": "h", "inferred_freq": "h", "fault": None, "details": None}
            for sid in panel["series_id"].unique()}


# -- validate_schema_node ---------------------------------------------------------------------------------------
def test_validate_schema_reads_in_chunks_like_one_shot_read(project_root, write_csv, params):
    raw = (project_root / "data/01_raw/m4_hourly_sample.csv").read_text().splitlines()
    header, rows = raw[0], raw[1:2001]
    # Real rows in reverse order: the node must sort them and say it did.
    source = write_csv("\n".join([header, *reversed(rows)]) + "\n")
    params["chunk_size"] = 333  # many chunks, last one partial

    validated, found = validate_schema(source, params)

    expected = pd.read_csv(io.StringIO("\n".join([header, *rows])), parse_dates=["timestamp"])
    expected = expected.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(validated, expected, check_dtype=False)
    assert validated["value"].dtype == "float64" and validated["timestamp"].dtype == "datetime64[ns]"
    assert found["rows_read"] == 2000 and found["sorted_by_pipeline"] and found["rows_out_of_order"] > 0
    assert found["timestamp_format"] == "%Y-%m-%d %H:%M:%S"


def test_validate_schema_single_series_without_id_column(write_csv, params):
    # Synthetic ds,y rows (Prophet layout) for the id-less configuration.
    source = write_csv("ds,y\n2020-01-01,1.5\n2020-01-02,\n2020-01-03,2.5\n", name="sales.csv")
    params["source"] |= {"id_column": None, "timestamp_column": "ds", "target_column": "y"}
    validated, _ = validate_schema(source, params)
    assert validated["series_id"].unique().tolist() == ["sales"]
    assert validated["value"].isna().tolist() == [False, True, False]


# -- infer_frequency_node ---------------------------------------------------------------------------------------
def test_infer_frequency_accepts_hourly_series_with_gaps(two_series, panel):
    with_gaps = two_series.drop(index=[5, 6, 7, 300])  # remove real rows: gaps stay on the hourly grid
    frequency = infer_frequency(with_gaps, panel)
    assert {sid: f["fault"] for sid, f in frequency.items()} == {"H1": None, "H18": None}
    assert frequency["H18"]["inferred_freq"] == "h"


def test_infer_frequency_flags_daily_and_off_grid_series(panel):
    # Synthetic: one daily series and one with a half-hour timestamp inside an hourly panel.
    daily = pd.DataFrame({"series_id": "daily", "timestamp": pd.date_range("2020-01-01", periods=10, freq="D"),
                          "value": np.arange(10.0)})
    stamps = pd.date_range("2020-01-01", periods=10, freq="h").insert(3, pd.Timestamp("2020-01-01 02:30"))
    off_grid = pd.DataFrame({"series_id": "off", "timestamp": stamps, "value": np.arange(11.0)})
    frequency = infer_frequency(pd.concat([daily, off_grid], ignore_index=True), panel)
    assert frequency["daily"]["fault"] == "different_frequency"
    assert frequency["daily"]["inferred_freq"] == "D"
    assert frequency["off"]["fault"] == "irregular_frequency"


# -- screen_series_node / list_quarantine_node ------------------------------------------------------------------
def test_screen_series_quarantines_faulty_series_and_keeps_the_rest(two_series, panel, params):
    # Synthetic faulty series beside two real ones.
    stamps = pd.date_range("2020-01-01", periods=200, freq="h")
    constant = pd.DataFrame({"series_id": "flat", "timestamp": stamps, "value": 3.0})
    empty = pd.DataFrame({"series_id": "empty", "timestamp": stamps, "value": np.nan})
    # one observation: no model can forecast from it (a 10-point series is kept: the families' fallbacks serve it)
    short = pd.DataFrame({"series_id": "short", "timestamp": stamps[:1], "value": np.arange(1.0)})
    panel_in = pd.concat([two_series, constant, empty, short], ignore_index=True)

    healthy, screening = screen_series(panel_in, _ok_frequency(panel_in), panel, params)

    # a constant series is kept: seasonal naive forecasts it, the other families pass it to their fallbacks
    assert sorted(healthy["series_id"].unique()) == ["H1", "H18", "flat"]
    assert len(healthy) == len(two_series) + len(constant)
    assert {sid: e["reason"] for sid, e in screening.items()} == {
        "H1": None, "H18": None, "flat": None, "empty": "all_missing", "short": "too_short"}
    quarantine = list_quarantine(screening)
    assert [q["series_id"] for q in quarantine] == ["empty", "short"]
    assert all(set(q) == {"series_id", "reason", "details"} and q["details"] for q in quarantine)


def test_screen_series_policy_fail_and_all_quarantined(two_series, panel, params):
    frequency = _ok_frequency(two_series)
    frequency["H1"] |= {"fault": "irregular_frequency", "details": "planted for the test"}
    with pytest.raises(SeriesQualityError, match="series_policy: quarantine"):
        screen_series(two_series, frequency, panel, params | {"series_policy": "fail"})
    with pytest.raises(SeriesQualityError, match="every one of the 2 series"):
        screen_series(two_series, frequency, panel, params | {"min_length": 10_000})


def test_minimum_length_default_is_what_any_model_can_forecast_from(panel, params):
    assert minimum_length(panel, params) == 2
    assert minimum_length(panel, params | {"min_length": 30}) == 30
    with pytest.raises(DataProcessingConfigError, match="min_length"):
        minimum_length(panel, params | {"min_length": 1})


# -- regularise_index_node --------------------------------------------------------------------------------------
def test_regularise_index_makes_gaps_explicit_and_trims_missing_edges(two_series, panel):
    holed = two_series.drop(index=[10, 11, 12]).copy()  # a 3-hour gap in H1
    holed.loc[0, "value"] = np.nan  # synthetic: missing first value of H1
    regular = regularise_index(holed, panel)
    h1 = regular[regular["series_id"] == "H1"]
    assert len(h1) == 699  # first row trimmed, gap re-inserted
    assert h1["timestamp"].diff().dropna().eq(pd.Timedelta("1h")).all()
    assert h1["value"].isna().sum() == 3
    assert list(regular.columns) == ["series_id", "timestamp", "value"]


# -- impute_missing_node ----------------------------------------------------------------------------------------
@pytest.fixture
def gappy_series(two_series, panel) -> pd.DataFrame:
    """Real H1 with values 100..129 removed (a 30-hour gap, longer than one season)."""
    h1 = two_series[two_series["series_id"] == "H1"].reset_index(drop=True)
    return regularise_index(h1.drop(index=range(100, 130)), panel), h1


def test_impute_seasonal_uses_the_value_one_season_earlier(gappy_series, panel, params):
    regular, truth = gappy_series
    imputed = impute_missing(regular, panel, params | {"imputation": "seasonal"})
    assert imputed["is_imputed"].sum() == 30 and imputed["value"].notna().all()
    # Positions 100..123 take the real value 24 h earlier; 124..129 chain onto already-filled 100..105.
    np.testing.assert_array_equal(imputed["value"].iloc[100:124], truth["value"].iloc[76:100])
    np.testing.assert_array_equal(imputed["value"].iloc[124:130], truth["value"].iloc[76:82])


def test_impute_linear_ffill_and_none(gappy_series, panel, params):
    regular, truth = gappy_series
    linear = impute_missing(regular, panel, params | {"imputation": "linear"})
    expected = np.linspace(truth["value"].iloc[99], truth["value"].iloc[130], 32)[1:-1]
    np.testing.assert_allclose(linear["value"].iloc[100:130], expected)
    ffill = impute_missing(regular, panel, params | {"imputation": "ffill"})
    assert (ffill["value"].iloc[100:130] == truth["value"].iloc[99]).all()
    none = impute_missing(regular, panel, params | {"imputation": "none"})
    assert none["value"].isna().sum() == 30 and not none["is_imputed"].any()


# -- flag_anomalies_node ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["seasonal_median", "stl"])
def test_flag_anomalies_finds_a_planted_spike_and_keeps_every_row(two_series, panel, params, method):
    series = two_series[two_series["series_id"] == "H18"].reset_index(drop=True)
    series = series.assign(is_imputed=False)
    spiked = series.copy()
    spiked.loc[400, "value"] = series["value"].max() * 3  # synthetic spike on a real series
    spiked.loc[200, "is_imputed"] = True
    spiked.loc[200, "value"] = series["value"].max() * 3  # an imputed point is never flagged
    flagged = flag_anomalies(spiked, panel, params | {"anomaly": {"method": method, "threshold": 5.0}})
    assert len(flagged) == len(series) and flagged["value"].equals(spiked["value"])
    assert flagged.loc[400, "is_anomaly"] and not flagged.loc[200, "is_anomaly"]
    assert flagged["is_anomaly"].mean() < 0.05


# -- conform_primary_panel_node ---------------------------------------------------------------------------------
def test_conform_primary_panel_orders_columns_and_types(two_series):
    flagged = two_series.assign(is_anomaly=False, temperature=1, is_imputed=0).iloc[::-1]
    primary = conform_primary_panel(flagged)
    assert list(primary.columns) == ["series_id", "timestamp", "value", "is_imputed", "is_anomaly", "temperature"]
    assert primary["is_imputed"].dtype == bool and primary["temperature"].dtype == "float64"
    assert primary["timestamp"].is_monotonic_increasing or primary.groupby("series_id")["timestamp"].apply(
        lambda t: t.is_monotonic_increasing).all()
    assert primary["series_id"].is_monotonic_increasing


# -- build_quality_report_node ----------------------------------------------------------------------------------
def test_build_quality_report_counts_gaps_and_reports_quarantined_series(gappy_series, two_series, panel, params):
    regular, truth = gappy_series
    regular = regular.drop(index=range(300, 305)).reset_index(drop=True)  # drop 5 more (reinserted below)
    regular = regularise_index(regular.dropna(subset=["value"]), panel)
    flagged = flag_anomalies(impute_missing(regular, panel, params), panel, params)
    validated = pd.concat([truth, pd.DataFrame({"series_id": "empty", "timestamp": truth["timestamp"][:5],
                                                "value": np.nan})], ignore_index=True)  # synthetic all-NaN series
    screening = {"H1": {"status": "ok", "reason": None, "details": None},
                 "empty": {"status": "quarantined", "reason": "all_missing", "details": "all 5 values are missing"}}
    summary = {"file": "x.csv", "rows_read": 705, "rows_validated": 705, "rows_out_of_order": 0,
               "duplicate_rows": 0, "duplicates_dropped": 0}
    report, table = build_quality_report(validated, _ok_frequency(validated), screening, flagged, summary,
                                         panel, params)
    rows = {row["series_id"]: row for row in report["series"]}
    assert (rows["H1"]["missing"], rows["H1"]["gaps"], rows["H1"]["longest_gap"]) == (35, 2, 30)
    assert rows["H1"]["missing_share"] == pytest.approx(35 / 700)
    assert rows["H1"]["length"] == 700 and not rows["H1"]["too_short_for_backtest"]
    assert rows["empty"]["status"] == "quarantined" and rows["empty"]["missing_share"] == 1.0
    assert report["summary"]["series_quarantined"] == 1
    assert report["summary"]["quarantine_reasons"] == {"all_missing": 1}
    assert "| H1 | ok |" in table and "| empty | quarantined | all_missing |" in table
