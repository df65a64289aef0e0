"""Contract tests run over every registered forecaster family plus a custom model plugged in by dotted path."""
from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ts_kedro.forecasters import FORECASTERS, Forecaster, ForecasterError, build_forecaster, register_forecaster
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE

HORIZON = 24
LEVELS = [80, 95]
FREQ, SEASON = "h", 24


class SeasonalMeanForecaster(Forecaster):
    """A tiny custom model (test-only): the mean of each hour of day, Gaussian intervals from its spread."""

    name = "seasonal_mean"

    def n_parameters(self) -> int:
        return 2 * self.season_length * len(getattr(self, "profiles_", {}))

    def _fit(self, panel: pd.DataFrame) -> None:
        self.profiles_ = {}
        for series_id, group in panel.groupby(SERIES_ID, sort=False):
            values = group[VALUE].to_numpy(float)
            values = values[len(values) % self.season_length:].reshape(-1, self.season_length)
            self.profiles_[series_id] = (values.mean(axis=0), values.std(axis=0))

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames = []
        for series_id in self.fitted_series_ids_:
            mean, std = (np.resize(a, horizon) for a in self.profiles_[series_id])
            frame = pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: self.future_index(series_id, horizon), "mean": mean})
            for level in levels:
                z = norm.ppf(0.5 + level / 200)
                frame[f"lo-{level}"], frame[f"hi-{level}"] = mean - z * std, mean + z * std
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


# Small hyperparameters so that the whole contract runs in seconds on the 3-series, 336-point panel.
SPECS = {
    "seasonal_naive": {"class": "seasonal_naive"},
    "arima": {"class": "arima", "hyperparameters": {"n_jobs": 1, "max_p": 1, "max_q": 1}},
    "prophet": {"class": "prophet", "hyperparameters": {"n_jobs": 1, "uncertainty_samples": 50}},
    "lstm": {"class": "lstm", "hyperparameters": {
        "horizon": HORIZON, "input_size": 48, "hidden_size": 8, "max_epochs": 3, "max_windows_per_series": 64,
        "n_models": 2, "device": "cpu"}},
    "ets": {"class": "ets", "hyperparameters": {"n_jobs": 1}},
    "theta": {"class": "theta", "hyperparameters": {"n_jobs": 1}},
    "intermittent": {"class": "intermittent", "hyperparameters": {"n_jobs": 1}},
    "lightgbm": {"class": "lightgbm", "hyperparameters": {"horizon": HORIZON, "n_estimators": 40, "n_jobs": 1}},
    "custom": {"class": f"{__name__}.SeasonalMeanForecaster"},
}


def test_every_registered_family_is_under_contract():
    assert set(FORECASTERS) <= set(SPECS), "a registered family has no contract test spec"


@pytest.fixture(scope="module")
def fitted_models(small_panel) -> dict[str, Forecaster]:
    """Every family fitted once on the small panel (shared by the tests below to keep the module fast)."""
    return {family: build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(small_panel)
            for family, spec in SPECS.items()}


@pytest.fixture(scope="module", params=sorted(SPECS))
def fitted(request, fitted_models):
    """(family, spec, fitted forecaster, its forecast) for every family."""
    model = fitted_models[request.param]
    return request.param, SPECS[request.param], model, model.predict(HORIZON, LEVELS)


