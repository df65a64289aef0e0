"""ARIMA on quarterly, monthly and yearly real data: seasonal ARIMA where seasonal, defaults from the profile,
short series served (by ARIMA itself or its fallback, and marked)."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import FORECASTERS, build_forecaster
from ts_kedro.forecasters.arima import ArimaForecaster, _fit_sarima, derived_validation_horizon
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import candidate_periods, derive_profile, season_length_for

LEVELS = [80, 95]


def _single(values, timestamps, series_id: str = "s") -> pd.DataFrame:
    return pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: pd.to_datetime(timestamps),
                         VALUE: np.asarray(values, float)})


@pytest.fixture(scope="module")
def ausbeer(shared_data) -> pd.DataFrame:
    raw = pd.read_csv(shared_data / "fpp_small_series" / "ausbeer.csv")
    return _single(raw["Y"], raw["date"], "ausbeer")


@pytest.fixture(scope="module")
def air_passengers(shared_data) -> pd.DataFrame:
    raw = pd.read_csv(shared_data / "fpp_small_series" / "AirPassengers.csv")
    return _single(raw["#Passengers"], raw["Month"], "air")


@pytest.fixture(scope="module")
def m3_yearly(shared_data) -> pd.DataFrame:
    train = pd.read_csv(shared_data / "m3" / "M3_yearly_train_long.csv", parse_dates=[TIMESTAMP])
    ids = list(dict.fromkeys(train[SERIES_ID]))[:8]
    return train[train[SERIES_ID].isin(ids)].reset_index(drop=True)


def _check_forecast(forecast: pd.DataFrame, n_series: int, horizon: int) -> None:
    assert len(forecast) == n_series * horizon
    values = forecast[["mean", "lo-80", "hi-80", "lo-95", "hi-95"]].to_numpy()
    assert np.isfinite(values).all()
    assert (forecast["lo-95"] <= forecast["lo-80"]).all() and (forecast["lo-80"] <= forecast["mean"]).all()
    assert (forecast["mean"] <= forecast["hi-80"]).all() and (forecast["hi-80"] <= forecast["hi-95"]).all()
    assert ((forecast["hi-95"] - forecast["lo-95"]) > 0).all()


def test_defaults_come_from_the_frequency(ausbeer):
    """No hourly default left: periods and validation window follow the frequency (or the profile)."""
    for freq in ("QS", "MS", "YS", "W-SUN", "D", "h"):
        model = ArimaForecaster(freq=freq)
        assert model.seasonal_periods == [float(p) for p in candidate_periods(freq)]
        assert model.season_length == season_length_for(freq)
        assert model.validation_horizon == derived_validation_horizon(model.season_length)
    assert ArimaForecaster(freq="W-SUN").seasonal_periods == [52.18]  # a real period, for Fourier terms
    profile = derive_profile({"freq": "QS", "horizon": 8}, [len(ausbeer)])
    model = build_forecaster({"class": "arima"}, freq="QS", season_length=profile.season_length,
                             profile_defaults=profile.forecaster_defaults())
    assert model.seasonal_periods == [4.0] and model.validation_horizon == 8 and model.season_length == 4


def test_quarterly_beer_gets_a_seasonal_arima_that_beats_seasonal_naive(ausbeer):
    train, test = ausbeer.iloc[:-8], ausbeer[VALUE].to_numpy()[-8:]
    model = ArimaForecaster(freq="QS", n_jobs=1).fit(train)
    state = model.fitted_["ausbeer"]
    assert state.seasonal["method"] == "sarima" and state.label.startswith("SARIMA")
    assert set(state.seasonal["validation_mae"]) == {"fourier", "sarima"}
    assert state.seasonal["differencing"]["m"] == 4 and state.seasonal["differencing"]["D"] == 1
    forecast = model.predict(8, LEVELS)
    _check_forecast(forecast, 1, 8)
    naive = np.tile(train[VALUE].to_numpy()[-4:], 2)
    assert np.mean(np.abs(forecast["mean"] - test)) < np.mean(np.abs(naive - test))


def test_monthly_air_passengers_seasonal_arima(air_passengers):
    train, test = air_passengers.iloc[:-24], air_passengers[VALUE].to_numpy()[-24:]
    model = ArimaForecaster(freq="MS", n_jobs=1).fit(train)
    state = model.fitted_["air"]
    assert state.seasonal["method"] == "sarima" and state.seasonal["differencing"]["D"] == 1
    assert state.seasonal_order[-1] == 12 or state.seasonal_order == (0, 0, 0, 0)
    forecast = model.predict(24, LEVELS)
    _check_forecast(forecast, 1, 24)
    naive = np.tile(train[VALUE].to_numpy()[-12:], 2)
    assert np.mean(np.abs(forecast["mean"] - test)) < 0.5 * np.mean(np.abs(naive - test))
    # the log-scale interval widens with the horizon
    width = (forecast["hi-95"] - forecast["lo-95"]).to_numpy()
    assert width[-1] > width[0]


def test_sarima_forecasts_equal_statsmodels_with_the_differences_in_the_state(air_passengers):
    """Fitting the ARMA on the differenced series and integrating back gives SARIMAX's own forecasts."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    values = np.log(air_passengers[VALUE].to_numpy(float))
    settings = {"criterion": "aicc", "max_p": 2, "max_q": 2, "max_d": 1, "max_search_fits": 1}
    state = _fit_sarima(values, settings, 12, spec=(1, 1, 0, 0, 1, 1, False))
    assert state.label == "SARIMA(1,1,0)(0,1,1)[12]"
    model = ArimaForecaster(freq="MS", seasonality="sarima", log_transform=False)
    model.fitted_, model.fitted_series_ids_, model.series_ids_ = {"air": state}, ["air"], ["air"]
    model.last_timestamp_ = air_passengers.groupby(SERIES_ID)[TIMESTAMP].max()
    forecast = model._predict(30, [95])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = SARIMAX(values, order=(1, 1, 0), seasonal_order=(0, 1, 1, 12)).filter(state.params)
        expected = reference.get_forecast(30)
    np.testing.assert_allclose(forecast["mean"], expected.predicted_mean, rtol=1e-4)
    lo, hi = np.asarray(expected.conf_int(alpha=0.05)).T
    np.testing.assert_allclose(forecast["lo-95"], lo, rtol=1e-3)
    np.testing.assert_allclose(forecast["hi-95"], hi, rtol=1e-3)


