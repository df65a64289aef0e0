"""Partition-by-partition runs give the outputs of the whole-panel run (ts_kedro.orchestration.partitioned).

Real samples (tests/data/samples) of two frequencies: M3 monthly with planted faults (a duplicate row, rows out
of order, an all-missing series, a one-value series, a gap, a non-numeric cell: the edits are synthetic, the
series real) and NN5 daily with its own missing values, three of its four series cut short (so that the
profile must come from the whole panel, not from each partition). Each runs `data_processing` once whole and
once cut into several partitions of whole series; every output the catalog holds must be the same. Day-N
inference does the same from the history store, with a real seasonal-naive champion standing in for the registry.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from .project_copy import make_project_copy

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
OUTPUTS = {"primary_panel": "03_primary/primary_panel.parquet", "validated_panel": "02_intermediate/validated_panel.parquet",
           "series_quarantine": "08_reporting/series_quarantine.json",
           "data_quality_report": "08_reporting/data_quality_report.json",
           "data_quality_table": "08_reporting/data_quality_report.md"}


def _planted_m3_monthly(path: Path) -> Path:
    raw = pd.read_csv(SAMPLES / "m3_monthly.csv", dtype=str)
    raw.loc[raw["series_id"] == "N2480", "value"] = ""                       # all missing -> quarantined
    gap = raw.index[raw["series_id"] == "N2562"][40:43]
    raw = raw.drop(gap)                                                       # a 3-month gap -> imputed
    n2564 = raw.index[raw["series_id"] == "N2564"]
    raw.loc[[n2564[10], n2564[11]]] = raw.loc[[n2564[11], n2564[10]]].to_numpy()  # two rows out of order
    raw.loc[raw.index[raw["series_id"] == "N2565"][30], "value"] = "n/a"     # non-numeric, coerced
    duplicate = raw[raw["series_id"] == "N2479"].iloc[[5]]
    one_value = pd.DataFrame({"series_id": ["X1"] * 3, "timestamp": ["1990-01-01", "1990-02-01", "1990-03-01"],
                              "value": ["4.5", "", ""]})                     # one observed value -> quarantined
    raw = pd.concat([raw, duplicate, one_value], ignore_index=True)
    raw.to_csv(path, index=False)
    return path


def _nn5_one_long_series(path: Path) -> Path:
    """NN5 daily as it is for N101 (735 days: covers the yearly period twice), the others cut to their last 200
    days: a partition of short series alone would derive the weekly period only; the whole panel keeps both."""
    raw = pd.read_csv(SAMPLES / "nn5_daily.csv", dtype=str, keep_default_na=False)
    from_end = raw.groupby("series_id").cumcount(ascending=False)
    raw[(raw["series_id"] == "N101") | (from_end < 200)].to_csv(path, index=False)
    return path


CASES = {  # name -> (raw file maker, freq, horizon, extra data_processing parameters)
    "m3_monthly_planted": (_planted_m3_monthly, "MS", 18,
                           {"duplicate_policy": "keep_first", "non_numeric_policy": "coerce"}),
    "nn5_daily_mixed_lengths": (_nn5_one_long_series, "D", 56, {}),
}


@pytest.fixture()
def project(tmp_path, monkeypatch):
    root = make_project_copy(tmp_path / "project", n_series=None)
    for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.setenv("TS_KEDRO_CONF_SOURCE", str(root / "conf"))
    monkeypatch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,ets,theta")
    monkeypatch.chdir(root)
    return root


def _session_run(root: Path, params: dict, **run_args) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    import mlflow

    bootstrap_project(root)
    with KedroSession.create(project_path=root, runtime_params=params) as session:
        session.run(**run_args)
    while mlflow.active_run():  # kedro-mlflow leaves its run active in this process; the next session is its own
        mlflow.end_run()


def _snapshot(data: Path) -> dict:
    out = {}
    for name, relative in OUTPUTS.items():
        path = data / relative
        if relative.endswith(".parquet"):
            frame = pd.read_parquet(path)
            out[name] = (frame.assign(series_id=frame["series_id"].astype(str)), frame.dtypes.astype(str).to_dict(),
                         frame.attrs)
        else:
            out[name] = path.read_text()
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_partitioned_data_processing_writes_what_the_whole_run_writes(case, project, tmp_path):
    from ts_kedro.orchestration.partitioned import run_partitioned

    make_raw, freq, horizon, extra = CASES[case]
    raw = make_raw(tmp_path / f"{case}.csv")
    params = {"raw_panel_path": str(raw), "panel": {"freq": freq, "horizon": horizon}, "data_processing": extra}
    _session_run(project, params, pipeline_name="data_processing")
    whole = _snapshot(project / "data")

    summary = run_partitioned("data_processing", project_path=project, runtime_params=params, rows_per_partition=150)
    parted = _snapshot(project / "data")

    assert summary["partitions"] >= 3 and summary["series"] == pd.read_csv(raw)["series_id"].nunique()
    assert not (project / "data" / "02_intermediate" / "_partitions" / "data_processing").exists()  # cleaned up
    for name in ("primary_panel", "validated_panel"):
        frame, dtypes, attrs = whole[name]
        pd.testing.assert_frame_equal(parted[name][0], frame)
        assert parted[name][1] == dtypes and parted[name][2] == attrs == {"source_file": str(raw)}
    assert parted["series_quarantine"] == whole["series_quarantine"]
    report, whole_report = json.loads(parted["data_quality_report"]), json.loads(whole["data_quality_report"])
    assert report["series"] == whole_report["series"]
    assert report["summary"] == {**whole_report["summary"], "partitions": summary["partitions"]}
    assert parted["data_quality_table"] == whole["data_quality_table"]
    # the profile of the whole panel, not of one partition
    assert report["summary"]["seasonal_periods"] == whole_report["summary"]["seasonal_periods"]
    if case == "nn5_daily_mixed_lengths":
        assert summary["pinned_panel"]["seasonal_periods"] == [7.0, 365.25]
    if case == "m3_monthly_planted":  # the planted faults reached the partitions' checks
        assert {q["series_id"] for q in json.loads(parted["series_quarantine"])} == {"N2480", "X1"}
        assert report["summary"]["duplicates_dropped"] == 1 and report["summary"]["rows_out_of_order"] >= 1
        assert report["summary"]["points_imputed"] >= 3


def test_a_failing_partition_is_named_and_leaves_the_outputs_unchanged(project, tmp_path):
    from ts_kedro.orchestration.partitioned import PartitionedRunError, run_partitioned

    raw = _planted_m3_monthly(tmp_path / "good.csv")
    params = {"raw_panel_path": str(raw), "panel": {"freq": "MS", "horizon": 18},
              "data_processing": {"duplicate_policy": "keep_first", "non_numeric_policy": "coerce"}}
    run_partitioned("data_processing", project_path=project, runtime_params=params, rows_per_partition=150)
    before = {name: (project / "data" / relative).read_bytes() for name, relative in OUTPUTS.items()}

    bad = pd.read_csv(raw, dtype=str, keep_default_na=False)
    bad.loc[bad.index[bad["series_id"] == "N2565"][7], "timestamp"] = "not a date"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PartitionedRunError, match=r"(?s)partition \d+ of \d+ .*not a date"):
        run_partitioned("data_processing", project_path=project,
                        runtime_params={**params, "raw_panel_path": str(tmp_path / "bad.csv")}, rows_per_partition=150)
    assert {name: (project / "data" / relative).read_bytes() for name, relative in OUTPUTS.items()} == before
    kept = project / "data" / "02_intermediate" / "_partitions" / "data_processing"
    assert any((kept / "raw").glob("part-*.csv"))  # kept for the user to look at


def _seasonal_naive_champion(m4_sample_panel: pd.DataFrame):
    """The real M4 Hourly sample in time order, each row's position in its series, its first 600 hours (Day 0) and
    a seasonal-naive panel champion fitted on them (it stands in for the registry's champion)."""
    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
    from ts_kedro.registry.panel_model import SelectedPanelModel

    panel = m4_sample_panel[["series_id", "timestamp", "value"]].sort_values(["series_id", "timestamp"])
    position = panel.groupby("series_id").cumcount()
    day0 = panel[position < 600].reset_index(drop=True)
    model = SeasonalNaive(freq="h", season_length=24).fit(day0)
    champion = SelectedPanelModel({"seasonal_naive": model}, {s: "seasonal_naive" for s in model.series_ids_}, [],
                                  [80, 95], 48, {"primary_metric": "smape", "selected_score": 9.0,
                                                 "data_window_end": str(day0["timestamp"].max())})
    return panel, position, day0, champion


def test_partitioned_inference_forecasts_what_the_whole_run_forecasts(project, monkeypatch, m4_sample_panel):
    from ts_kedro.datasets.history_store import DuckDBHistoryDataset
    from ts_kedro.orchestration.partitioned import run_partitioned
    from ts_kedro.pipelines.inference import nodes as inference_nodes

    panel, position, day0, champion = _seasonal_naive_champion(m4_sample_panel)
    loads = []
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: loads.append(name) or champion)
    DuckDBHistoryDataset(str(project / "data" / "02_intermediate" / "history.duckdb")).save(
        panel[position < 700].reset_index(drop=True))  # 100 new points per series since the champion's fit
    params = {"panel": {"freq": "h", "horizon": 48}}

    _session_run(project, params, pipeline_name="ingestion", namespaces=["history"])
    _session_run(project, params, pipeline_name="inference")
    data = project / "data"
    whole_history = pd.read_parquet(data / "03_primary" / "history_primary_panel.parquet")
    whole_forecasts = pd.read_parquet(sorted((data / "07_model_output" / "champion_forecasts.parquet").iterdir())[-1]
                                      / "champion_forecasts.parquet")
    whole_summary = json.loads((data / "08_reporting" / "inference_summary.json").read_text())

    loads.clear()
    summary = run_partitioned("inference", project_path=project, runtime_params=params, rows_per_partition=3000)
    assert len(loads) == 1  # the registry is read once for all partitions
    versions = sorted((data / "07_model_output" / "champion_forecasts.parquet").iterdir())
    assert summary["partitions"] >= 5 and len(versions) == 2
    forecasts = pd.read_parquet(versions[-1] / "champion_forecasts.parquet")
    pd.testing.assert_frame_equal(forecasts.astype({"series_id": str}), whole_forecasts.astype({"series_id": str}))
    history = pd.read_parquet(data / "03_primary" / "history_primary_panel.parquet")
    pd.testing.assert_frame_equal(history.astype({"series_id": str}), whole_history.astype({"series_id": str}))
    merged = json.loads((data / "08_reporting" / "inference_summary.json").read_text())
    assert merged["partitions"] == summary["partitions"] and merged["n_series"] == whole_summary["n_series"] == 24
    assert merged["rows"] == whole_summary["rows"] and merged["new_steps"] == whole_summary["new_steps"] == 100
    assert merged["forecast_start"] == whole_summary["forecast_start"]
    assert (data / "08_reporting" / "inference_alerts.json").exists()  # the tail ran on the joined summary


