"""Pipeline-level tests: structure, slice runs on the real default sample, and bad input files.

The bad-input files are synthetic (a few hand-written rows each): every one plants exactly one fault.
"""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ts_kedro.pipelines.data_processing import create_pipeline
from ts_kedro.pipelines.data_processing.errors import SchemaError, SeriesQualityError

from .conftest import CONF, add_training_params, run_data_processing

HOURS = pd.date_range("2021-03-01", periods=120, freq="h")


def _series_rows(series_id: str, stamps, values) -> list[str]:
    return [f"{series_id},{t:%Y-%m-%d %H:%M:%S},{v}" for t, v in zip(stamps, values)]


def _healthy_rows(series_id: str = "ok") -> list[str]:
    # Synthetic but non-constant hourly series, long enough for the default min_length (96).
    return _series_rows(series_id, HOURS, [(i * 7) % 23 + i / 10 for i in range(len(HOURS))])


def _write(tmp_path, lines: list[str], name: str = "raw.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _unwrap(error_info) -> BaseException:
    """The domain error the node raised (the runner may re-raise it as is)."""
    return error_info.value


def test_pipeline_has_named_nodes_and_the_contract_outputs():
    pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} >= {
        "validate_schema_node", "infer_frequency_node", "screen_series_node", "list_quarantine_node",
        "regularise_index_node", "impute_missing_node", "flag_anomalies_node", "conform_primary_panel_node",
        "build_quality_report_node"}
    families = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]["families"]
    assert pipeline.inputs() == {"raw_panel", "params:data_processing", "params:panel", "params:backtest",
                                 *(f"params:{family}.model" for family in families)}
    assert pipeline.outputs() == {"primary_panel", "series_quarantine", "data_quality_report", "data_quality_table"}


def test_full_run_on_the_shipped_sample(project_root, params, panel):
    catalog = run_data_processing(project_root / "data/01_raw/m4_hourly_sample.csv", params, panel)
    primary = catalog["primary_panel"].load()
    raw = pd.read_csv(project_root / "data/01_raw/m4_hourly_sample.csv", parse_dates=["timestamp"])
    assert list(primary.columns) == ["series_id", "timestamp", "value", "is_imputed", "is_anomaly"]
    assert len(primary) == len(raw) == 20440 and primary["series_id"].nunique() == 24
    assert primary["value"].notna().all() and not primary["is_imputed"].any()
    merged = primary.merge(raw, on=["series_id", "timestamp"], suffixes=("", "_raw"))
    assert (merged["value"] == merged["value_raw"]).all()  # real values pass through unchanged
    assert catalog["series_quarantine"].load() == []
    assert len(catalog["data_quality_report"].load()["series"]) == 24


def test_slice_run_up_to_screening(project_root, params, panel):
    pipeline = create_pipeline().from_nodes("validate_schema_node").to_nodes("list_quarantine_node")
    assert "regularise_index_node" not in {n.name for n in pipeline.nodes}
    catalog = run_data_processing(project_root / "data/01_raw/m4_hourly_sample.csv", params, panel, pipeline)
    assert catalog["series_quarantine"].load() == []
    assert len(catalog["screened_panel"].load()) == 20440


def test_slice_run_from_validated_panel(m4_sample_panel, params, panel):
    # Start mid-pipeline: validated_panel is given, with two real rows removed to make a gap.
    validated = m4_sample_panel[m4_sample_panel["series_id"].isin(["H1", "H35"])].drop(index=[50, 51])
    pipeline = create_pipeline().from_nodes("infer_frequency_node")
    catalog = DataCatalog({"validated_panel": MemoryDataset(validated.reset_index(drop=True)),
                           "schema_summary": MemoryDataset({"file": "test", "rows_read": len(validated),
                                                            "rows_validated": len(validated),
                                                            "rows_out_of_order": 0, "duplicate_rows": 0,
                                                            "duplicates_dropped": 0})})
    catalog["params:data_processing"] = params | {"imputation": "seasonal"}
    catalog["params:panel"] = panel
    add_training_params(catalog)
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = MemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    primary = catalog["primary_panel"].load()
    assert primary["is_imputed"].sum() == 2
    report = catalog["data_quality_report"].load()
    assert [row["gaps"] for row in report["series"]] == [1, 0]


# -- bad inputs (synthetic files) -------------------------------------------------------------------------------
def test_missing_column_names_file_column_and_fix(tmp_path, params, panel):
    path = _write(tmp_path, ["series_id,time,value", *[r for r in _healthy_rows()]])
    with pytest.raises(SchemaError) as error:
        run_data_processing(path, params, panel)
    message = str(_unwrap(error))
    assert "'timestamp' missing" in message and str(path) in message and "timestamp_column" in message


def test_unparseable_dates_name_the_lines(tmp_path, params, panel):
    rows = _healthy_rows()
    rows[4] = "ok,2021-03-01 04:00:00x,3"
    rows[9] = "ok,yesterday,3"
    path = _write(tmp_path, ["series_id,timestamp,value", *rows])
    with pytest.raises(SchemaError, match=r"'timestamp'.*2 timestamp\(s\).*lines 6, 11") as error:
        run_data_processing(path, params, panel)
    assert str(path) in str(_unwrap(error))


