"""benchmarks/matrix.py: its loaders read the real files right, and its scoring is M4's (no kedro run here)."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation import metrics


@pytest.fixture(scope="module")
def matrix(project_root):
    sys.path.insert(0, str(project_root / "benchmarks"))
    spec = importlib.util.spec_from_file_location("matrix", project_root / "benchmarks" / "matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(project_root / "benchmarks"))


@pytest.mark.parametrize("name, n_series, test_steps", [
    ("nn5_daily", 111, 56), ("carparts", 2509, 12), ("ansett_weekly", 30, 13), ("ilinet_weekly", None, 26),
    ("stallion_monthly", 350, 6), ("bike_daily", 2, 28), ("bike_hourly", 2, 48), ("etth1", 7, 96),
])
def test_loaders_split_every_series_into_train_and_its_last_horizon(matrix, name, n_series, test_steps):
    loader, freq, horizon, _ = matrix.DATASETS[name]
    train, test = loader()
    assert horizon == test_steps and list(train.columns) == ["series_id", "timestamp", "value"]
    if n_series:
        assert train["series_id"].nunique() == n_series
    assert set(test["series_id"]) == set(train["series_id"])
    assert (test.groupby("series_id").size() == horizon).all()
    last_train = train.groupby("series_id")["timestamp"].max()
    first_test = test.groupby("series_id")["timestamp"].min()
    assert (first_test > last_train.reindex(first_test.index)).all()
    # each series starts and ends at an observation (leading / trailing gaps trimmed)
    assert train.groupby("series_id")["value"].first().notna().all()
    if name == "nn5_daily":  # the competition split: 735 training days, the last 56 for test
        assert (train.groupby("series_id").size() == 735).all()
    if name == "ansett_weekly":  # Business class starts in 1989 (MORE_DATASETS.md 6)
        starts = train.groupby("series_id")["timestamp"].min()
        assert starts[starts.index.str.endswith("_Business")].min() >= pd.Timestamp("1989-07-01")
    if name == "stallion_monthly":  # 60 real months each (MORE_DATASETS.md 4)
        assert (train.groupby("series_id").size() == 54).all()
    if name == "bike_hourly":  # the file's 165 missing hours stay missing rows, not invented values
        assert len(train) + len(test) == 2 * 17379
    if name == "etth1":
        assert set(train["series_id"]) == {"HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"}


def test_score_is_m4s_and_skips_missing_actuals(matrix, shared_data):
    panel = pd.read_csv(shared_data / "m4_hourly" / "Hourly-train-long.csv", parse_dates=["timestamp"])
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    ids = ["H1", "H2"]
    panel, test = panel[panel["series_id"].isin(ids)], test[test["series_id"].isin(ids)].copy()
    forecasts = []
    for sid in ids:
        x = panel.loc[panel["series_id"] == sid, "value"].to_numpy(float)
        mean = metrics.seasonal_naive_forecast(x, 48, 24)
        forecasts.append(pd.DataFrame({"series_id": sid, "timestamp": test.loc[test["series_id"] == sid, "timestamp"],
                                       "mean": mean, "lo-80": mean - 1, "hi-80": mean + 1,
                                       "lo-95": mean - 2, "hi-95": mean + 2}))
    forecasts = pd.concat(forecasts)
    result = matrix.score(forecasts, test, panel, 24, [80, 95])
    expected = np.mean([metrics.mase(test.loc[test["series_id"] == s, "value"].to_numpy(float),
                                     forecasts.loc[forecasts["series_id"] == s, "mean"].to_numpy(),
                                     panel.loc[panel["series_id"] == s, "value"].to_numpy(float), 24) for s in ids])
    assert result["mase"] == pytest.approx(expected) and result["n_series"] == 2
    test.loc[test.index[:5], "value"] = np.nan  # missing actuals are not scored, the others keep their step
    assert np.isfinite(matrix.score(forecasts, test, panel, 24, [80, 95])["mase"])


def test_earlier_origin_moves_the_test_window_back_by_whole_horizons(matrix, shared_data):
    """``--origins k``: each series loses its last k horizons, the horizon before them is the test part, and a
    series left with under two horizons of training is dropped (real M3 yearly series, 14-41 training years)."""
    train, test = matrix._m3("yearly")
    ids = set(train["series_id"])
    same = matrix.earlier_origin(train, test, 6, 0)
    assert same[0] is train and same[1] is test
    moved_train, moved_test = matrix.earlier_origin(train, test, 6, 1)
    # origin 1 of a series with a 6-year test part: its test window is the dataset's last 6 training years
    expected = train.groupby("series_id", group_keys=False).tail(6)
    kept = set(moved_test["series_id"])
    assert kept and (moved_test.groupby("series_id").size() == 6).all()
    pd.testing.assert_frame_equal(
        moved_test.sort_values(["series_id", "timestamp"]).reset_index(drop=True),
        expected[expected["series_id"].isin(kept)].sort_values(["series_id", "timestamp"]).reset_index(drop=True))
    assert (moved_train.groupby("series_id")["timestamp"].max()
            < moved_test.groupby("series_id")["timestamp"].min()).all()
    assert (moved_train.groupby("series_id").size() >= 12).all()
    lengths = train.groupby("series_id").size() + 6
    assert ids - kept == set(lengths[lengths - 6 < 18].index)  # under 3 horizons once one is cut: dropped
