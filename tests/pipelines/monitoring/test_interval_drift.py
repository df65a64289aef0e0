"""The interval test of the drift verdict on real M4 Hourly series: a champion (seasonal naive, intervals
calibrated on its own backtest) forecasts the real next 48 hours. On the real batch the actuals stay inside its
intervals about as often as their levels say, so nothing is flagged; with the batch raised by one standard
deviation (synthetic, the replay's level shift) the verdict says performance drift, on this test alone."""
from __future__ import annotations

import pytest

from ts_kedro.evaluation.backtest import rolling_origin_backtest
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.pipelines.monitoring.performance import measure_performance_drift
from ts_kedro.pipelines.monitoring.verdict import summarise_drift

from .conftest import BATCH, PANEL, shift_last_batch, until_batch

NO_DATA_DRIFT = {"drift_share": 0.0, "drifted_series": [], "n_series": 12, "feature_drift_share": {}, "panel_level": {}}


@pytest.fixture(scope="module")
def twelve_series(real_m4_panel):
    ids = sorted(real_m4_panel["series_id"].unique())[::2]
    return real_m4_panel[real_m4_panel["series_id"].isin(ids)].reset_index(drop=True)


@pytest.fixture(scope="module")
def champion_forecasts(twelve_series):
    """The champion's saved forecasts of the last batch, made from the history before it."""
    history = until_batch(twelve_series, 1)
    factory = lambda: SeasonalNaive(freq="h", season_length=24)  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, history, BATCH, 4, BATCH, PANEL["levels"], min_train=2 * 168)
    model = factory().fit(history).calibrate_intervals(backtest, history)
    forecasts = model.predict(BATCH, PANEL["levels"])
    backtest_mae = float((backtest["actual"] - backtest["mean"]).abs().groupby(backtest["series_id"]).mean().mean())
    return forecasts.assign(champion_metric="mae", champion_backtest_score=backtest_mae)


def _summary(forecasts, history, monitoring_params):
    performance = measure_performance_drift(forecasts, history, monitoring_params, PANEL)
    return summarise_drift(NO_DATA_DRIFT, performance, monitoring_params), performance


def test_the_real_next_batch_stays_inside_the_calibrated_intervals(champion_forecasts, twelve_series,
                                                                    monitoring_params):
    summary, performance = _summary(champion_forecasts, twelve_series, monitoring_params)
    assert summary["drift"] is False and summary["interval_drift"] is False, summary["reasons"]
    for level, entry in performance["interval_exceedance"].items():
        assert entry["n_series"] == 12 and abs(entry["rate"] - entry["expected"]) < 0.1, (level, entry)


def test_a_level_shift_leaves_the_intervals_and_is_flagged(champion_forecasts, twelve_series, monitoring_params):
    shifted = shift_last_batch(twelve_series, 1.0)
    summary, performance = _summary(champion_forecasts, shifted, monitoring_params)
    assert summary["interval_drift"] is True and summary["drift"] is True
    assert any("interval at" in reason for reason in summary["reasons"]), summary["reasons"]
    # the interval test alone says drift (the error-ratio rule out of reach), and nothing does with it off
    thresholds = {**monitoring_params["thresholds"], "performance_ratio": float("inf")}
    alone = summarise_drift(NO_DATA_DRIFT, performance, {**monitoring_params, "thresholds": thresholds})
    assert alone["drift"] is True and alone["reasons"] == [r for r in summary["reasons"] if "interval at" in r]
    off = summarise_drift(NO_DATA_DRIFT, performance,
                          {**monitoring_params, "thresholds": {**thresholds, "interval_p_value": None}})
    assert off["drift"] is False
