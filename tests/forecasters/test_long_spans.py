"""Series that span more than 292 years: a pandas Timedelta cannot hold their span.

Yearly sunspot numbers since 1700 (real data, shipped with statsmodels: ``statsmodels.datasets.sunspots``) made
the Day-0 run stop in the lightgbm input node with "Overflow in int64 addition": the calendar-feature choice
subtracted the first timestamp from the last. The span is now computed in float seconds and capped
(``calendar.capped_span``); every family that chooses calendar inputs from it must fit such a series.
"""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.forecasters.gradient_boosting import LightGBMForecaster
from ts_kedro.forecasters.lstm import LSTMForecaster
from ts_kedro.pipelines.feature_engineering import calendar
from ts_kedro.pipelines.feature_engineering.nodes import _calendar_spec


def test_the_span_of_three_centuries_is_capped_not_overflowed(sunspots_panel):
    stamps = sunspots_panel.groupby("series_id")["timestamp"].agg(["min", "max"])
    with pytest.raises(OverflowError):  # what the old code did
        (stamps["max"] - stamps["min"]).max()
    assert calendar.capped_span(stamps["min"], stamps["max"]) == calendar.MAX_SPAN
    assert _calendar_spec(sunspots_panel, "YS", {})["features"] == []  # yearly: no calendar feature varies


@pytest.mark.parametrize("family", ["lightgbm", "lstm"])
def test_families_with_calendar_inputs_fit_a_three_century_series(sunspots_panel, family):
    if family == "lightgbm":
        model = LightGBMForecaster(freq="YS", season_length=1, horizon=10, n_estimators=30, min_data_in_leaf=5)
    else:
        model = LSTMForecaster(freq="YS", horizon=10, hidden_size=8, max_epochs=2, n_models=1, device="cpu")
    forecasts = model.fit(sunspots_panel).predict(10, [80])
    assert len(forecasts) == 10 and forecasts["mean"].notna().all()
    assert forecasts["timestamp"].min() == pd.Timestamp("2009-01-01")


def test_prophet_passes_a_three_century_series_to_its_fallback(sunspots_panel):
    from ts_kedro.forecasters.prophet import ProphetForecaster

    model = ProphetForecaster(freq="YS", season_length=1, uncertainty_samples=50, n_jobs=1).fit(sunspots_panel)
    assert model.served_by_ == {"sunspots": model.fallback} and model.fallback != "prophet"
    assert "spans 308 years" in model.fallback_reasons_["sunspots"]
    forecasts = model.predict(10, [80])
    assert len(forecasts) == 10 and forecasts["mean"].notna().all()
    # a two-century stretch of the same series is Prophet's own
    recent = sunspots_panel[sunspots_panel["timestamp"] >= "1800-01-01"]
    assert ProphetForecaster(freq="YS", season_length=1, uncertainty_samples=50, n_jobs=1).fit(
        recent).served_by_ == {"sunspots": "prophet"}


def test_prophet_refuses_an_update_that_outgrows_its_span_and_the_refit_hands_it_to_the_fallback(sunspots_panel):
    """Prophet fits 1700-1944 (245 years) itself; an update through 1960 would reach 260 years, past what its time
    arithmetic holds with room for the horizon. Found by a backtest with ten origins, whose updated windows
    crossed the bound and stopped the run with "Overflow in int64 addition" at the forecast."""
    from ts_kedro.forecasters.base import ForecasterError
    from ts_kedro.forecasters.prophet import ProphetForecaster

    fit_part = sunspots_panel[sunspots_panel["timestamp"] < "1945-01-01"].reset_index(drop=True)
    history = sunspots_panel[sunspots_panel["timestamp"] < "1961-01-01"].reset_index(drop=True)
    new = history[history["timestamp"] >= "1945-01-01"].reset_index(drop=True)
    model = ProphetForecaster(freq="YS", season_length=1, uncertainty_samples=50, n_jobs=1).fit(fit_part)
    assert model.served_by_ == {"sunspots": "prophet"}
    before = model.predict(5, [80])
    with pytest.raises(ForecasterError, match="spans 260 years") as refused:
        model.update(new)
    assert tuple(refused.value.series_ids) == ("sunspots",)
    pd.testing.assert_frame_equal(model.predict(5, [80]), before)  # unchanged on refusal
    with pytest.raises(ForecasterError, match="spans 260 years"):  # a view keeps each series' start
        model.restricted_to(["sunspots"]).update(new)
    # the family's refit of the series goes to the fallback, so the refused update asks for a whole refit ...
    with pytest.raises(ForecasterError):
        model.update_refitting_refused(new, history)
    # ... which forecasts from 1961 through the fallback, where the update would have overflowed
    refit = model.unfitted_copy().fit(history)
    assert refit.served_by_ == {"sunspots": refit.fallback}
    assert refit.predict(5, [80])["timestamp"].min() == pd.Timestamp("1961-01-01")
    # a shorter update stays Prophet's own
    assert model.update(new[new["timestamp"] < "1950-01-01"]).predict(5, [80])["timestamp"].min() == pd.Timestamp(
        "1950-01-01")
