"""Reporting when a family fitted no series of the panel: every series went to its fallback.

Found on real data: yearly sunspots since 1700 (statsmodels' offline copy) is longer than Prophet's time
arithmetic holds, so Prophet passed the only series to its fallback, and the Day-0 run then stopped in
``prophet_components_node`` (the model had no ``models_``). The same held for ARIMA, the LSTM and lightgbm on a
panel none of its series suits. Each importance table now comes back empty with its columns, and the plot says
why, instead of stopping a run whose forecasts are all there.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
from matplotlib.figure import Figure

from ts_kedro.forecasters.arima import ArimaForecaster
from ts_kedro.forecasters.gradient_boosting import LightGBMForecaster
from ts_kedro.forecasters.lstm import LSTMForecaster
from ts_kedro.forecasters.prophet import ProphetForecaster
from ts_kedro.pipelines.reporting import lightgbm_importance as nodes_lightgbm
from ts_kedro.pipelines.reporting import nodes


def _text(figure: Figure) -> str:
    from matplotlib.text import Text

    return " ".join(t.get_text() for t in figure.findobj(Text))


@pytest.fixture(scope="module")
def constant() -> pd.DataFrame:
    # synthetic edge case: two constant yearly series, which every family with a fallback passes down its chain
    stamps = pd.date_range("1990-01-01", periods=30, freq="YS")
    return pd.concat([pd.DataFrame({"series_id": sid, "timestamp": stamps, "value": level})
                      for sid, level in (("a", 3.0), ("b", 7.0))], ignore_index=True)


@pytest.fixture()
def reporting(project_root) -> dict:
    from kedro.config import OmegaConfigLoader

    from ts_kedro import settings

    loader = OmegaConfigLoader(conf_source=str(project_root / "conf"), **settings.CONFIG_LOADER_ARGS)
    return json.loads(json.dumps(loader["parameters"]["reporting"]))


def test_prophet_with_every_series_at_its_fallback_reports_empty(sunspots_panel, reporting):
    model = ProphetForecaster(freq="YS", season_length=1, uncertainty_samples=50, n_jobs=1).fit(sunspots_panel)
    assert not model.fitted_series_ids_
    shares = nodes.prophet_components(model, reporting)
    assert shares.empty and {"series_id", "component", "share"} <= set(shares.columns)
    figure = nodes.plot_prophet_components(shares)
    assert isinstance(figure, Figure) and "fallback" in _text(figure)


@pytest.mark.parametrize("family", ["arima", "lstm", "lightgbm"])
def test_other_families_with_every_series_at_the_fallback_report_empty(constant, reporting, family):
    if family == "arima":
        model = ArimaForecaster(freq="YS", season_length=1).fit(constant)
        table = nodes.arima_coefficient_table(model, reporting)
        figure = nodes.plot_arima_coefficients(table, reporting)
    elif family == "lstm":
        model = LSTMForecaster(freq="YS", horizon=4, hidden_size=8, max_epochs=2, n_models=1, device="cpu").fit(constant)
        table = nodes.lstm_importance(model, constant, reporting)
        figure = nodes.plot_lstm_importance(table)
    else:
        model = LightGBMForecaster(freq="YS", season_length=1, horizon=4, n_estimators=10).fit(constant)
        table = nodes_lightgbm.lightgbm_importance(model, {}, reporting)
        figure = nodes_lightgbm.plot_lightgbm_importance(table, reporting)
    assert not model.fitted_series_ids_ and set(model.served_by_) == {"a", "b"}
    assert table.empty and len(table.columns) > 3
    assert isinstance(figure, Figure) and "fallback" in _text(figure)
