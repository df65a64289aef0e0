"""Tests of rolling-origin backtesting and its scoring on real M4 Hourly series."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ts_kedro.evaluation import metrics
from ts_kedro.evaluation.backtest import BacktestError, evaluate_backtest, rolling_origin_backtest
from ts_kedro.forecasters.base import Forecaster


class LastValueForecaster(Forecaster):
    """Test double: naive forecast (last value) with random-walk normal intervals from one-step changes."""

    name = "last_value"

    @property
    def min_length(self) -> int:
        return 2

    def _fit(self, panel):
        ordered = panel.sort_values(["series_id", "timestamp"])
        grouped = ordered.groupby("series_id")["value"]
        self.last_ = grouped.last()
        self.sigma_ = grouped.apply(lambda v: float(np.std(np.diff(v.to_numpy()))))

    def _predict(self, horizon, levels):
        frames = []
        steps = np.arange(1, horizon + 1)
        for sid in self.fitted_series_ids_:
            mean = np.full(horizon, self.last_[sid])
            frame = pd.DataFrame({"series_id": sid, "timestamp": self.future_index(sid, horizon), "mean": mean})
            for level in levels:
                half = norm.ppf(0.5 + level / 200) * self.sigma_[sid] * np.sqrt(steps)
                frame[f"lo-{level}"], frame[f"hi-{level}"] = mean - half, mean + half
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


@pytest.fixture
def panel(small_panel):
    # real M4 series of different lengths: trim one so per-series cutoffs differ
    drop_last_five = (small_panel["series_id"] == "H1") & (small_panel.groupby("series_id").cumcount(ascending=False) < 5)
    return small_panel[~drop_last_five].assign(is_imputed=False).reset_index(drop=True)


def test_backtest_windows_cutoffs_and_no_leakage(panel):
    horizon, n_windows, step = 12, 3, 7
    backtest, timings = rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), panel, horizon, n_windows, step, [80, 95])
    assert list(backtest.columns) == [
        "series_id", "timestamp", "cutoff", "window", "mean", "lo-80", "hi-80", "lo-95", "hi-95", "actual", "served_by", "fallback"
    ]
    assert (backtest["served_by"] == "last_value").all() and not backtest["fallback"].any()
    assert len(backtest) == panel["series_id"].nunique() * n_windows * horizon
    for sid, series in panel.groupby("series_id"):
        values, stamps = series["value"].to_numpy(), series["timestamp"].to_numpy()
        for window in range(n_windows):
            rows = backtest[(backtest["series_id"] == sid) & (backtest["window"] == window)]
            n_train = len(series) - horizon - (n_windows - 1 - window) * step
            assert (rows["cutoff"] == stamps[n_train - 1]).all()
            np.testing.assert_array_equal(rows["timestamp"], stamps[n_train : n_train + horizon])
            np.testing.assert_array_equal(rows["actual"], values[n_train : n_train + horizon])
            # the model saw exactly the data up to the cutoff: its forecast is the value at the cutoff
            assert (rows["mean"] == values[n_train - 1]).all()
    assert (backtest["lo-95"] <= backtest["lo-80"]).all() and (backtest["hi-80"] <= backtest["hi-95"]).all()
    assert len(timings["fit_seconds"]) == len(timings["predict_seconds"]) == n_windows
    assert timings["fit_seconds_total"] == pytest.approx(sum(timings["fit_seconds"]))
    assert timings["peak_rss_mb"] >= timings["peak_rss_delta_mb"] >= 0 and timings["peak_rss_mb"] > 0


def test_fresh_forecaster_per_window(panel):
    made = []

    def factory():
        made.append(LastValueForecaster(freq="h"))
        return made[-1]

    rolling_origin_backtest(factory, panel, horizon=6, n_windows=4, step=6)
    fitted = [f for f in made if f.is_fitted_]
    assert len(fitted) == 4 and len({id(f) for f in fitted}) == 4


def test_windows_between_refits_carry_the_fitted_model_forward_by_update(panel):
    """refit_every=3 over 6 one-step windows: windows 0 and 3 are fitted, the others updated. Seasonal naive's
    point forecasts have no parameter, so its updated ones equal fresh fits'; a family without update() is fitted
    at every window."""
    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive

    made = []

    def factory():
        made.append(SeasonalNaive(freq="h", season_length=24))
        return made[-1]

    settings = {"horizon": 1, "n_windows": 6, "step": 1, "levels": [80, 95]}
    carried, timings = rolling_origin_backtest(factory, panel, refit_every=3, **settings)
    assert timings["refit_windows"] == [0, 3] and timings["updated_windows"] == [1, 2, 4, 5]
    assert sum(f.is_fitted_ for f in made) == 2
    fresh, fresh_timings = rolling_origin_backtest(lambda: SeasonalNaive(freq="h", season_length=24), panel, **settings)
    assert fresh_timings["refit_windows"] == list(range(6)) and fresh_timings["updated_windows"] == []
    pd.testing.assert_frame_equal(carried.drop(columns=["lo-80", "hi-80", "lo-95", "hi-95"]),
                                  fresh.drop(columns=["lo-80", "hi-80", "lo-95", "hi-95"]))
    # the intervals keep the width of the fit they were carried from (its residual scale is a parameter)
    width = (carried["hi-95"] - carried["lo-95"]).groupby([carried["series_id"], carried["window"]]).first().unstack()
    assert np.allclose(width[[1, 2]], width[[0, 0]]) and np.allclose(width[[4, 5]], width[[3, 3]])
    # a family that implements no update() is fitted at every window whatever refit_every says
    _, timings = rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), panel, refit_every=3, **settings)
    assert timings["refit_windows"] == list(range(6))


def test_a_series_entering_at_an_updated_window_makes_it_a_fitted_one(panel):
    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive

    horizon, n_windows, step, min_train = 1, 6, 1, 48
    # H1 affords only the last four windows: window 2 brings it in, so window 2 is fitted, not updated
    trimmed = pd.concat([g.tail(min_train + horizon + 3) if sid == "H1" else g for sid, g in panel.groupby("series_id")])
    backtest, timings = rolling_origin_backtest(lambda: SeasonalNaive(freq="h", season_length=24), trimmed, horizon,
                                                n_windows, step, [80], min_train=min_train, refit_every=6)
    assert timings["refit_windows"] == [0, 2] and timings["updated_windows"] == [1, 3, 4, 5]
    assert sorted(backtest.loc[backtest["series_id"] == "H1", "window"]) == [2, 3, 4, 5]


def test_an_updated_arima_window_keeps_the_fit_and_moves_the_origin(m4_sample_panel):
    """ARIMA's updated windows forecast from the window's own cutoff with the parameters of the last fit."""
    from ts_kedro.forecasters.arima import ArimaForecaster

    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(sorted(m4_sample_panel["series_id"].unique())[:2])]
    made = []

    def factory():
        made.append(ArimaForecaster(freq="h", season_length=24, seasonal_periods=[24]))
        return made[-1]

    backtest, timings = rolling_origin_backtest(factory, panel.reset_index(drop=True), 2, 4, 2, [80],
                                                min_train=96, refit_every=4)
    assert timings["refit_windows"] == [0] and sum(getattr(f, "is_fitted_", False) for f in made) == 1
    cutoffs = backtest.groupby(["series_id", "window"])["cutoff"].first().unstack()
    assert (cutoffs.diff(axis=1).iloc[:, 1:] == pd.Timedelta(hours=2)).all().all()
    first = backtest.groupby(["series_id", "window"])["timestamp"].min().unstack()
    assert (first.to_numpy() == (cutoffs + pd.Timedelta(hours=1)).to_numpy()).all()
    assert made[-1].n_updated_observations_ == 2 * 3 * 2  # two series, three updated windows of two new points


def test_an_updated_window_refits_only_the_series_the_family_refuses(m4_sample_panel):
    """A 0 (e.g. a closed day) entering one log-scale ARIMA series between two windows: that series is fitted
    afresh on the window's training part, the other is updated, as Day N does; the window stays an updated one."""
    from ts_kedro.forecasters.arima import ArimaForecaster

    ids = sorted(m4_sample_panel["series_id"].unique())[:2]
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)].reset_index(drop=True)
    rows = panel.index[panel["series_id"] == ids[1]]
    panel.loc[rows[-6], "value"] = 0.0  # in the points between the cutoffs of windows 1 and 2 (step 2, horizon 2)
    made = []

    def factory():
        made.append(ArimaForecaster(freq="h", season_length=24, seasonal_periods=[24], max_p=1, max_q=1, n_jobs=1))
        return made[-1]

    backtest, timings = rolling_origin_backtest(factory, panel, 2, 4, 2, [80], min_train=96, refit_every=4)
    assert timings["refit_windows"] == [0] and timings["updated_windows"] == [1, 2, 3]
    assert timings["series_refitted_in_updates"] == {2: [ids[1]]}
    assert len(made) == 1 and not made[0].fitted_[ids[1]].log_scale  # refitted on a history holding the 0
    assert made[0].fitted_[ids[0]].log_scale and made[0].n_updated_observations_ >= 3 * 2
    assert backtest.groupby("series_id")["window"].nunique().to_dict() == {ids[0]: 4, ids[1]: 4}


