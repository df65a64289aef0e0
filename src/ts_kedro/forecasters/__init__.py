"""Forecaster interface, the name -> class registry, and construction from configuration."""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from ts_kedro.forecasters.base import Forecaster, ForecasterError, interval_columns

# Lazy dotted paths: importing the package must not import torch or prophet.
FORECASTERS: dict[str, str] = {
    "seasonal_naive": "ts_kedro.forecasters.seasonal_naive.SeasonalNaive",
    "arima": "ts_kedro.forecasters.arima.ArimaForecaster",
    "prophet": "ts_kedro.forecasters.prophet.ProphetForecaster",
    "lstm": "ts_kedro.forecasters.lstm.LSTMForecaster",
    "ets": "ts_kedro.forecasters.ets.ETSForecaster",
    "theta": "ts_kedro.forecasters.theta.ThetaForecaster",
    "intermittent": "ts_kedro.forecasters.intermittent.IntermittentForecaster",
    "lightgbm": "ts_kedro.forecasters.gradient_boosting.LightGBMForecaster",
}


def register_forecaster(name: str, dotted_path: str) -> None:
    """Add a family to the registry (e.g. from a plugin) under ``name``."""
    FORECASTERS[name] = dotted_path


def get_forecaster_class(name_or_path: str) -> type[Forecaster]:
    """Resolve a registered name (``arima``) or a dotted path (``my_pkg.models.MyModel``) to a class."""
    dotted = FORECASTERS.get(name_or_path, name_or_path)
    module_name, _, class_name = dotted.rpartition(".")
    if not module_name:
        raise ForecasterError(
            f"unknown forecaster {name_or_path!r}: use one of {sorted(FORECASTERS)} or a dotted path 'package.module.Class'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ForecasterError(f"cannot import forecaster {dotted!r} (from {name_or_path!r}): {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Forecaster)):
        raise ForecasterError(f"{dotted!r} is not a subclass of ts_kedro.forecasters.Forecaster")
    return cls


def build_forecaster(spec: dict[str, Any], freq: str, season_length: int | None = None, horizon: int | None = None,
                     profile_defaults: dict[str, Any] | None = None) -> Forecaster:
    """Build from a config block ``{class: arima, hyperparameters: {...}, anomalies: impute}``.

    ``anomalies`` (``impute`` by default, or ``keep``) says whether the family fits around data_processing's
    flagged anomalies (``forecasters/anomalies.py``).

    A constructor argument the hyperparameters leave out or set to null is taken from ``profile_defaults``
    (``FrequencyProfile.forecaster_defaults()``: seasonal periods, validation horizon, LSTM lookback, Prophet
    seasonalities, horizon) when the family's constructor has it. ``horizon`` alone is the older form of the
    same: families whose constructor takes ``horizon`` (direct multi-step models such as the LSTM) get it.
    """
    if "class" not in spec:
        raise ForecasterError(f"model spec {spec!r} lacks 'class' (a registered name or a dotted path)")
    cls = get_forecaster_class(spec["class"])
    treatment = spec.get("anomalies", cls.anomaly_treatment)
    allowed = list(cls.anomaly_treatments)
    if treatment not in allowed:
        raise ForecasterError(f"model block for {spec['class']!r}: anomalies is {treatment!r}; choose one of {allowed} "
                              "(impute: fit around data_processing's flagged anomalies, keep: fit on them)")
    hyperparameters = dict(spec.get("hyperparameters") or {})
    defaults = dict(profile_defaults or {})
    if horizon is not None:
        defaults["horizon"] = int(horizon)
    accepted = inspect.signature(cls).parameters
    for key, value in defaults.items():
        if key in accepted and hyperparameters.get(key) is None:
            hyperparameters[key] = value
    try:
        model = cls(freq=freq, season_length=season_length, **hyperparameters)
    except TypeError as exc:
        raise ForecasterError(f"bad hyperparameters for {spec['class']!r}: {exc}; check the model block in the parameters") from exc
    model.anomaly_treatment = treatment
    return model


__all__ = [
    "FORECASTERS",
    "Forecaster",
    "ForecasterError",
    "build_forecaster",
    "get_forecaster_class",
    "interval_columns",
    "register_forecaster",
]
