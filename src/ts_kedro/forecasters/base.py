"""The one small interface every model family implements (fit on a long panel, predict with intervals)."""
from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np
import pandas as pd

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"


class ForecasterError(ValueError):
    """Misuse of a forecaster: predict before fit, a series too short, a bad horizon or level."""


class Forecaster(abc.ABC):
    """Base class: public ``fit``/``predict`` validate, subclasses implement ``_fit``/``_predict``.

    The constructor only stores hyperparameters; fitted state lives in trailing-underscore attributes.
    The panel is long: ``series_id, timestamp, value`` on a regular ``freq`` grid without NaNs
    (data_processing guarantees that). ``predict`` returns ``series_id, timestamp, mean`` plus
    ``lo-L``/``hi-L`` for every requested level L (percent, e.g. 80, 95).
    """

    name: str = "base"
    supports_intervals: bool = True

    def __init__(self, freq: str = "h", season_length: int = 24, **hyperparameters):
        self.freq = freq
        self.season_length = int(season_length)
        self.hyperparameters = hyperparameters
        self.is_fitted_ = False

    # -- properties subclasses may override -------------------------------------------------
    @property
    def min_length(self) -> int:
        """Minimum number of observations per series that this model can fit."""
        return 2 * self.season_length

    def n_parameters(self) -> int:
        """Number of fitted parameters (model complexity used in model selection)."""
        return 0

    # -- public API ---------------------------------------------------------------------------
    def fit(self, panel: pd.DataFrame) -> "Forecaster":
        _check_panel(panel)
        lengths = panel.groupby(SERIES_ID, sort=False)[VALUE].size()
        too_short = lengths[lengths < self.min_length]
        if not too_short.empty:
            first = too_short.index[0]
            raise ForecasterError(
                f"{self.name}: series {first!r} has {int(too_short.iloc[0])} observations but needs at least "
                f"{self.min_length} ({len(too_short)} series too short); lengthen the history or quarantine them"
            )
        self.series_ids_ = list(lengths.index)
        self.last_timestamp_ = panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        self._fit(panel)
        self.is_fitted_ = True
        return self

    def predict(self, horizon: int, levels: Sequence[int] = ()) -> pd.DataFrame:
        if not getattr(self, "is_fitted_", False):
            raise ForecasterError(f"{self.name}: call fit() before predict()")
        if int(horizon) != horizon or horizon < 1:
            raise ForecasterError(f"{self.name}: horizon must be a positive integer, got {horizon!r}")
        levels = [int(level) for level in levels]
        bad = [level for level in levels if not 0 < level < 100]
        if bad:
            raise ForecasterError(f"{self.name}: levels must lie strictly between 0 and 100, got {bad}")
        forecast = self._predict(int(horizon), sorted(levels))
        return _finalise_forecast(forecast, levels)

    def forecast(self, panel: pd.DataFrame, horizon: int, levels: Sequence[int] = ()) -> pd.DataFrame:
        return self.fit(panel).predict(horizon, levels)

    # -- helpers for subclasses ----------------------------------------------------------------
    def future_index(self, series_id, horizon: int) -> pd.DatetimeIndex:
        start = self.last_timestamp_[series_id]
        return pd.date_range(start, periods=horizon + 1, freq=self.freq)[1:]

    @abc.abstractmethod
    def _fit(self, panel: pd.DataFrame) -> None: ...

    @abc.abstractmethod
    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame: ...

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}(freq={self.freq!r}, season_length={self.season_length}{', ' if params else ''}{params})"


def interval_columns(levels: Sequence[int]) -> list[str]:
    return [f"{side}-{level}" for level in levels for side in ("lo", "hi")]


def _check_panel(panel: pd.DataFrame) -> None:
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in panel.columns]
    if missing:
        raise ForecasterError(f"panel lacks columns {missing}; expected long format series_id, timestamp, value")
    if panel.empty:
        raise ForecasterError("panel is empty: nothing to fit")
    if panel[VALUE].isna().any():
        raise ForecasterError("panel has NaN values: impute them in data_processing before fitting")


def _finalise_forecast(forecast: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
    """Order columns and enforce lo <= mean <= hi (quantile crossing is repaired by sorting)."""
    forecast = forecast.reset_index(drop=True)
    for level in levels:
        lo, hi = forecast[f"lo-{level}"].to_numpy(float), forecast[f"hi-{level}"].to_numpy(float)
        mean = forecast["mean"].to_numpy(float)
        forecast[f"lo-{level}"] = np.minimum(lo, mean)
        forecast[f"hi-{level}"] = np.maximum(hi, mean)
    # nested levels: a wider level must contain the narrower one
    for narrow, wide in zip(sorted(levels), sorted(levels)[1:]):
        forecast[f"lo-{wide}"] = np.minimum(forecast[f"lo-{wide}"], forecast[f"lo-{narrow}"])
        forecast[f"hi-{wide}"] = np.maximum(forecast[f"hi-{wide}"], forecast[f"hi-{narrow}"])
    return forecast[[SERIES_ID, TIMESTAMP, "mean", *interval_columns(levels)]]
