"""Conformal calibration of intervals from backtest residuals, on real M4 Hourly series."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation.backtest import rolling_origin_backtest
from ts_kedro.evaluation.conformal import (
    _conformal_quantile,
    apply_adjustments,
    check_calibration_params,
    conformal_adjustments,
    ensemble_adjustments,
    excludes_anomalies,
    per_series_calibration,
    own_quantile_is_close,
    per_series_min_windows,
    series_scales,
    served_fit_levels,
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


def test_flagged_actuals_are_left_out_of_the_calibration(small_panel):
    """A backtest point whose actual data_processing flagged as anomalous is no sample of the forecast error: with
    SYNTHETIC outages (a day of zeros) in one backtest window, flagged as data_processing flags them, the learnt
    adjustments equal those of the backtest without those points; kept in, they widen every interval."""
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 4, 24, [80, 95], min_train=48)
    outage = backtest["window"] == backtest["window"].max()
    backtest.loc[outage, "actual"] = 0.0
    flags = backtest.loc[outage, ["series_id", "timestamp"]].assign(is_anomaly=True)
    panel = small_panel.merge(flags, on=["series_id", "timestamp"], how="left")
    panel["is_anomaly"] = panel["is_anomaly"].astype("boolean").fillna(False).astype(bool)
    excluded = conformal_adjustments(backtest, panel, 24, [80, 95])
    clean = conformal_adjustments(backtest[~outage], panel, 24, [80, 95])
    kept = conformal_adjustments(backtest, panel, 24, [80, 95], exclude_anomalies=False)
    for level in (80, 95):
        np.testing.assert_allclose(excluded["levels"][level], clean["levels"][level])
        assert np.mean(kept["levels"][level]) > np.mean(excluded["levels"][level]) + 0.1
    assert excluded["n_scores"][80][0] == clean["n_scores"][80][0] < kept["n_scores"][80][0]
    # without flags in the panel nothing is left out
    no_flags = conformal_adjustments(backtest, small_panel, 24, [80, 95])
    np.testing.assert_allclose(no_flags["levels"][80], kept["levels"][80])
    assert excludes_anomalies({}) is True and excludes_anomalies({"calibration_excludes_anomalies": False}) is False
    with pytest.raises(ValueError, match="backtest.calibration_excludes_anomalies must be true or false"):
        check_calibration_params({"calibration_excludes_anomalies": "yes"})


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


def _with_fit_levels(frame: pd.DataFrame, factors: dict[int, float]) -> pd.DataFrame:
    """SYNTHETIC: each window's (each fit's) intervals widened about the mean by its own factor, the errors kept:
    a model whose raw width level varies from fit to fit (the LSTM's on M4 Hourly: 3.34 and 2.62 series scales)."""
    out = frame.copy()
    factor = out["window"].map(factors).to_numpy(float) if "window" in out else float(factors[-1])
    for level in (80, 95):
        out[f"lo-{level}"] = out["mean"] - (out["mean"] - out[f"lo-{level}"]) * factor
        out[f"hi-{level}"] = out["mean"] + (out[f"hi-{level}"] - out["mean"]) * factor
    return out


def test_fit_level_calibration_transfers_to_a_fit_of_another_width_level():
    """Backtest fits 0.6x and 1.6x as wide as they should be, a served fit 2x: plain CQR pools the two windows
    and over-covers the wide served fit; cqr_fit_level rescales every fit to the windows' mean level first and
    covers it at nominal. ``auto`` finds that on the newest window (learnt on the older one)."""
    panel, learn = _synthetic_member_backtests(seed=4, n_series=600, members=1, shrink=1.0)
    backtest = _with_fit_levels(learn["m0"], {0: 0.6, 1: 1.6})
    auto = conformal_adjustments(backtest, panel, 1, [80, 95])
    assert auto["method"] == "cqr_fit_level"
    assert auto["held_out_msis"]["cqr_fit_level"] < auto["held_out_msis"]["cqr"]
    assert set(auto["fit_level"]["windows"][80]) == {0, 1}
    plain = conformal_adjustments(backtest, panel, 1, [80, 95], method="cqr")
    assert plain["method"] == "cqr_scaled_pooled" and "fit_level" not in plain

    fresh_panel, fresh = _synthetic_member_backtests(seed=5, n_series=600, members=1, shrink=1.0)
    served = _with_fit_levels(fresh["m0"][fresh["m0"]["window"] == 1].drop(columns=["window", "cutoff"]), {-1: 2.0})
    scales = series_scales(fresh_panel, 1)
    auto["fit_level"]["served"] = served_fit_levels(served, scales, [80, 95])
    for level in (80, 95):
        assert abs(_coverage(apply_adjustments(served, auto, scales), level) - level / 100) < 0.02
        assert _coverage(apply_adjustments(served, plain, scales), level) >= level / 100 + 0.04
    # after a JSON round trip (string keys) the same bounds
    import json
    again = apply_adjustments(served, json.loads(json.dumps(auto)), scales)
    np.testing.assert_allclose(again["hi-95"], apply_adjustments(served, auto, scales)["hi-95"])
    # and the backtest rows are rescaled by their own window's level
    on_backtest = apply_adjustments(backtest.sort_values(["series_id", "window", "timestamp"]), auto, {},
                                    by=("series_id", "window"))
    assert abs(_coverage(on_backtest, 80) - 0.80) < 0.02


def test_fit_level_is_kept_only_where_it_helps_and_methods_are_checked():
    """Fits of one width level (SYNTHETIC, as a stable family's): the newest window does not favour the rescaling
    enough, or it changes nothing; an unknown method names the parameter."""
    panel, learn = _synthetic_member_backtests(seed=6, n_series=600, members=1, shrink=1.0)
    stable = conformal_adjustments(learn["m0"], panel, 1, [80, 95])
    if stable["method"] == "cqr_fit_level":  # equal levels: the two rules give the same intervals
        ratios = [stable["fit_level"]["windows"][80][w] / stable["fit_level"]["reference"][80] for w in (0, 1)]
        assert all(abs(r - 1) < 0.02 for r in ratios)
    assert abs(stable["held_out_msis"]["cqr_fit_level"] / stable["held_out_msis"]["cqr"] - 1) < 0.02
    with pytest.raises(ValueError, match="backtest.calibration_method"):
        conformal_adjustments(learn["m0"], panel, 1, [80], method="quantile")
    # a fit of zero-width intervals (a constant forecaster) is left as it is, never divided by its zero level
    flat = learn["m0"].copy()
    first = flat["window"] == 0
    for level in (80, 95):
        flat.loc[first, f"lo-{level}"] = flat.loc[first, f"hi-{level}"] = flat.loc[first, "mean"]
    forced = conformal_adjustments(flat, panel, 1, [80, 95], method="cqr_fit_level")
    assert forced["fit_level"]["windows"][80][0] == 0.0
    adjusted = apply_adjustments(flat.sort_values(["series_id", "window", "timestamp"]), forced, {},
                                 by=("series_id", "window"))
    assert np.isfinite(adjusted[["lo-80", "hi-80", "lo-95", "hi-95"]].to_numpy()).all()


def test_a_fitted_family_records_its_own_level_at_its_first_forecast(small_panel):
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 3, 24, [80, 95], min_train=48)
    model = factory().fit(small_panel).calibrate_intervals(backtest, small_panel, method="cqr_fit_level")
    assert "served" not in model.interval_calibration_["fit_level"]
    first = model.predict(24, [80, 95])
    served = model.interval_calibration_["fit_level"]["served"]
    assert set(served) == {80, 95} and all(g > 0 for g in served.values())
    pd.testing.assert_frame_equal(model.predict(24, [80, 95]), first)  # recorded once, same forecasts
    refit = factory().fit(small_panel.groupby("series_id").head(600)).inherit_calibration(model)
    assert "served" not in refit.interval_calibration_["fit_level"]  # the refit records its own level
    assert "served" in model.interval_calibration_["fit_level"]       # the source keeps its own
    refit.predict(24, [80])
    assert set(refit.interval_calibration_["fit_level"]["served"]) == {80, 95}