def _day_n_project(root: Path, day0: pd.DataFrame, stored: pd.DataFrame, batches: dict[str, pd.DataFrame]) -> Path:
    """A project copy with the Day-0 validated panel, a history store holding ``stored``, and batch files."""
    from ts_kedro.datasets.history_store import DuckDBHistoryDataset

    project = make_project_copy(root, n_series=None)
    data = project / "data"
    (data / "02_intermediate").mkdir(parents=True, exist_ok=True)
    day0.to_parquet(data / "02_intermediate" / "validated_panel.parquet")
    DuckDBHistoryDataset(str(data / "02_intermediate" / "history.duckdb")).save(stored)
    incoming = data / "01_raw" / "incoming"
    incoming.mkdir(parents=True)
    for name, frame in batches.items():
        frame.to_csv(incoming / f"{name}.csv", index=False, date_format="%Y-%m-%d %H:%M:%S")
    return project


def test_bounded_ingestion_then_partitioned_inference_equal_the_whole_day_n(tmp_path, monkeypatch, m4_sample_panel):
    """``partitioned --pipeline ingestion`` checks the batches against the store by query (the history is never
    loaded whole, nor the Day-0 panel) and stores, archives and quarantines what the whole ingestion does; the
    partitioned inference after it gives the whole Day N's history panel and forecasts."""
    from ts_kedro.datasets.deferred_parquet import DeferrableParquetDataset
    from ts_kedro.datasets.history_store import DuckDBHistoryDataset
    from ts_kedro.orchestration.partitioned import run_partitioned
    from ts_kedro.pipelines.inference import nodes as inference_nodes

    panel, position, day0, champion = _seasonal_naive_champion(m4_sample_panel)
    monkeypatch.setattr(inference_nodes, "load_champion_model", lambda name, uri=None: champion)
    first = panel[(position >= 650) & (position < 680)]
    conflict = panel[position == 640].head(2).assign(value=lambda f: f["value"] + 1)  # synthetic revision
    batches = {"2026-01-01_a": first, "2026-01-01_b": panel[(position >= 680) & (position < 700)],
               "2026-01-01_c": conflict}
    stored = panel[position < 650].reset_index(drop=True)
    for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,ets,theta")
    params = {"panel": {"freq": "h", "horizon": 48}}
    results = {}
    for mode in ("whole", "bounded"):
        project = _day_n_project(tmp_path / mode, day0, stored, batches)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlflow.db")
        monkeypatch.setenv("TS_KEDRO_CONF_SOURCE", str(project / "conf"))
        monkeypatch.chdir(project)
        loads = []
        store_load, parquet_load = DuckDBHistoryDataset.load, DeferrableParquetDataset.load
        monkeypatch.setattr(DuckDBHistoryDataset, "load",
                            lambda self: loads.append(("history", self.load_as)) or store_load(self))
        monkeypatch.setattr(DeferrableParquetDataset, "load",
                            lambda self: loads.append(("validated_panel", self.deferred)) or parquet_load(self))
        if mode == "whole":
            _session_run(project, params, pipeline_name="ingestion")
            _session_run(project, params, pipeline_name="inference")
        else:
            summary = run_partitioned("ingestion", project_path=project, runtime_params=params)
            assert summary["n_accepted"] == 2 and summary["n_quarantined"] == 1 and "inference" in summary["next"]
            assert ("history", "frame") not in loads and ("validated_panel", False) not in loads, loads
            run_partitioned("inference", project_path=project, runtime_params=params, rows_per_partition=3000)
        monkeypatch.setattr(DuckDBHistoryDataset, "load", store_load)
        monkeypatch.setattr(DeferrableParquetDataset, "load", parquet_load)
        data = project / "data"
        report = json.loads((data / "08_reporting" / "ingestion_report.json").read_text())
        forecasts = sorted((data / "07_model_output" / "champion_forecasts.parquet").iterdir())[-1]
        results[mode] = {
            "history": DuckDBHistoryDataset(str(data / "02_intermediate" / "history.duckdb")).load(),
            "report": {k: v for k, v in report.items() if k not in ("batches", "retention")},
            "batches": [{k: v for k, v in b.items() if k != "file"} for b in report["batches"]],
            "archived": sorted(p.name for p in (data / "01_raw" / "archive").rglob("*.csv")),
            "quarantined": sorted(p.name for p in (data / "01_raw" / "quarantine").rglob("*.csv")),
            "history_primary": pd.read_parquet(data / "03_primary" / "history_primary_panel.parquet"),
            "forecasts": pd.read_parquet(forecasts / "champion_forecasts.parquet"),
        }
    whole, bounded = results["whole"], results["bounded"]
    assert len(whole["history"]) == len(stored) + len(first) + 24 * 20
    pd.testing.assert_frame_equal(bounded["history"], whole["history"])
    assert bounded["report"] == whole["report"] and bounded["batches"] == whole["batches"]
    assert [b["status"] for b in whole["batches"]] == ["accepted", "accepted", "quarantined"]
    assert bounded["archived"] == whole["archived"] == ["2026-01-01_a.csv", "2026-01-01_b.csv"]
    assert bounded["quarantined"] == whole["quarantined"] == ["2026-01-01_c.csv"]
    for name in ("history_primary", "forecasts"):
        pd.testing.assert_frame_equal(bounded[name].astype({"series_id": str}), whole[name].astype({"series_id": str}))