def test_too_short_series_are_named(panel):
    short = panel[~((panel["series_id"] == "H103") & (panel.groupby("series_id").cumcount() >= 30))]
    with pytest.raises(BacktestError, match=r"1 series too short.*'H103' \(30\).*at least 46"):
        rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), short, horizon=24, n_windows=3, step=10)


def test_a_panel_no_window_fits_gives_an_empty_backtest_and_says_the_horizon_it_affords(panel, caplog):
    """Every series shorter than min_train + horizon: nothing is scored (selection then serves every series
    unvalidated) and the warning says what horizon the longest one affords."""
    head = panel[panel.groupby("series_id").cumcount() < 40]
    with caplog.at_level("WARNING", logger="ts_kedro.evaluation.backtest"):
        forecasts, timings = rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), head, horizon=48,
                                                     n_windows=2, step=48, levels=[80], min_train=30)
    assert forecasts.empty and list(forecasts.columns) == [
        "series_id", "timestamp", "cutoff", "window", "mean", "lo-80", "hi-80", "actual", "served_by", "fallback"]
    assert sorted(timings["unscored_series"]) == sorted(head["series_id"].unique())
    assert "longest series: 40 points; the longest affords a horizon of at most 10" in caplog.text
    per_window, aggregate = evaluate_backtest(forecasts, head, 24, [80])
    assert per_window.empty and aggregate["n_series"] == 0 and np.isnan(aggregate["mase"])