def test_duplicate_keys_fail_or_follow_the_policy(tmp_path, params, panel):
    rows = _healthy_rows()
    path = _write(tmp_path, ["series_id,timestamp,value", *rows, rows[3].rsplit(",", 1)[0] + ",999"])
    with pytest.raises(SchemaError, match=r"2 rows share a key with different values.*lines 5, 122"):
        run_data_processing(path, params, panel)
    catalog = run_data_processing(path, params | {"duplicate_policy": "keep_last"}, panel)
    primary = catalog["primary_panel"].load()
    assert primary.loc[3, "value"] == 999 and len(primary) == len(rows)
    assert catalog["data_quality_report"].load()["summary"]["duplicates_dropped"] == 1


def test_rows_repeated_exactly_are_dropped_under_every_policy(tmp_path, params, panel):
    """Overlapping exports concatenated: a row equal to another in key and value adds nothing and is dropped
    (counted), even with the default duplicate_policy fail; a repeat with another value is still refused."""
    rows = _healthy_rows()
    path = _write(tmp_path, ["series_id,timestamp,value", *rows, rows[3], rows[7]])
    catalog = run_data_processing(path, params, panel)
    assert len(catalog["primary_panel"].load()) == len(rows)
    summary = catalog["data_quality_report"].load()["summary"]
    assert summary["duplicates_dropped"] == 2
    both = _write(tmp_path, ["series_id,timestamp,value", *rows, rows[3], rows[7].rsplit(",", 1)[0] + ",999"],
                  name="both.csv")
    with pytest.raises(SchemaError, match=r"2 rows share a key with different values"):
        run_data_processing(both, params, panel)


def test_non_numeric_values_fail_or_become_missing(tmp_path, params, panel):
    rows = _healthy_rows()
    rows[7] = rows[7].rsplit(",", 1)[0] + ",n/a?"
    path = _write(tmp_path, ["series_id,timestamp,value", *rows])
    with pytest.raises(SchemaError, match=r"column 'value'.*1 non-numeric.*line 9 .*'n/a\?'"):
        run_data_processing(path, params, panel)
    catalog = run_data_processing(path, params | {"non_numeric_policy": "coerce"}, panel)
    primary = catalog["primary_panel"].load()
    assert primary.loc[7, "is_imputed"] and primary["is_imputed"].sum() == 1
    assert catalog["data_quality_report"].load()["summary"]["non_numeric"]["value"] == {"count": 1,
                                                                                        "first_lines": [9]}


def test_empty_file_and_header_only_file(tmp_path, params, panel):
    with pytest.raises(SchemaError, match="is empty"):
        run_data_processing(_write(tmp_path, [""], "empty.csv"), params, panel)
    with pytest.raises(SchemaError, match="no data rows"):
        run_data_processing(_write(tmp_path, ["series_id,timestamp,value"], "header.csv"), params, panel)


def test_one_row_all_nan_and_mixed_frequency_series_are_quarantined(tmp_path, params, panel):
    rows = ["series_id,timestamp,value", *_healthy_rows(),
            "one,2021-03-01 00:00:00,5",
            *_series_rows("nan", HOURS, [""] * len(HOURS)),
            *_series_rows("daily", pd.date_range("2021-01-01", periods=120, freq="D"), range(120)),
            *_series_rows("halfhour", pd.date_range("2021-01-01", periods=200, freq="30min"), range(200))]
    path = _write(tmp_path, rows)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    catalog = run_data_processing(path, params, panel)

    quarantine = {q["series_id"]: q["reason"] for q in catalog["series_quarantine"].load()}
    assert quarantine == {"one": "too_short", "nan": "all_missing", "daily": "different_frequency",
                          "halfhour": "irregular_frequency"}
    assert catalog["primary_panel"].load()["series_id"].unique().tolist() == ["ok"]
    report = {row["series_id"]: row for row in catalog["data_quality_report"].load()["series"]}
    assert set(report) == {"ok", "one", "nan", "daily", "halfhour"}  # nothing dropped silently
    assert report["daily"]["inferred_freq"] == "D"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the raw file is never modified


def test_series_policy_fail_and_everything_quarantined(tmp_path, params, panel):
    path = _write(tmp_path, ["series_id,timestamp,value", *_healthy_rows(), "one,2021-03-01 00:00:00,5"])
    with pytest.raises(SeriesQualityError, match="1 series have faults.*'one' \\(too_short\\)"):
        run_data_processing(path, params | {"series_policy": "fail"}, panel)
    with pytest.raises(SeriesQualityError, match="every one of the 2 series"):
        run_data_processing(path, params | {"min_length": 1000}, panel)


def test_unknown_parameter_values_are_config_errors(tmp_path, params, panel):
    from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError

    path = _write(tmp_path, ["series_id,timestamp,value", *_healthy_rows()])
    with pytest.raises(DataProcessingConfigError, match="duplicate_policy is 'drop'"):
        run_data_processing(path, params | {"duplicate_policy": "drop"}, panel)
    with pytest.raises(DataProcessingConfigError, match="unknown key.*'target'"):
        run_data_processing(path, params | {"source": {"target": "value"}}, panel)
    with pytest.raises(DataProcessingConfigError, match="imputation is 'spline'"):
        run_data_processing(path, params | {"imputation": "spline"}, panel)
