"""Prophet and the LSTM on real quarterly, yearly and monthly panels: built as the pipeline builds them.

Both families get their defaults from the panel's frequency profile (``build_forecaster`` with
``FrequencyProfile.forecaster_defaults()``: LSTM lookback and horizon, Prophet seasonalities). The LSTM is tiny
(hidden 8, 2 epochs, one member) so each test runs in seconds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import ForecasterError, build_forecaster, get_forecaster_class
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import derive_profile

LEVELS = [80, 95]
TINY_LSTM = {"hidden_size": 8, "max_epochs": 2, "n_models": 1, "max_windows_per_series": 64, "device": "cpu"}
SPECS = {
    "prophet": {"class": "prophet", "hyperparameters": {"n_jobs": 1, "uncertainty_samples": 50}},
    "lstm": {"class": "lstm", "hyperparameters": TINY_LSTM},
}


@pytest.fixture(autouse=True)
def _fallback_available(monkeypatch):
    """The families fall back to ETS; where ets.py is not there yet, seasonal naive stands in."""
    try:
        get_forecaster_class("ets")
    except ForecasterError:
        from ts_kedro.forecasters.lstm import LSTMForecaster
        from ts_kedro.forecasters.prophet import ProphetForecaster

        for cls in (LSTMForecaster, ProphetForecaster):
            monkeypatch.setattr(cls, "fallback", "seasonal_naive")


def _fpp(shared_data, name: str, value: str, stamp: str, series_id: str) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "fpp_small_series" / f"{name}.csv")
    return pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: pd.to_datetime(frame[stamp]),
                         VALUE: frame[value].astype(float)})


@pytest.fixture(scope="module")
def quarterly(request):
    """ausbeer (1956-2008) and woolyrnq (1965-1994): two real quarterly series, quarter starts."""
    shared = request.getfixturevalue("shared_data")
    panel = pd.concat([_fpp(shared, "ausbeer", "Y", "date", "ausbeer"),
                       _fpp(shared, "woolyrnq", "Y", "date", "woolyrnq")], ignore_index=True)
    return panel, "QS", 8


@pytest.fixture(scope="module")
def monthly(request):
    shared = request.getfixturevalue("shared_data")
    return _fpp(shared, "AirPassengers", "#Passengers", "Month", "AirPassengers"), "MS", 18


@pytest.fixture(scope="module")
def yearly(request):
    """The eight longest M3 yearly series (41 years of training data each)."""
    shared = request.getfixturevalue("shared_data")
    train = pd.read_csv(shared / "m3" / "M3_yearly_train_long.csv", parse_dates=[TIMESTAMP])
    longest = train.groupby(SERIES_ID).size().sort_values(kind="stable").index[-8:]
    panel = train[train[SERIES_ID].isin(longest)].reset_index(drop=True)
    panel[VALUE] = panel[VALUE].astype(float)
    return panel, "YS", 6


def _build(family: str, panel: pd.DataFrame, freq: str, horizon: int, **extra):
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": LEVELS},
                             panel.groupby(SERIES_ID).size())
    spec = {"class": family, "hyperparameters": {**SPECS[family]["hyperparameters"], **extra}}
    return build_forecaster(spec, freq=freq, season_length=profile.season_length,
                            profile_defaults=profile.forecaster_defaults()), profile


def _check_forecast(forecast: pd.DataFrame, panel: pd.DataFrame, freq: str, horizon: int) -> None:
    assert forecast.groupby(SERIES_ID).size().to_dict() == {sid: horizon for sid in panel[SERIES_ID].unique()}
    last = panel.groupby(SERIES_ID)[TIMESTAMP].max()
    for series_id, group in forecast.groupby(SERIES_ID):
        expected = pd.date_range(last[series_id], periods=horizon + 1, freq=freq)[1:]
        assert (pd.DatetimeIndex(group[TIMESTAMP]) == expected).all()
    values = forecast[["mean", "lo-80", "hi-80", "lo-95", "hi-95"]].to_numpy()
    assert np.isfinite(values).all()
    assert (forecast["lo-95"] <= forecast["lo-80"]).all() and (forecast["lo-80"] <= forecast["mean"]).all()
    assert (forecast["mean"] <= forecast["hi-80"]).all() and (forecast["hi-80"] <= forecast["hi-95"]).all()
    assert (forecast["hi-95"] - forecast["lo-95"]).mean() > 0
    ratio = forecast.groupby(SERIES_ID)["mean"].mean() / panel.groupby(SERIES_ID)[VALUE].mean()
    assert ratio.between(0.2, 5).all(), ratio.to_dict()


@pytest.mark.parametrize("family", ["prophet", "lstm"])
@pytest.mark.parametrize("grid", ["quarterly", "monthly", "yearly"])
def test_family_fits_and_forecasts_every_frequency_with_the_panel_horizon(family, grid, request):
    panel, freq, horizon = request.getfixturevalue(grid)
    model, profile = _build(family, panel, freq, horizon)
    forecast = model.fit(panel).predict(horizon, LEVELS)
    _check_forecast(forecast, panel, freq, horizon)
    assert all(served == family for served in model.served_by_.values()), model.fallback_reasons_
    if family == "lstm":
        assert model.horizon == horizon and model.input_size == profile.lstm_input_size
        assert model.input_size % model.season_length == 0


def test_lstm_with_season_length_one_reads_one_value_per_token_and_no_calendar(yearly):
    panel, freq, horizon = yearly
    model, profile = _build("lstm", panel, freq, horizon)
    assert model.season_length == profile.season_length == 1
    model.fit(panel)
    assert model.calendar_names_ == []  # no calendar term varies from one year to the next
    windows = model.window_inputs(panel, held_out=horizon)
    assert windows["tokens"].shape == (8, model.input_size, 1)
    assert windows["last_season"].shape == (8, 1)
    # the baseline the network corrects is the naive forecast (the last value), scaled
    np.testing.assert_allclose(windows["last_season"][:, 0], windows["tokens"][:, -1, 0])


@pytest.mark.parametrize("grid, names", [("quarterly", ["quarter"]), ("monthly", ["month"])])
def test_lstm_calendar_inputs_follow_the_frequency(grid, names, request):
    panel, freq, horizon = request.getfixturevalue(grid)
    model, _ = _build("lstm", panel, freq, horizon)
    model.fit(panel)
    assert model.calendar_names_ == names
    tokens = model.window_inputs(panel)["tokens"]
    assert tokens.shape[-1] == model.season_length + 2 * len(names)


def test_lstm_derives_its_lookback_when_constructed_directly(quarterly):
    from ts_kedro.forecasters.lstm import LSTMForecaster

    panel, freq, horizon = quarterly
    model = LSTMForecaster(freq=freq, horizon=horizon, **TINY_LSTM)
    assert model.input_size is None and model.season_length == 4
    model.fit(panel)
    expected = derive_profile({"freq": freq, "horizon": horizon, "season_length": 4},
                              panel.groupby(SERIES_ID).size().to_numpy()).lstm_input_size
    assert model.input_size == expected and model.min_length == expected + horizon
    with pytest.raises(ForecasterError, match="horizon"):
        LSTMForecaster(freq=freq)


def test_lstm_without_validation_windows_trains_a_fixed_number_of_epochs(quarterly):
    """One short series: a lookback and one horizon but no room for a validation window."""
    panel, freq, horizon = quarterly
    short = panel[panel[SERIES_ID] == "ausbeer"].tail(12 + horizon + 3).reset_index(drop=True)
    model, _ = _build("lstm", short, freq, horizon, input_size=12, max_epochs=20, epochs_without_validation=3)
    forecast = model.fit(short).predict(horizon, LEVELS)
    _check_forecast(forecast, short, freq, horizon)
    assert model.served_by_ == {"ausbeer": "lstm"}
    assert [len(h) for h in model.history_] == [3] and model.best_epochs_ == [3]
    assert np.isnan(model.history_[0][-1]["valid_loss"])


def test_short_series_go_to_the_fallback_not_an_error(yearly):
    panel, freq, horizon = yearly
    ids = list(panel[SERIES_ID].unique())
    # two points: below Prophet's minimum (three points for a trend) and far below the LSTM's lookback + horizon
    short = pd.concat([panel[panel[SERIES_ID] == ids[0]].tail(2), panel[panel[SERIES_ID] != ids[0]]],
                      ignore_index=True)
    for family in ("lstm", "prophet"):
        model, _ = _build(family, short, freq, horizon)
        assert model.fallback == "ets" or model.fallback == "seasonal_naive"
        forecast = model.fit(short).predict(horizon, LEVELS)
        _check_forecast(forecast, short, freq, horizon)
        assert model.served_by_[ids[0]] != family and model.served_by_[ids[0]] == \
            model.fallback_model_.served_by_[ids[0]]
        assert all(model.served_by_[sid] == family for sid in ids[1:])
        assert "needs at least" in model.fallback_reasons_[ids[0]]


def test_prophet_fourier_orders_follow_the_grid():
    from ts_kedro.forecasters.prophet import _seasonality_plan

    # Nyquist cap floor(steps per cycle / 2) under Prophet's defaults (daily 4, weekly 3, yearly 10)
    assert _seasonality_plan("QS", None) == {"yearly": 2}
    assert _seasonality_plan("MS", None) == {"yearly": 6}
    assert _seasonality_plan("YS", None) == {}
    assert _seasonality_plan("h", None) == {"daily": 4, "weekly": 3, "yearly": 10}
    assert _seasonality_plan("D", None) == {"weekly": 3, "yearly": 10}
    # the profile's flags switch seasonalities off
    assert _seasonality_plan("h", {"daily": True, "weekly": True, "yearly": False}) == {"daily": 4, "weekly": 3}


def test_prophet_uses_the_profile_seasonalities_and_refuses_unknown_ones(monthly):
    panel, freq, horizon = monthly
    model, profile = _build("prophet", panel, freq, horizon)
    assert model.seasonalities == profile.prophet_seasonalities == {"daily": False, "weekly": False, "yearly": True}
    model.fit(panel)
    assert model.seasonalities_["AirPassengers"] == ["yearly"]
    from ts_kedro.forecasters.prophet import ProphetForecaster

    with pytest.raises(ForecasterError, match="seasonalities"):
        ProphetForecaster(freq=freq, seasonalities={"monthly": True})


def test_prophet_auto_mode_is_additive_for_series_with_non_positive_values(quarterly):
    """A multiplicative seasonality cannot scale a level that crosses zero: auto picks additive there."""
    import json

    panel, freq, horizon = quarterly
    one = panel[panel[SERIES_ID] == "ausbeer"].reset_index(drop=True)
    centred = one.assign(series_id="centred", value=one[VALUE] - one[VALUE].mean())
    both = pd.concat([one, centred], ignore_index=True)
    model, _ = _build("prophet", both, freq, horizon)
    forecast = model.fit(both).predict(horizon, LEVELS)
    assert np.isfinite(forecast[["mean", "lo-95", "hi-95"]].to_numpy()).all()
    modes = {sid: json.loads(model.models_[sid])["seasonality_mode"] for sid in ("ausbeer", "centred")}
    assert modes == {"ausbeer": "multiplicative", "centred": "additive"}


def test_lstm_precision_is_checked_and_reduced_precision_is_refused_on_cpu(monthly):
    """``precision`` (mixed precision) is a CUDA setting: an unknown value fails at construction, fp16/bf16 on a
    CPU run fails before any training with the parameter named (torch's CPU LSTM has no such kernel here)."""
    panel, freq, horizon = monthly
    lstm_class = get_forecaster_class("lstm")
    with pytest.raises(ForecasterError, match="precision must be one of"):
        lstm_class(freq=freq, horizon=horizon, precision="half")
    for precision in ("fp16", "bf16"):
        model = lstm_class(freq=freq, horizon=horizon, **{**TINY_LSTM, "precision": precision})
        with pytest.raises(ForecasterError, match=f"precision='{precision}' needs a CUDA device.*precision: fp32"):
            model.fit(panel)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="mixed precision runs on CUDA only (no CUDA device here)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_lstm_mixed_precision_on_cuda_keeps_fp32_weights_and_serves_on_cpu(monthly, precision):
    """On a GPU: a mixed-precision fit keeps fp32 weights, forecasts like the fp32 fit, and predicts on CPU."""
    import torch

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    panel, freq, horizon = monthly
    settings = {**TINY_LSTM, "max_epochs": 20, "device": "auto"}
    reference = build_forecaster({"class": "lstm", "hyperparameters": settings}, freq=freq, horizon=horizon).fit(panel)
    mixed = build_forecaster({"class": "lstm", "hyperparameters": {**settings, "precision": precision}},
                             freq=freq, horizon=horizon).fit(panel)
    assert all(v.dtype == np.float32 for state in mixed.state_dicts_ for v in state.values())
    ours, theirs = mixed.predict(horizon, LEVELS), reference.predict(horizon, LEVELS)
    assert np.isfinite(ours["mean"]).all()
    scale = float(panel[VALUE].abs().mean())
    assert float((ours["mean"] - theirs["mean"]).abs().mean()) / scale < 0.05
    mixed.device = "cpu"  # served on a CPU machine: fp32 there, same forecasts up to kernel rounding
    on_cpu = mixed.predict(horizon, LEVELS)
    assert np.allclose(on_cpu["mean"], ours["mean"], rtol=1e-2)
