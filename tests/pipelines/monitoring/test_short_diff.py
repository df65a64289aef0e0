"""The short difference (lag one season) as a deciding drift feature beside the seasonal difference.

The seasonal difference looks a whole number of seasons back, past the recent window (NN5 daily: 56 days), so a
doubled noise is diluted by the level's wandering over that lag: the NN5 Day-N replay let a variance change pass
unflagged. The difference at one season (7 days) is mostly noise. Real NN5 series (tests/data/samples/nn5_daily.csv);
the variance change is synthetic (Gaussian noise added to the last batch, as benchmarks/day_n_replay.py does).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift
from ts_kedro.pipelines.monitoring.verdict import summarise_drift
from ts_kedro.pipelines.monitoring.windows import SHORT_DIFF, build_drift_windows

NN5 = Path(__file__).resolve().parents[2] / "data" / "samples" / "nn5_daily.csv"
PANEL = {"freq": "D", "horizon": 56, "levels": [80, 95]}
BATCH = PANEL["horizon"]
NO_PERFORMANCE = {"available": False, "reason": "data drift only"}


@pytest.fixture(scope="module")
def nn5() -> pd.DataFrame:
    frame = pd.read_csv(NN5, parse_dates=["timestamp"]).sort_values(["series_id", "timestamp"])
    # the sample keeps NN5's missing days; fill them as data_processing's linear imputation would
    frame["value"] = frame.groupby("series_id")["value"].transform(lambda v: v.interpolate().bfill())
    return frame.assign(is_imputed=False, is_anomaly=False).reset_index(drop=True)


def _doubled_noise(history: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC: the last batch of every series with its noise doubled (Gaussian noise of sqrt(3) times the noise
    standard deviation of its weekly difference, / sqrt 2, added)."""
    rng = np.random.default_rng(seed)
    out = history.copy()
    for _, rows in out.groupby("series_id"):
        before = rows["value"].to_numpy()[:-BATCH]
        noise_sd = np.std(before[7:] - before[:-7]) / np.sqrt(2)
        out.loc[rows.index[-BATCH:], "value"] += rng.normal(0.0, noise_sd * np.sqrt(3), BATCH)
    return out


def _data_drift(history: pd.DataFrame, params: dict) -> dict:
    reference, current = build_drift_windows(history, params, PANEL)
    data_drift, _, _ = detect_data_drift(reference, current, calibrate_drift_thresholds(history, params, PANEL),
                                         params)
    return data_drift


def _with(monitoring_params: dict, series_feature) -> dict:
    params = copy.deepcopy(monitoring_params)
    params["data_drift"]["series_feature"] = series_feature
    return params


def test_the_short_difference_is_the_difference_at_one_season(nn5, monitoring_params):
    reference, current = build_drift_windows(nn5, monitoring_params, PANEL)
    series = nn5[nn5["series_id"] == "N101"]["value"].to_numpy()
    recent = current[f"N101|{SHORT_DIFF}"].to_numpy()
    np.testing.assert_allclose(recent, series[-len(recent):] - series[-len(recent) - 7:-7])
    # a lag equal to the seasonal one would be the same column twice: then there is none
    same = copy.deepcopy(monitoring_params) | {"seasonal_lag_steps": 7}
    assert not any(c.endswith(f"|{SHORT_DIFF}") for c in build_drift_windows(nn5, same, PANEL)[0].columns)


def test_doubled_noise_drifts_with_the_short_difference_deciding(nn5, monitoring_params):
    shipped = _with(monitoring_params, ["seasonal_diff", "short_diff"])
    changed = _data_drift(_doubled_noise(nn5), shipped)
    summary = summarise_drift(changed, NO_PERFORMANCE, shipped)
    assert summary["drift"] is True and changed["drift_share"] > 0.5
    assert "seasonal_diff or short_diff" in summary["reasons"][0]
    assert _data_drift(nn5, shipped)["drift_share"] <= 0.5  # the clean batch does not
    # the seasonal difference alone does not see it (the replay's miss)
    assert _data_drift(_doubled_noise(nn5), _with(monitoring_params, "seasonal_diff"))["drift_share"] <= 0.5


def test_the_false_flag_budget_is_split_between_deciding_features(nn5, monitoring_params):
    one = calibrate_drift_thresholds(nn5, _with(monitoring_params, "seasonal_diff"), PANEL)["columns"]
    two = calibrate_drift_thresholds(nn5, _with(monitoring_params, ["seasonal_diff", "short_diff"]), PANEL)["columns"]
    for column, entry in two.items():
        if column.endswith("|seasonal_diff"):  # quantile 0.975 of the same windows' scores instead of 0.95
            assert entry["threshold"] >= one[column]["threshold"]
        if column.endswith("|value"):  # not deciding: unchanged
            assert entry["threshold"] == one[column]["threshold"]
    assert any(two[c]["threshold"] > one[c]["threshold"] for c in two if c.endswith("|seasonal_diff"))