def test_forecast_shape_grid_and_intervals(fitted, small_panel):
    family, _, _, forecast = fitted
    assert list(forecast.columns) == [SERIES_ID, TIMESTAMP, "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert forecast.groupby(SERIES_ID).size().to_dict() == {sid: HORIZON for sid in small_panel[SERIES_ID].unique()}
    last = small_panel.groupby(SERIES_ID)[TIMESTAMP].max()
    for series_id, group in forecast.groupby(SERIES_ID):
        expected = pd.date_range(last[series_id] + pd.Timedelta(hours=1), periods=HORIZON, freq=FREQ)
        assert (pd.DatetimeIndex(group[TIMESTAMP]) == expected).all(), f"{family}: grid broken for {series_id}"
    values = forecast[["mean", "lo-80", "hi-80", "lo-95", "hi-95"]].to_numpy()
    assert np.isfinite(values).all(), f"{family}: non-finite forecast"
    assert (forecast["lo-95"] <= forecast["lo-80"]).all() and (forecast["lo-80"] <= forecast["mean"]).all()
    assert (forecast["mean"] <= forecast["hi-80"]).all() and (forecast["hi-80"] <= forecast["hi-95"]).all()
    assert (forecast["hi-95"] - forecast["lo-95"]).mean() > 0, f"{family}: degenerate intervals"
    # the forecast lives on the scale of the data (a wrong unscaling would be off by orders of magnitude)
    scale = small_panel.groupby(SERIES_ID)[VALUE].mean()
    ratio = forecast.groupby(SERIES_ID)["mean"].mean() / scale
    assert ratio.between(0.2, 5).all(), f"{family}: forecast level far from the data: {ratio.to_dict()}"


def test_fit_then_predict_equals_forecast_and_is_reproducible(fitted, small_panel):
    # for the LSTM this is the "same seed twice on CPU gives identical forecasts" check
    family, spec, _, forecast = fitted
    again = build_forecaster(spec, freq=FREQ, season_length=SEASON).forecast(small_panel, HORIZON, LEVELS)
    if family == "lstm":  # seeded and deterministic on CPU: bit-identical, not merely close
        pd.testing.assert_frame_equal(again, forecast, check_exact=True)
    else:
        pd.testing.assert_frame_equal(again, forecast, check_exact=False, rtol=1e-6)


def test_pickle_round_trip_gives_identical_forecasts(fitted):
    family, _, model, forecast = fitted
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(restored.predict(HORIZON, LEVELS), forecast)
    assert restored.n_parameters() == model.n_parameters() and model.n_parameters() >= 0


def test_misuse_raises_clear_errors(fitted, small_panel):
    family, spec, model, _ = fitted
    fresh = build_forecaster(spec, freq=FREQ, season_length=SEASON)
    with pytest.raises(ForecasterError, match="fit"):
        fresh.predict(HORIZON, LEVELS)
    for bad in (0, -3, 2.5):
        with pytest.raises(ForecasterError, match="horizon"):
            model.predict(bad, LEVELS)
    with pytest.raises(ForecasterError, match="levels"):
        model.predict(HORIZON, [100])


def test_series_too_short_are_served_by_the_fallback_and_marked(fitted, small_panel):
    """A series shorter than a family's minimum never fails the fit: the fallback chain serves it."""
    family, spec, _, _ = fitted
    fresh = build_forecaster(spec, freq=FREQ, season_length=SEASON)
    ids = list(small_panel[SERIES_ID].unique())
    short_id = ids[0]
    shortened = pd.concat([
        small_panel[small_panel[SERIES_ID] == short_id].tail(max(fresh.min_length - 1, 2)),
        small_panel[small_panel[SERIES_ID] != short_id],
    ], ignore_index=True)
    if fresh.min_length <= 2:  # the end of every chain: takes any series with two observations
        assert fresh.fallback is None
        with pytest.raises(ForecasterError, match="at least|observations"):
            fresh.fit(small_panel.groupby(SERIES_ID, group_keys=False).tail(1))
        return
    fresh.fit(shortened)
    assert fresh.served_by_[short_id] != family and fresh.served_by_[short_id] == fresh.fallback_model_.served_by_[short_id]
    assert "needs at least" in fresh.fallback_reasons_[short_id]
    assert all(fresh.served_by_[sid] == fresh.name for sid in ids[1:])
    forecast = fresh.predict(HORIZON, LEVELS)
    assert list(forecast[SERIES_ID].unique()) == ids and len(forecast) == HORIZON * len(ids)
    assert forecast["mean"].notna().all()
    # a pickled model keeps its fallback
    restored = pickle.loads(pickle.dumps(fresh))
    pd.testing.assert_frame_equal(restored.predict(HORIZON, LEVELS), forecast)


def test_custom_model_plugs_in_by_registered_name(monkeypatch, small_panel):
    monkeypatch.setitem(FORECASTERS, "seasonal_mean", f"{__name__}.SeasonalMeanForecaster")
    register_forecaster("seasonal_mean", f"{__name__}.SeasonalMeanForecaster")
    model = build_forecaster({"class": "seasonal_mean"}, freq=FREQ, season_length=SEASON)
    assert isinstance(model, SeasonalMeanForecaster)
    assert len(model.forecast(small_panel, HORIZON, LEVELS)) == HORIZON * small_panel[SERIES_ID].nunique()


def test_saved_models_load_and_predict_in_another_process(fitted_models, tmp_path):
    """What Kedro's PickleDataset does between a training run and a later inference run."""
    from kedro_datasets.pickle import PickleDataset

    expected = {}
    for family in sorted(FORECASTERS):
        model = fitted_models[family]
        PickleDataset(filepath=str(tmp_path / f"{family}.pkl")).save(model)
        expected[family] = model.predict(HORIZON, LEVELS)
    script = textwrap.dedent(f"""
        import json, sys
        from kedro_datasets.pickle import PickleDataset
        out = {{}}
        for family in {sorted(FORECASTERS)!r}:
            model = PickleDataset(filepath=sys.argv[1] + "/" + family + ".pkl").load()
            out[family] = model.predict({HORIZON}, {LEVELS!r}).drop(columns="timestamp").to_dict("list")
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for family, frame in expected.items():
        other = pd.DataFrame(loaded[family])
        pd.testing.assert_frame_equal(other, frame.drop(columns=TIMESTAMP), check_exact=False, rtol=1e-9,
                                      obj=family)


# -- family-specific behaviour -------------------------------------------------------------------------------
def test_seasonal_naive_repeats_last_season_with_sqrt_growth(small_panel):
    model = build_forecaster({"class": "seasonal_naive"}, freq=FREQ, season_length=SEASON).fit(small_panel)
    forecast = model.predict(72, [95])
    for series_id, group in forecast.groupby(SERIES_ID):
        last_day = small_panel[small_panel[SERIES_ID] == series_id][VALUE].to_numpy()[-SEASON:]
        np.testing.assert_allclose(group["mean"].to_numpy(), np.tile(last_day, 3))
        half_width = (group["hi-95"] - group["mean"]).to_numpy()
        np.testing.assert_allclose(half_width[[0, 24, 48]] / half_width[0], np.sqrt([1, 2, 3]))
        assert np.ptp(half_width[:24]) < 1e-9  # constant within one season


def test_arima_falls_back_to_simpler_orders_with_a_warning(monkeypatch, small_panel, caplog):
    from ts_kedro.forecasters import arima

    original = arima._fit_arima

    def only_white_noise_fits(adjusted, order, trend):
        if order[0] + order[2] > 0:
            raise np.linalg.LinAlgError("synthetic failure injected by the test")
        return original(adjusted, order, trend)

    monkeypatch.setattr(arima, "_fit_arima", only_white_noise_fits)
    with caplog.at_level(logging.WARNING, logger=arima.__name__):
        model = arima.ArimaForecaster(freq=FREQ, n_jobs=1, max_p=1, max_q=1).fit(small_panel)
    assert all(state.order[0] == 0 and state.order[2] == 0 for state in model.fitted_.values())
    assert "candidate orders failed" in caplog.text

    def only_random_walk_fits(adjusted, order, trend):
        if order != (0, 1, 0):
            raise np.linalg.LinAlgError("synthetic failure injected by the test")
        return original(adjusted, order, trend)

    monkeypatch.setattr(arima, "_fit_arima", only_random_walk_fits)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=arima.__name__):
        # max_d=0: the whole grid is ARIMA(p,0,q), so every candidate fails and only the fallback is left
        model = arima.ArimaForecaster(freq=FREQ, n_jobs=1, max_p=1, max_q=1, max_d=0).fit(small_panel)
    assert {state.order for state in model.fitted_.values()} == {(0, 1, 0)}
    assert "falling back to ARIMA(0,1,0)" in caplog.text
    assert len(model.predict(HORIZON, LEVELS)) == HORIZON * 3


def test_lstm_refuses_horizons_and_levels_it_was_not_trained_for(small_panel):
    from ts_kedro.forecasters.lstm import LSTMForecaster

    hyper = {**SPECS["lstm"]["hyperparameters"], "max_epochs": 1, "n_models": 1, "interval_levels": [80, 95]}
    model = LSTMForecaster(freq=FREQ, season_length=SEASON, **hyper).fit(small_panel)
    with pytest.raises(ForecasterError, match="horizon"):
        model.predict(HORIZON + 1, LEVELS)
    with pytest.raises(ForecasterError, match="interval_levels"):
        model.predict(HORIZON, [98])
    # a level between trained ones is interpolated between their quantiles
    forecast = model.predict(HORIZON, [80, 90, 95])
    assert (forecast["lo-95"] <= forecast["lo-90"]).all() and (forecast["lo-90"] <= forecast["lo-80"]).all()
    assert (forecast["hi-80"] <= forecast["hi-90"]).all() and (forecast["hi-90"] <= forecast["hi-95"]).all()
    with pytest.raises(ForecasterError, match="multiple of season_length"):
        LSTMForecaster(freq=FREQ, season_length=SEASON, input_size=50)


# -- accuracy sanity on real data ------------------------------------------------------------------------------
def _smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(200 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast))))


def test_arima_and_lstm_beat_the_series_mean_on_real_m4_series(m4_sample_panel, shared_data):
    """Four real M4 Hourly series: fit on the full training part, score the 48 official test points."""
    ids = sorted(m4_sample_panel[SERIES_ID].unique())[:4]
    train = m4_sample_panel[m4_sample_panel[SERIES_ID].isin(ids)].reset_index(drop=True)
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=[TIMESTAMP])
    test = test[test[SERIES_ID].isin(ids)].sort_values([SERIES_ID, TIMESTAMP])
    specs = {
        "arima": {"class": "arima", "hyperparameters": {"n_jobs": 1, "max_p": 1, "max_q": 1}},
        "lstm": {"class": "lstm", "hyperparameters": {"max_epochs": 12, "n_models": 2, "device": "cpu"}},
    }
    series_mean = train.groupby(SERIES_ID)[VALUE].mean()
    baseline = _smape(test[VALUE].to_numpy(float), test[SERIES_ID].map(series_mean).to_numpy())
    for family, spec in specs.items():
        forecast = build_forecaster(spec, freq=FREQ, season_length=SEASON, horizon=48).forecast(train, 48, [95])
        merged = test.merge(forecast, on=[SERIES_ID, TIMESTAMP], validate="one_to_one")
        assert len(merged) == 48 * len(ids), f"{family}: forecast timestamps do not meet the official test grid"
        score = _smape(merged[VALUE].to_numpy(float), merged["mean"].to_numpy())
        assert score < 0.8 * baseline, f"{family}: sMAPE {score:.2f} not clearly below series mean {baseline:.2f}"