FEATURES = {"feature_panel": "04_feature/feature_panel.parquet",
            "series_decomposition": "04_feature/series_decomposition.parquet",
            "feature_manifest": "04_feature/feature_manifest.json",
            "lightgbm_model_input": "05_model_input/lightgbm_model_input.parquet"}


@pytest.mark.parametrize("case", list(CASES))
def test_partitioned_feature_engineering_writes_what_the_whole_run_writes(case, project, tmp_path, monkeypatch):
    """Features per partition of the primary panel (a Parquet filter on the series range); the lightgbm family's
    origin-horizon rows, sampled across all series, are built once from the whole panel after the partitions."""
    from ts_kedro.orchestration.partitioned import run_partitioned

    monkeypatch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,lightgbm")
    make_raw, freq, horizon, extra = CASES[case]
    params = {"raw_panel_path": str(make_raw(tmp_path / f"{case}.csv")), "panel": {"freq": freq, "horizon": horizon},
              "data_processing": extra}
    _session_run(project, params, pipeline_name="data_processing")
    _session_run(project, params, pipeline_name="feature_engineering")
    data = project / "data"
    whole = {name: (data / relative).read_bytes() if relative.endswith(".json") else pd.read_parquet(data / relative)
             for name, relative in FEATURES.items()}
    for relative in FEATURES.values():
        (data / relative).unlink()

    summary = run_partitioned("feature_engineering", project_path=project, runtime_params=params,
                              rows_per_partition=150)
    assert summary["partitions"] >= 3 and set(summary["outputs"]) == {"feature_panel", "series_decomposition",
                                                                      "feature_manifest"}
    for name, relative in FEATURES.items():
        if relative.endswith(".json"):
            assert json.loads((data / relative).read_bytes()) == json.loads(whole[name]), name
        else:
            frame = pd.read_parquet(data / relative)
            pd.testing.assert_frame_equal(frame.astype({"series_id": str}), whole[name].astype({"series_id": str}))
            assert frame.attrs == whole[name].attrs, name


