"""benchmarks/day_n_replay.py, its pure parts: the replay split, the injected changes, the broken files, the
realized error and the scoring of a per-cycle table (no cycle is run here)."""
from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation import metrics

SEASON = 4
HORIZON = 8
BATCH = 8


@pytest.fixture(scope="module")
def replay(project_root):
    sys.path.insert(0, str(project_root / "benchmarks"))
    spec = importlib.util.spec_from_file_location("day_n_replay", project_root / "benchmarks" / "day_n_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(project_root / "benchmarks"))


def _panel(n_steps: int = 64) -> pd.DataFrame:
    """Two series on a 4-step season with a little noise; B is one step shorter at the start."""
    rng = np.random.default_rng(1)
    frames = []
    for series_id, level, start in (("A", 10.0, 0), ("B", 50.0, 1)):
        steps = np.arange(start, n_steps)
        values = level + 3 * np.sin(2 * np.pi * steps / SEASON) + rng.normal(0, 0.2, len(steps))
        frames.append(pd.DataFrame({"series_id": series_id, "timestamp": pd.date_range("2020-01-01", periods=n_steps,
                                                                                     freq="h")[start:],
                                    "value": values}))
    return pd.concat(frames, ignore_index=True)


def test_split_replay_keeps_the_last_cycles_as_batches(replay):
    panel = _panel()
    day0, stream = replay.split_replay(panel, ["A", "B"], cycles=3, batch_steps=BATCH)
    assert (stream.groupby(["series_id", "cycle"]).size() == BATCH).all()
    assert sorted(stream["cycle"].unique()) == [1, 2, 3]
    assert (day0.groupby("series_id")["timestamp"].max() < stream.groupby("series_id")["timestamp"].min()).all()
    assert len(day0) + len(stream) == len(panel)
    # batch 1 is the earliest part of the stream
    first = stream[stream["cycle"] == 1].groupby("series_id")["timestamp"].max()
    assert (first < stream[stream["cycle"] == 2].groupby("series_id")["timestamp"].min()).all()


def test_choose_series_is_every_kth_of_the_long_enough(replay):
    panel = _panel()
    short = pd.DataFrame({"series_id": "C", "timestamp": pd.date_range("2020-01-01", periods=5, freq="h"), "value": 1.0})
    chosen = replay.choose_series(pd.concat([panel, short]), n_series=5, min_length=40)
    assert chosen == ["A", "B"]
    with pytest.raises(ValueError, match="no series has"):
        replay.choose_series(panel, 2, min_length=1000)


def _stats(replay, values: np.ndarray) -> dict:
    frame = pd.DataFrame({"series_id": "A", "timestamp": pd.date_range("2020", periods=len(values), freq="h"),
                          "value": values})
    return replay.series_statistics(frame, SEASON)["A"]


def test_level_shift_and_trend_change_start_at_their_position_and_persist(replay):
    day0 = 10 + 3 * np.sin(2 * np.pi * np.arange(32) / SEASON)
    stats = _stats(replay, day0)
    stream = np.full(24, 10.0)
    rng = np.random.default_rng(0)
    shifted = replay.inject("level_shift", stream, 8, stats, SEASON, HORIZON, rng)
    np.testing.assert_array_equal(shifted[:8], stream[:8])
    np.testing.assert_allclose(shifted[8:] - stream[8:], replay.LEVEL_SHIFT_SD * stats["sd"])
    trend = replay.inject("trend_change", stream, 8, stats, SEASON, HORIZON, rng)
    added = trend - stream
    assert (added[:8] == 0).all() and np.all(np.diff(added[8:]) > 0)
    # one horizon after the change the slope has added TREND_SD_PER_HORIZON standard deviations
    assert added[8 + HORIZON - 1] == pytest.approx(replay.TREND_SD_PER_HORIZON * stats["sd"])


def test_variance_change_multiplies_the_noise_and_seasonal_change_moves_the_profile(replay):
    rng = np.random.default_rng(3)
    season = 3 * np.sin(2 * np.pi * np.arange(400) / SEASON)
    day0 = 10 + season[:200] + rng.normal(0, 1.0, 200)
    stats = _stats(replay, day0)
    stream = 10 + season[200:] + rng.normal(0, 1.0, 200)
    noisy = replay.inject("variance_change", stream, 0, stats, SEASON, HORIZON, np.random.default_rng(4))
    lag = SEASON  # the seasonal difference x[t] - x[t - season]: the season cancels, the noise stays
    ratio = np.std(noisy[lag:] - noisy[:-lag]) / np.std(stream[lag:] - stream[:-lag])
    assert ratio == pytest.approx(replay.NOISE_FACTOR, rel=0.2)
    moved = replay.inject("seasonal_shape_change", stream, 0, stats, SEASON, HORIZON, rng)
    phases = (stats["length"] + np.arange(200)) % SEASON
    before = pd.Series(stream).groupby(phases).mean()
    after = pd.Series(moved).groupby(phases).mean()
    # half a season later: the profile is turned upside down (a sine moved by half its period)
    np.testing.assert_allclose(after.to_numpy() - 10, -(before.to_numpy() - 10), atol=0.5)
    with pytest.raises(ValueError, match="unknown change"):
        replay.inject("mystery", stream, 0, stats, SEASON, HORIZON, rng)


def test_inject_changes_marks_the_rows_it_altered(replay):
    panel = _panel()
    day0, stream = replay.split_replay(panel, ["A", "B"], cycles=3, batch_steps=BATCH)
    stats = replay.series_statistics(day0, SEASON)
    changed = replay.inject_changes(stream, {2: "level_shift"}, stats, SEASON, HORIZON)
    assert not changed.loc[changed["cycle"] == 1, "synthetic"].any()
    assert changed.loc[changed["cycle"] >= 2, "synthetic"].all()
    merged = changed.merge(stream, on=["series_id", "timestamp"], suffixes=("", "_real"))
    delta = (merged["value"] - merged["value_real"]).groupby([merged["series_id"], merged["cycle"]]).mean()
    assert delta.loc[("A", 1)] == 0 and delta.loc[("A", 3)] == pytest.approx(stats["A"]["sd"])


def test_broken_batches_are_broken_the_named_way(replay):
    panel = _panel()
    day0, stream = replay.split_replay(panel, ["A", "B"], cycles=2, batch_steps=BATCH)
    stats = replay.series_statistics(day0, SEASON)
    batch, previous = stream[stream["cycle"] == 2], stream[stream["cycle"] == 1]
    read = {kind: pd.read_csv(io.StringIO(replay.broken_batch(kind, batch, previous, stats)))
            for kind in replay.BROKEN_KINDS}
    assert list(read["wrong_columns"].columns) == ["id", "time", "reading"]
    assert (pd.to_datetime(read["malformed_rows"]["timestamp"], errors="coerce").isna()).any()
    assert read["unknown_series"]["series_id"].str.endswith("_unknown").all()
    conflict = read["overlap_conflict"]
    assert len(conflict) == len(previous)
    assert not np.allclose(conflict["value"].to_numpy(), previous.sort_values(["series_id", "timestamp"])["value"])
    with pytest.raises(ValueError):
        replay.broken_batch("overlap_conflict", batch, None, stats)


def test_schedules(replay):
    schedule = replay.default_schedule(12, replay.CHANGE_KINDS)
    assert sorted(schedule.values()) == sorted(replay.CHANGE_KINDS) and len(schedule) == 4
    assert min(schedule) >= 2 and max(schedule) <= 10
    assert replay.parse_schedule("level_shift@3,trend_change@5", replay.CHANGE_KINDS) == {3: "level_shift",
                                                                                          5: "trend_change"}
    assert replay.parse_schedule("none", replay.CHANGE_KINDS) == {}
    with pytest.raises(ValueError):
        replay.parse_schedule("level_shift", replay.CHANGE_KINDS)


def test_realized_error_is_m4s_smape_and_mase_on_the_common_timestamps(replay):
    times = pd.date_range("2020-01-03", periods=4, freq="h")
    actuals = pd.DataFrame({"series_id": "A", "timestamp": times, "value": [10.0, 12.0, np.nan, 14.0]})
    forecast = pd.DataFrame({"series_id": "A", "timestamp": times[:3], "mean": [11.0, 12.0, 99.0]})
    insample = {"A": np.array([1.0, 2.0, 3.0, 5.0, 8.0, 9.0])}
    error = replay.realized_error(forecast, actuals, insample, season=2)
    y, yhat = np.array([10.0, 12.0]), np.array([11.0, 12.0])  # the missing actual and the unforecast step drop out
    assert error["n_points"] == 2
    assert error["smape"] == pytest.approx(metrics.smape(y, yhat))
    assert error["mase"] == pytest.approx(metrics.mase(y, yhat, insample["A"], 2))
    assert replay.realized_error(forecast.iloc[0:0], actuals, insample, 2)["n_points"] == 0


def _row(cycle, drift=False, retrain=False, promoted=False, mase=1.0, counter=None, latency=10.0):
    return {"cycle": cycle, "drift": drift, "retrain": retrain, "promoted": promoted, "rollbacks": 0,
            "mase_next": mase, "smape_next": None if mase is None else 10 * mase, "counterfactual_mase_next": counter,
            "counterfactual_smape_next": None if counter is None else 10 * counter, "latency_s": latency,
            "monitoring_window_steps": 4 * BATCH, "store_bytes": 100 + cycle, "raw_bytes": 50 + 10 * cycle,
            "project_bytes": 1000 + cycle}


def test_score_arm_counts_false_retrains_detection_delay_and_harmful_promotions(replay):
    changes = {2: "level_shift", 6: "variance_change"}
    rows = [_row(0), _row(1, retrain=True),                                    # false retrain, nothing before
            _row(2), _row(3, drift=True, retrain=True, promoted=True, mase=2.0, counter=1.5),  # flagged 1 late
            _row(4, retrain=True),            # its windows (4 batches: 1..4) still hold data from before change 2
            _row(5), _row(6), _row(7), _row(8, mase=None)]                     # change 6 never flagged
    totals = replay.score_arm(rows, changes, BATCH)
    assert totals["retrains"] == 3 and totals["drift_flags"] == 1 and totals["promotions"] == 1
    # cycle 3's retrain answers change 2 (its first flag); cycle 4's is an echo of it; cycle 1's is false outright
    assert sorted(totals["false_retrains"]) == [1, 4]
    assert totals["false_retrains_in_change_window"] == [4]
    assert totals["false_retrains_elsewhere"] == [1]
    assert totals["cycles_without_change"] == 5
    assert totals["detection"][2]["delay"] == 1 and totals["detection"][6]["delay"] is None
    assert totals["promotions_raising_error"] == [3]
    assert totals["mase"] == pytest.approx(np.mean([1, 1, 1, 2, 1, 1, 1, 1]))
    assert totals["store_over_raw"] == pytest.approx(108 / 130)


def test_planned_refits_are_listed_apart_from_false_retrains(replay):
    """A refit the schedule or the growth rule planned (orchestration.cycle.retrain.every / after_growth) is no
    drift false alarm: listed as scheduled, not counted in the false-retrain share; forced ones still are."""
    rows = [_row(0), _row(1, retrain=True), _row(2, retrain=True), _row(3, retrain=True), _row(4)]
    rows[1]["retrain_triggers"], rows[2]["retrain_triggers"] = ["growth"], ["schedule", "growth"]
    rows[3]["retrain_triggers"] = ["forced"]
    totals = replay.score_arm(rows, {}, BATCH)
    assert totals["scheduled_retrains"] == [1, 2] and totals["false_retrains"] == [3]
    assert totals["false_retrain_share"] == pytest.approx(1 / 4)


def test_targets_say_met_only_when_the_numbers_are_in(replay):
    changes = {2: "level_shift"}
    good = [_row(0), _row(1), _row(2, drift=True, retrain=True, promoted=True, mase=1.0, counter=1.2), _row(3), _row(4)]
    every = [_row(c, retrain=c > 0) for c in range(5)]
    totals = {"product": replay.score_arm(good, changes, BATCH), "retrain_every": replay.score_arm(every, changes, BATCH),
              "never_retrain": replay.score_arm([_row(c) for c in range(5)], changes, BATCH)}
    store = {"store_over_raw": 0.7, "cycles": 200, "n_series": 2, "store_bytes": 70, "raw_bytes": 100}
    assert all(t["met"] for t in replay.targets(totals, store))
    # 3 % worse than retraining every cycle, a late flag, a harmful promotion, a false retrain, storage 3.5x
    bad = [_row(0, mase=1.03), _row(1, retrain=True, mase=1.03), _row(2, mase=1.03),
           _row(3, retrain=True, promoted=True, mase=1.5, counter=1.0), _row(4, drift=True, mase=1.03)]
    totals["product"] = replay.score_arm(bad, changes, BATCH)
    assert not any(t["met"] for t in replay.targets(totals, {**store, "store_over_raw": 3.5}))
    assert not replay.targets(totals, {**store, "cycles": 20})[-1]["met"]  # fewer cycles than the target names


def test_a_failed_cycle_is_counted_apart_and_decides_nothing(replay):
    rows = [_row(0), _row(1, retrain=True), {**_row(2), "failed": "MonitoringConfigError: ...", "drift": None,
                                             "retrain": None, "mase_next": None}, _row(3)]
    totals = replay.score_arm(rows, {}, BATCH)
    assert totals["failed_cycles"] == [2] and totals["cycles"] == 3
    assert totals["cycles_without_change"] == 2 and totals["false_retrains"] == [1]


def test_monitoring_feasibility_counts_the_series_long_enough_for_the_drift_windows(replay):
    """Rows of the grown history (day 0 + the batches so far) against reference + recent window per cycle."""
    days = pd.date_range("2020-01-01", periods=100, freq="D")
    panel = pd.DataFrame({"series_id": "A", "timestamp": days, "value": np.arange(100.0)})
    day0, stream = replay.split_replay(panel, ["A"], cycles=2, batch_steps=10)   # 80 rows, then 90, then 100
    windows = {"reference_window_steps": 85, "recent_window_steps": 10}        # 95 steps
    rows = replay.monitoring_feasibility(day0, stream, "D", 7, windows)
    assert [r["cycle"] for r in rows] == [1, 2] and all(r["window_steps"] == 95 for r in rows)
    assert [r["series_checked"] for r in rows] == [0, 1]


def test_the_never_retrain_arm_turns_off_every_refit_trigger(replay, tmp_path):
    """The reference arm must not refit: its verdict thresholds are out of reach, and the planned refits
    (``retrain.every``, the growth rule ``retrain.after_growth``) are off in its conf/local, the rest of the
    shipped orchestration block kept. The product arm keeps the shipped rule."""
    from ts_kedro.orchestration.config import load_orchestration_config

    day0 = _panel()
    never = replay.prepare_arm(tmp_path / "never", "never_retrain", day0)
    product = replay.prepare_arm(tmp_path / "product", "product", day0)
    never_config, product_config = load_orchestration_config(never), load_orchestration_config(product)
    assert never_config.cycle.retrain.after_growth is None and never_config.cycle.retrain.every is None
    assert product_config.cycle.retrain.after_growth == 1.0
    assert never_config.pipeline_run == product_config.pipeline_run and never_config.alerts == product_config.alerts
    assert never_config.cycle.champion_alias == "champion"