def test_fit_model_records_the_fit_level_before_the_forecast_it_times(small_panel, monkeypatch):
    """``fit_model``'s ``predict_seconds`` (a secondary selection criterion) times one forecast like every later
    one: the fit's level, an extra raw forecast, is recorded before it rather than inside it."""
    from ts_kedro.pipelines.training.nodes import fit_model

    seen = []
    raw_predict = SeasonalNaive._predict

    def recording_predict(self, horizon, levels):
        seen.append("served" in self.interval_calibration_["fit_level"])
        return raw_predict(self, horizon, levels)

    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 3, 24, [80, 95], min_train=48)
    monkeypatch.setattr(SeasonalNaive, "_predict", recording_predict)
    panel_params = {"freq": "h", "horizon": 24, "season_length": 24, "levels": [80, 95]}
    model, forecasts, stats = fit_model(small_panel, {"class": "seasonal_naive"}, panel_params,
                                        {"calibration_method": "cqr_fit_level"}, backtest)
    assert seen == [False, True]  # the level's raw forecast, then the timed one with the level already recorded
    assert set(model.interval_calibration_["fit_level"]["served"]) == {80, 95}
    assert {"lo-80", "hi-95"} <= set(forecasts.columns) and stats["predict_seconds"] >= 0


def test_series_with_enough_windows_get_their_own_shift_where_the_pool_misses_them(small_panel):
    """Pooled over series, the rule covers the pool; a series it over- or under-covers stays so. With at least
    1 / (1 - L) windows of its own (80 %: 5), a series also gets its own shift: each then covers its own backtest
    at the level. 95 % needs 20 windows, so it stays pooled here."""
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 6, 24, [80, 95], min_train=48)
    pooled = conformal_adjustments(backtest, small_panel, 24, [80, 95], method="cqr", per_series=False)
    own = conformal_adjustments(backtest, small_panel, 24, [80, 95], method="cqr")
    assert "series_shift" not in pooled
    assert set(own["series_shift"]) == {80} and set(own["series_shift"][80]) == set(small_panel["series_id"])
    assert own["levels"] == pooled["levels"]  # the shift comes on top of the same pooled rule

    def coverage(adjustments):
        adjusted = apply_adjustments(backtest, adjustments, {}, by=("series_id", "window"))
        inside = (adjusted["actual"] >= adjusted["lo-80"]) & (adjusted["actual"] <= adjusted["hi-80"])
        return inside.groupby(adjusted["series_id"]).mean()

    # 18 scores per step: the pooled rank covers 0.86-0.94 of each series' points, none near the level itself
    before, after = coverage(pooled), coverage(own)
    assert (before - 0.8).min() > 0.05
    # each its own finite-sample rank, ceil(145 * 0.8) of 144 points (ties at the rank count inside): at the
    # level and never further from it than the pooled rule left it
    assert (after >= 0.8).all() and (after <= before).all() and (after < 0.81).sum() >= 2
    # a shift moves that series' q alone
    forecast = pd.DataFrame({"series_id": ["a", "b"], "timestamp": pd.Timestamp("2020"), "mean": [10.0, 10.0],
                             "lo-80": [8.0, 8.0], "hi-80": [12.0, 12.0]})
    out = apply_adjustments(forecast, {"levels": {80: [0.25]}, "series_shift": {"80": {"a": -0.5}}}, {})
    np.testing.assert_allclose(out["lo-80"], [9.0, 7.0])
    np.testing.assert_allclose(out["hi-80"], [11.0, 13.0])


