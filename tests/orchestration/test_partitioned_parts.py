"""The pieces of partition-by-partition runs: planning, grid lengths, joining Parquet and summaries, settings.

The whole runs (partitioned vs whole outputs) are in tests/e2e/test_partitioned.py.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ts_kedro.orchestration.config import OrchestrationConfig, OrchestrationConfigError
from ts_kedro.orchestration.partitioned import (
    PartitionedRunError,
    concat_parquet,
    grid_lengths,
    merge_inference_summaries,
    pinned_panel_params,
    plan_partitions,
)


def test_partitions_are_ranges_of_whole_series_in_string_order_balanced_by_rows():
    rows = pd.Series({"b": 40, "a": 30, "c": 50, "d": 200, "e": 10, "f": 10})
    plan = plan_partitions(rows, rows_per_partition=80)
    assert list(zip(plan.firsts, plan.lasts, plan.rows)) == [("a", "b", 70), ("c", "c", 50), ("d", "d", 200),
                                                             ("e", "f", 20)]
    # every id lands in the partition whose range holds it; the long series is a partition of its own
    assert plan.assign(np.array(["a", "b", "c", "d", "e", "f"], dtype=object)).tolist() == [0, 0, 1, 2, 3, 3]
    assert plan_partitions(rows, rows_per_partition=10_000).count == 1
    with pytest.raises(PartitionedRunError, match="rows_per_partition"):
        plan_partitions(rows, rows_per_partition=0)
    with pytest.raises(PartitionedRunError, match="no rows"):
        plan_partitions(pd.Series(dtype=np.int64), rows_per_partition=10)


def test_grid_lengths_count_the_grid_between_first_and_last_observed_value():
    first = pd.Series(pd.to_datetime(["2020-01-01 00:00", "2020-01-01 05:00", None]), index=["a", "b", "c"])
    last = pd.Series(pd.to_datetime(["2020-01-02 00:00", "2020-01-01 05:00", None]), index=["a", "b", "c"])
    assert grid_lengths(first, last, "h").tolist() == [25, 1, 0]
    monthly = grid_lengths(pd.Series(pd.to_datetime(["2019-01-01", "2019-03-01"])),
                           pd.Series(pd.to_datetime(["2020-12-01", "2019-03-01"])), "MS")
    assert monthly.tolist() == [24, 1]
    weekly = grid_lengths(pd.Series(pd.to_datetime(["2024-01-07"])), pd.Series(pd.to_datetime(["2024-03-03"])), "W-SUN")
    assert weekly.tolist() == [9]


def test_the_profile_is_pinned_from_the_whole_panel_lengths_and_configured_values_win():
    lengths = pd.Series({"long": 800, "short": 60})  # daily: the yearly period is kept only if one series covers it twice
    pinned = pinned_panel_params({"freq": "D", "horizon": 14, "levels": [80]}, lengths, None)
    assert pinned["seasonal_periods"] == [7.0, 365.25] and pinned["season_length"] == 7
    only_short = pinned_panel_params({"freq": "D", "horizon": 14, "levels": [80]}, lengths[["short"]], None)
    assert only_short["seasonal_periods"] == [7.0]  # what a partition of short series alone would derive
    configured = pinned_panel_params({"freq": "D", "horizon": 14, "season_length": 7, "seasonal_periods": [7]}, lengths, None)
    assert set(configured) == {"lstm_input_size"}


def _frame(ids, start):
    return pd.DataFrame({"series_id": pd.Categorical(ids), "timestamp": pd.date_range(start, periods=len(ids), freq="h"),
                         "value": np.arange(len(ids), dtype=float)})


def test_concat_parquet_joins_partitions_with_different_categories_and_updates_attrs(tmp_path):
    parts = [_frame(["a", "a", "b"], "2020-01-01"), _frame(["c"] * 300, "2020-02-01")]  # 2 vs 3 categories
    paths = []
    for k, part in enumerate(parts):
        part.attrs["source_file"] = f"part-{k}.csv"
        paths.append(tmp_path / f"p{k}.parquet")
        part.to_parquet(paths[-1])
    target = tmp_path / "out" / "joined.parquet"
    assert concat_parquet(paths, target, {"source_file": "panel.csv"}) == 303
    joined = pd.read_parquet(target)
    expected = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(joined.astype({"series_id": str}), expected.astype({"series_id": str}))
    assert isinstance(joined["series_id"].dtype, pd.CategoricalDtype) and joined.attrs == {"source_file": "panel.csv"}


def test_concat_parquet_refuses_different_columns_and_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "joined.parquet"
    target.write_bytes(b"previous")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    _frame(["a"], "2020-01-01").to_parquet(good)
    _frame(["b"], "2020-01-01").rename(columns={"value": "y"}).to_parquet(bad)
    with pytest.raises(PartitionedRunError, match="bad.parquet has columns"):
        concat_parquet([good, bad], target)
    assert target.read_bytes() == b"previous" and list(tmp_path.glob(".*tmp")) == []


def test_inference_summaries_join_counts_times_and_the_forecast_span():
    one = {"n_series": 3, "rows": 30, "load_seconds": 1.0, "condition_seconds": 2.0, "predict_seconds": 0.5,
           "latency_seconds": 3.5, "new_steps": 2, "conditioning": "update", "refitted_families": {},
           "refitted_series": {"arima": {"s1": "a 0 on the log scale"}},
           "forecast_start": "2020-01-02", "forecast_end": "2020-01-05", "horizon": 10, "levels": [80]}
    two = {**one, "n_series": 1, "rows": 10, "new_steps": 4, "refitted_families": {"ets": "cannot update"},
           "refitted_series": {"arima": {"s9": "a 0 on the log scale"}},
           "forecast_start": "2020-01-01", "forecast_end": "2020-01-06"}
    merged = merge_inference_summaries([one, two])
    assert merged["n_series"] == 4 and merged["rows"] == 40 and merged["latency_seconds"] == 7.0
    assert merged["new_steps"] == 4 and merged["refitted_families"] == {"ets": "cannot update"}
    assert merged["refitted_series"] == {"arima": {"s1": "a 0 on the log scale", "s9": "a 0 on the log scale"}}
    assert one["refitted_series"] == {"arima": {"s1": "a 0 on the log scale"}}  # the parts are left as they were
    assert (merged["forecast_start"], merged["forecast_end"]) == ("2020-01-01", "2020-01-06")
    assert merged["partitions"] == 2 and merged["conditioning"] == "update" and json.dumps(merged)


def test_partitioned_settings_are_validated():
    config = OrchestrationConfig.from_dict({"partitioned": {"rows_per_partition": 1000}})
    assert config.partitioned.rows_per_partition == 1000 and config.partitioned.keep_partitions is False
    with pytest.raises(OrchestrationConfigError, match="rows_per_partition must be a positive integer"):
        OrchestrationConfig.from_dict({"partitioned": {"rows_per_partition": 0}})
    with pytest.raises(OrchestrationConfigError, match=r"unknown key\(s\) \['rows'\]"):
        OrchestrationConfig.from_dict({"partitioned": {"rows": 10}})
