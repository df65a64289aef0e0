"""Conformal calibration of intervals from backtest residuals, on real M4 Hourly series."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation.backtest import rolling_origin_backtest
from ts_kedro.evaluation.conformal import (
    _conformal_quantile,
    apply_adjustments,
    conformal_adjustments,
    ensemble_adjustments,
)
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.8) = 16
    assert _conformal_quantile(scores, 0.8) == 16.0
    assert _conformal_quantile(np.arange(5.0), 0.95) == 4.0  # beyond n: the largest
    assert _conformal_quantile(np.array([]), 0.9) == 0.0


def test_adjustments_widen_by_the_learnt_share_of_the_width():
    forecast = pd.DataFrame({"series_id": ["a"] * 3, "timestamp": pd.date_range("2020", periods=3, freq="h"),
                             "mean": [10.0] * 3, "lo-80": [8.0] * 3, "hi-80": [12.0] * 3})
    out = apply_adjustments(forecast, {"levels": {80: [0.0, 0.25, -0.25]}}, {"a": 1.0})
    np.testing.assert_allclose(out["lo-80"], [8.0, 7.0, 9.0])
    np.testing.assert_allclose(out["hi-80"], [12.0, 13.0, 11.0])


def test_calibrated_model_covers_its_backtest_at_the_nominal_level(small_panel):
    """In sample of the calibration itself, the pooled coverage reaches the level (the conformal guarantee)."""
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 4, 24, [80, 95], min_train=48)
    adjustments = conformal_adjustments(backtest, small_panel, 24, [80, 95])
    assert set(adjustments["levels"]) == {80, 95} and len(adjustments["levels"][80]) == 24
    adjusted = apply_adjustments(backtest, adjustments, {}, by=("series_id", "window"))
    for level in (80, 95):
        inside = (adjusted["actual"] >= adjusted[f"lo-{level}"]) & (adjusted["actual"] <= adjusted[f"hi-{level}"])
        assert inside.mean() >= level / 100 - 0.02


def test_fitted_family_predicts_calibrated_intervals(small_panel):
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 3, 24, [80, 95], min_train=48)
    model = factory().fit(small_panel)
    raw = model.predict(24, [80, 95])
    model.calibrate_intervals(backtest, small_panel)
    calibrated = model.predict(24, [80, 95])
    pd.testing.assert_series_equal(raw["mean"], calibrated["mean"])
    assert not np.allclose(raw["hi-95"], calibrated["hi-95"])
    assert (calibrated["lo-95"] <= calibrated["lo-80"]).all() and (calibrated["lo-80"] <= calibrated["mean"]).all()
    assert (calibrated["lo-95"] >= 0).all()  # M4 Hourly values are positive: bounds kept non-negative
    with pytest.raises(Exception, match="fit"):
        factory().calibrate_intervals(backtest, small_panel)


Z = {80: 1.2815516, 95: 1.9599640}


def _synthetic_member_backtests(seed: int, n_series: int = 400, members: int = 3, shrink: float = 0.7):
    """SYNTHETIC: white-noise series, and members whose forecast errors are independent N(0, 2) with raw
    intervals ``shrink`` times the correct width (overconfident, so each member needs its own calibration).
    The median of three such members errs with variance about 1.45 instead of 2."""
    rng = np.random.default_rng(seed)
    horizon, stamps = 6, pd.date_range("2020-01-01", periods=40, freq="D")
    ids = [f"s{i}" for i in range(n_series)]
    panel = pd.DataFrame({"series_id": np.repeat(ids, len(stamps)), "timestamp": np.tile(stamps, n_series),
                          "value": rng.normal(size=n_series * len(stamps))})
    rows = []
    for window, cutoff in enumerate((27, 33)):
        part = panel.groupby("series_id").nth(list(range(cutoff + 1, cutoff + 1 + horizon))).reset_index(drop=True)
        rows.append(part.assign(cutoff=stamps[cutoff], window=window))
    frame = pd.concat(rows, ignore_index=True).rename(columns={"value": "actual"})
    centre = frame["actual"] - rng.normal(size=len(frame))  # what y varies around: y = centre + u, u ~ N(0, 1)
    backtests = {}
    for member in range(members):
        mean = centre + rng.normal(size=len(frame))  # y - mean ~ N(0, 2)
        out = frame.assign(mean=mean)
        for level, z in Z.items():
            half = shrink * z * np.sqrt(2.0)
            out[f"lo-{level}"], out[f"hi-{level}"] = mean - half, mean + half
        backtests[f"m{member}"] = out
    return panel, backtests


def _served_median(backtests, calibrations, ensemble=None):
    """What the panel model serves: each member calibrated, their median, then the ensemble's adjustment."""
    keys = ["series_id", "timestamp", "cutoff", "window"]
    parts = [apply_adjustments(f.sort_values(["series_id", "window", "timestamp"]), calibrations[m], {},
                               by=("series_id", "window")) for m, f in backtests.items()]
    columns = ["mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    median = pd.concat(parts).groupby(keys).agg({**{c: "median" for c in columns}, "actual": "first"}).reset_index()
    median = median.sort_values(["series_id", "window", "timestamp"])
    return apply_adjustments(median, ensemble, {}, by=("series_id", "window")) if ensemble else median


def _coverage(frame, level):
    return float(((frame["actual"] >= frame[f"lo-{level}"]) & (frame["actual"] <= frame[f"hi-{level}"])).mean())


def test_ensemble_adjustment_brings_the_median_of_calibrated_members_back_to_nominal():
    """Learnt on one synthetic draw, checked on a fresh one: each calibrated member is nominal, the median of
    their intervals over-covers (about 87 % and 98 %), and the ensemble's own adjustment narrows it to nominal."""
    panel, learn = _synthetic_member_backtests(seed=1)
    calibrations = {m: conformal_adjustments(f, panel, 1, [80, 95]) for m, f in learn.items()}
    ensemble = ensemble_adjustments(learn, calibrations, panel, 1, [80, 95])
    assert ensemble["members"] == ["m0", "m1", "m2"] and len(ensemble["levels"][80]) == 6
    assert all(q < 0 for level in (80, 95) for q in ensemble["levels"][level])  # it narrows

    fresh_panel, fresh = _synthetic_member_backtests(seed=2)
    for level in (80, 95):
        for member, frame in fresh.items():
            calibrated = apply_adjustments(frame.sort_values(["series_id", "window", "timestamp"]),
                                           calibrations[member], {}, by=("series_id", "window"))
            assert abs(_coverage(calibrated, level) - level / 100) < 0.02
        before = _coverage(_served_median(fresh, calibrations), level)
        after = _coverage(_served_median(fresh, calibrations, ensemble), level)
        assert before > level / 100 + 0.025  # the problem: the plain median of calibrated intervals
        assert abs(after - level / 100) < 0.015


def test_ensemble_adjustment_applies_the_members_calibration_first():
    """Without the members' own adjustments (overconfident raw intervals) the ensemble would have to widen;
    with them it narrows: the second stage sees the intervals as they are served."""
    panel, learn = _synthetic_member_backtests(seed=3)
    calibrations = {m: conformal_adjustments(f, panel, 1, [80, 95]) for m, f in learn.items()}
    on_calibrated = ensemble_adjustments(learn, calibrations, panel, 1, [80, 95])
    on_raw = ensemble_adjustments(learn, {m: None for m in learn}, panel, 1, [80, 95])
    assert np.mean(on_calibrated["levels"][80]) < 0 < np.mean(on_raw["levels"][80])