def test_a_series_short_of_windows_stays_pooled_and_the_switch_is_checked(small_panel):
    assert [per_series_min_windows(level) for level in (80, 90, 95)] == [5, 10, 20]
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, small_panel, 24, 6, 24, [80], min_train=48)
    short = sorted(small_panel["series_id"].unique())[0]
    backtest = backtest[(backtest["series_id"] != short) | (backtest["window"] >= 2)]  # 4 windows left to it
    shifts = conformal_adjustments(backtest, small_panel, 24, [80])["series_shift"][80]
    assert short not in shifts and len(shifts) == 2
    assert per_series_calibration({}) is True and per_series_calibration({"per_series_calibration": False}) is False
    with pytest.raises(ValueError, match="backtest.per_series_calibration must be true or false"):
        check_calibration_params({"per_series_calibration": "sometimes"})


def test_a_one_step_series_keeps_the_pooled_rule_where_its_own_rank_would_over_cover(small_panel):
    """One-step windows: a series' own quantile of n scores is its ceil((n + 1) L)-th, covering k / (n + 1) in
    expectation. 7 windows at 80 % take the largest score (0.875 by construction): pooled. 9 take the 8th of 9
    (0.80) and 24 the 20th (0.80): their own shift."""
    assert [n for n in range(5, 16) if own_quantile_is_close(n, 80)] == [9, 10, 14, 15]
    assert [n for n in range(15, 41) if own_quantile_is_close(n, 95)] == [*range(19, 33), 39, 40]
    assert own_quantile_is_close(24, 80) and own_quantile_is_close(24, 95) and not own_quantile_is_close(7, 80)
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    for windows, shifted in ((7, False), (9, True)):
        backtest, _ = rolling_origin_backtest(factory, small_panel, 1, windows, 1, [80], min_train=48,
                                              refit_every=windows)
        adjustments = conformal_adjustments(backtest, small_panel, 24, [80], method="cqr")
        assert ("series_shift" in adjustments) is shifted, windows
        if shifted:
            assert set(adjustments["series_shift"][80]) == set(small_panel["series_id"])
