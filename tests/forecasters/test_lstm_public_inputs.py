"""The LSTM's public input/prediction methods (used by interpretability) agree with its own ``predict``."""
from __future__ import annotations

import numpy as np
import pytest

from ts_kedro.forecasters import ForecasterError
from ts_kedro.forecasters.base import SERIES_ID, VALUE
from ts_kedro.forecasters.lstm import LSTMForecaster

HORIZON = 24


@pytest.fixture(scope="module")
def lstm(small_panel) -> LSTMForecaster:
    """Two tiny members on three real M4 series, 336 hours each (seconds on one core)."""
    return LSTMForecaster(freq="h", season_length=24, horizon=HORIZON, input_size=48, hidden_size=8, max_epochs=2,
                          max_windows_per_series=32, n_models=2, seed=7, device="cpu").fit(small_panel)


def test_window_inputs_and_predict_scaled_reproduce_predict(lstm, small_panel):
    windows = lstm.window_inputs(small_panel)
    assert windows["series_ids"] == lstm.series_ids_
    # 48-hour lookback = 2 daily tokens; calendar: sin/cos of hour of day and weekday (336 hours = two weeks)
    assert lstm.calendar_names_ == ["hour", "weekday"]
    assert windows["tokens"].shape == (3, 2, 24 + 4)
    assert windows["targets"].shape == (3, 0)
    quantiles = lstm.predict_scaled(windows["tokens"], windows["last_season"])
    assert quantiles.shape == (3, HORIZON, len(lstm.quantiles))
    assert (np.diff(quantiles, axis=-1) >= 0).all()  # sorted: no quantile crossing
    median = quantiles[:, :, list(lstm.quantiles).index(0.5)] * windows["scale"][:, None]
    forecast = lstm.predict(HORIZON, [80])
    for i, series_id in enumerate(windows["series_ids"]):
        expected = forecast.loc[forecast[SERIES_ID] == series_id, "mean"].to_numpy()
        np.testing.assert_allclose(median[i], expected, rtol=1e-6)


def test_window_inputs_hold_out_the_last_points_as_scaled_targets(lstm, small_panel):
    windows = lstm.window_inputs(small_panel, held_out=HORIZON)
    for i, (series_id, group) in enumerate(small_panel.groupby(SERIES_ID, sort=False)):
        values = group[VALUE].to_numpy(float)
        lookback = values[-HORIZON - 48:-HORIZON]
        assert windows["series_ids"][i] == series_id
        assert windows["scale"][i] == pytest.approx(np.abs(lookback).mean())
        np.testing.assert_allclose(windows["targets"][i], values[-HORIZON:] / windows["scale"][i], rtol=1e-6)
        np.testing.assert_allclose(windows["last_season"][i], lookback[-24:] / windows["scale"][i], rtol=1e-6)
    # series the model never saw, or too short for lookback + held-out points, are left out
    unknown = small_panel.assign(series_id=small_panel[SERIES_ID] + "_other")
    assert lstm.window_inputs(unknown)["series_ids"] == []
    assert lstm.window_inputs(small_panel.groupby(SERIES_ID).tail(50), held_out=HORIZON)["series_ids"] == []


def test_public_methods_refuse_misuse(lstm, small_panel):
    with pytest.raises(ForecasterError, match="call fit"):
        LSTMForecaster(horizon=HORIZON, input_size=48).window_inputs(small_panel)
    with pytest.raises(ForecasterError, match="held_out"):
        lstm.window_inputs(small_panel, held_out=-1)
    with pytest.raises(ForecasterError, match="predict_scaled expects"):
        lstm.predict_scaled(np.zeros((2, 2, 28)), np.zeros((2, 23)))
    with pytest.raises(ForecasterError, match="horizon"):
        LSTMForecaster(freq="h", input_size=48)  # no horizon default: the panel horizon is passed