def test_a_semicolon_decimal_comma_file_is_partitioned_in_its_own_format(project, tmp_path):
    """`load_args: {sep: ";", decimal: ","}` (a European export of the M3 monthly sample): the partition files keep
    the format their rows are read with; row-skipping load_args are refused with the reason."""
    import yaml

    from ts_kedro.orchestration.partitioned import PartitionedRunError, run_partitioned

    raw = pd.read_csv(_planted_m3_monthly(tmp_path / "planted.csv"), dtype=str, keep_default_na=False)
    raw["value"] = raw["value"].str.replace(".", ",", regex=False)
    raw.to_csv(tmp_path / "european.csv", sep=";", index=False)
    entry = {"type": "ts_kedro.datasets.CSVChunkSourceDataset", "filepath": str(tmp_path / "european.csv"),
             "load_args": {"sep": ";", "decimal": ","}}
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump({"raw_panel": entry}))
    params = {"panel": {"freq": "MS", "horizon": 18},
              "data_processing": {"duplicate_policy": "keep_first", "non_numeric_policy": "coerce"}}
    _session_run(project, params, pipeline_name="data_processing")
    whole = _snapshot(project / "data")
    run_partitioned("data_processing", project_path=project, runtime_params=params, rows_per_partition=150)
    parted = _snapshot(project / "data")
    pd.testing.assert_frame_equal(parted["primary_panel"][0], whole["primary_panel"][0])
    assert json.loads(parted["data_quality_report"])["series"] == json.loads(whole["data_quality_report"])["series"]

    entry["load_args"]["skiprows"] = 0
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump({"raw_panel": entry}))
    with pytest.raises(PartitionedRunError, match=r"load_args \['skiprows'\] change which lines are rows"):
        run_partitioned("data_processing", project_path=project, runtime_params=params, rows_per_partition=150)