def test_each_series_gets_the_windows_its_length_allows(panel):
    """With min_train, short series keep the recent windows they can afford; too-short ones are listed, not scored."""
    horizon, n_windows, step, min_train = 24, 3, 24, 48
    lengths = panel.groupby("series_id").size()
    keep = {"H103": min_train + horizon + step,  # two windows
            "H1": min_train + horizon,           # only the last window
            "H120": min_train + horizon - 1}     # none
    trimmed = pd.concat([g.tail(keep.get(sid, len(g))) for sid, g in panel.groupby("series_id")])
    backtest, timings = rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), trimmed, horizon, n_windows,
                                                step, [95], min_train=min_train)
    windows = backtest.groupby("series_id")["window"].unique().map(sorted).to_dict()
    assert windows.get("H103") == [1, 2] and windows.get("H1") == [2]
    assert "H120" not in windows and timings["unscored_series"] == ["H120"]
    assert timings["windows_per_series"] == {0: 1, 1: 1, 2: 1}
    assert set(lengths.index) >= set(windows)
    # the last window of every scored series ends at that series' end
    last = backtest[backtest["window"] == 2].groupby("series_id")["timestamp"].max()
    assert (last == trimmed.groupby("series_id")["timestamp"].max()[last.index]).all()


def test_fallback_served_rows_are_marked(panel):
    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive

    class NeedsLongSeries(LastValueForecaster):
        name = "needs_long"
        fallback = "seasonal_naive"

        @property
        def min_length(self):
            return 200

    trimmed = pd.concat([g.tail(150) if sid == "H1" else g for sid, g in panel.groupby("series_id")])
    backtest, _ = rolling_origin_backtest(lambda: NeedsLongSeries(freq="h", season_length=24), trimmed, 24, 2, 24,
                                          [], min_train=48)
    served = backtest.groupby("series_id")["served_by"].unique().map(list).to_dict()
    assert served["H1"] == [SeasonalNaive.name] and served["H103"] == ["needs_long"]


@pytest.mark.parametrize("kwargs", [{"horizon": 0}, {"n_windows": 0}, {"step": 1.5}, {"refit_every": 0}])
def test_bad_settings_raise(panel, kwargs):
    settings = {"horizon": 6, "n_windows": 2, "step": 6, **kwargs}
    with pytest.raises(BacktestError, match=f"backtest {next(iter(kwargs))} must be a positive integer"):
        rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), panel, **settings)


def test_forecaster_on_wrong_grid_is_reported(panel):
    with pytest.raises(BacktestError, match="no actual in the panel"):
        rolling_origin_backtest(lambda: LastValueForecaster(freq="D"), panel, horizon=6, n_windows=1, step=1)