def test_yearly_series_get_a_plain_arima_with_drift_where_differenced(m3_yearly):
    model = ArimaForecaster(freq="YS", n_jobs=1).fit(m3_yearly)
    assert model.season_length == 1 and model.seasonal_periods == []
    states = model.fitted_.values()
    assert all(s.seasonal["method"] == "none" and s.seasonal_order == (0, 0, 0, 0) for s in states)
    assert all("validation_mae" not in s.seasonal for s in states)  # one candidate: nothing to validate
    assert any(s.label.endswith("+drift") for s in states)  # d = 1 with a drift (M3 yearly series trend)
    _check_forecast(model.predict(6, LEVELS), m3_yearly[SERIES_ID].nunique(), 6)


@pytest.fixture
def fallback_available(monkeypatch):
    """ARIMA's fallback is ETS; where that module is not there yet, seasonal naive stands in."""
    if importlib.util.find_spec("ts_kedro.forecasters.ets") is None:
        monkeypatch.setitem(FORECASTERS, "ets", FORECASTERS["seasonal_naive"])


def test_short_series_are_served_and_marked(ausbeer, fallback_available):
    """A 10-point quarterly series is fitted by ARIMA itself (no season: fewer than two seasons are not the
    point, so it gets a plain ARIMA); a 4-point one goes to the fallback; neither fails the panel."""
    long = ausbeer.iloc[-60:].assign(**{SERIES_ID: "long"})
    ten = ausbeer.iloc[:10].assign(**{SERIES_ID: "ten"})
    four = ausbeer.iloc[:4].assign(**{SERIES_ID: "four"})
    model = ArimaForecaster(freq="QS", n_jobs=1).fit(pd.concat([long, ten, four], ignore_index=True))
    assert model.served_by_["long"] == "arima" and model.served_by_["ten"] == "arima"
    assert model.served_by_["four"] != "arima" and "needs at least" in model.fallback_reasons_["four"]
    assert model.fitted_["ten"].seasonal["method"] in ("none", "sarima")
    forecast = model.predict(8, LEVELS)
    _check_forecast(forecast, 3, 8)
    assert list(forecast[SERIES_ID].unique()) == ["long", "ten", "four"]


def test_a_constant_series_does_not_fail(fallback_available):
    stamps = pd.date_range("2000-01-01", periods=20, freq="QS")
    panel = pd.concat([_single(np.full(20, 5.0), stamps, "flat"),
                       _single(np.arange(20.0) + 1, stamps, "line")], ignore_index=True)
    forecast = ArimaForecaster(freq="QS", n_jobs=1).fit(panel).predict(4, LEVELS)
    assert np.isfinite(forecast["mean"]).all()
    np.testing.assert_allclose(forecast.loc[forecast[SERIES_ID] == "flat", "mean"], 5.0, rtol=1e-4)