def test_evaluate_matches_metric_functions(panel):
    horizon, n_windows, step, m = 24, 2, 24, 24
    backtest, _ = rolling_origin_backtest(lambda: LastValueForecaster(freq="h"), panel, horizon, n_windows, step, [95])
    per_series, aggregate = evaluate_backtest(backtest, panel, season_length=m, levels=[95])
    assert len(per_series) == panel["series_id"].nunique() * n_windows
    for row in per_series.to_dict("records"):
        row = pd.Series(row)
        series = panel[panel["series_id"] == row.series_id]["value"].to_numpy()
        n_train = len(series) - horizon - (n_windows - 1 - row.window) * step
        insample, y = series[:n_train], series[n_train : n_train + horizon]
        rows = backtest[(backtest["series_id"] == row.series_id) & (backtest["window"] == row.window)]
        yhat, lo, hi = rows["mean"].to_numpy(), rows["lo-95"].to_numpy(), rows["hi-95"].to_numpy()
        assert row.smape == pytest.approx(metrics.smape(y, yhat))
        assert row.mape == pytest.approx(metrics.mape(y, yhat))
        assert row.rmse == pytest.approx(metrics.rmse(y, yhat))
        assert row.mae == pytest.approx(metrics.mae(y, yhat))
        assert row.mase == pytest.approx(metrics.mase(y, yhat, insample, m))
        assert row["coverage-95"] == pytest.approx(metrics.coverage(y, lo, hi))
        assert row["msis-95"] == pytest.approx(metrics.msis(y, lo, hi, insample, m, alpha=0.05))
    assert aggregate["smape"] == pytest.approx(per_series["smape"].mean())
    assert aggregate["msis-95"] == pytest.approx(per_series["msis-95"].mean())
    assert aggregate["n_series"] == 3 and aggregate["n_windows"] == 2 and aggregate["n_undefined"] == {}


def test_seasonal_naive_backtest_equals_m4_snaive_on_test_part(shared_data, m4_sample_panel):
    """Real family, real protocol: one 48-step window over train+test gives M4's sNaive per-series scores."""
    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive

    ids = sorted(m4_sample_panel["series_id"].unique())[:4]
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    train = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)]
    full = pd.concat([train, test[test["series_id"].isin(ids)]]).sort_values(["series_id", "timestamp"])
    backtest, _ = rolling_origin_backtest(lambda: SeasonalNaive(freq="h", season_length=24), full, 48, 1, 48, [95])
    per_series, _ = evaluate_backtest(backtest, full, season_length=24, levels=[95])
    for row in per_series.itertuples(index=False):
        insample = train.loc[train["series_id"] == row.series_id, "value"].to_numpy()
        actual = test.loc[test["series_id"] == row.series_id, "value"].to_numpy(float)
        expected = metrics.seasonal_naive_forecast(insample, 48, 24)
        assert row.smape == pytest.approx(metrics.smape(actual, expected))
        assert row.mase == pytest.approx(metrics.mase(actual, expected, insample, 24))


def test_evaluate_rejects_incomplete_frame(panel):
    with pytest.raises(BacktestError, match=r"lacks columns \['cutoff'"):
        evaluate_backtest(pd.DataFrame({"series_id": ["a"], "timestamp": [0]}), panel, 24)


def test_a_covariate_family_forecasts_each_window_from_the_recorded_covariates(shared_data):
    """A family with ``supports_covariates`` gets, per window, the panel's values after that window's cutoff as
    the plan of its known covariates (what was known in advance); real Stallion series (monthly prices)."""
    from tests.forecasters.plan_echo import PlanEcho

    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    panel = raw.assign(series_id=raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                       timestamp=pd.to_datetime(raw["date"]), value=raw["volume"].astype(float))
    panel = panel[panel["series_id"].isin(sorted(panel["series_id"].unique())[:2])]
    panel = panel[["series_id", "timestamp", "value", "price_actual", "avg_max_temp"]].sort_values(
        ["series_id", "timestamp"]).reset_index(drop=True)
    backtest, _ = rolling_origin_backtest(lambda: PlanEcho(freq="MS", known_covariates=["price_actual"]), panel,
                                          6, 2, 6, [80])
    recorded = backtest.merge(panel, on=["series_id", "timestamp"], validate="many_to_one")
    assert backtest["window"].nunique() == 2 and len(backtest) == 2 * 2 * 6
    assert recorded["mean"].to_numpy() == pytest.approx(recorded["price_actual"].to_numpy())
