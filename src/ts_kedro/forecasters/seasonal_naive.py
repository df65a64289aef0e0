"""Seasonal naive forecaster: repeats the last season; the reference every other family must beat."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import SeriesForecast, concat_forecasts, normal_quantile, split_series
from ts_kedro.forecasters.base import Forecaster
from ts_kedro.frequency import effective_season_length

logger = logging.getLogger(__name__)


class SeasonalNaive(Forecaster):
    """``y[T+h] = y[T+h-m*(1+(h-1)//m)]`` with Gaussian intervals from the in-sample seasonal-naive residuals.

    The residual scale is ``sigma = sqrt(mean((y[t] - y[t-m])^2))``; step ``h`` lies in complete season
    ``k = (h-1)//m`` and its standard error is ``sigma*sqrt(k+1)`` (Hyndman & Athanasopoulos, FPP3 5.5;
    the same rule as statsforecast's ``SeasonalNaive``).

    The end of every fallback chain: a series shorter than two seasons uses m = 1 (naive, the last value),
    so any series with two observations is forecast. ``season_by_series_`` records the m each series used.
    """

    name = "seasonal_naive"
    per_series_state = True
    fallback = None

    @property
    def min_length(self) -> int:
        return 2

    def n_parameters(self) -> int:
        # one residual scale per series; the forecast itself has no estimated parameter
        return len(getattr(self, "sigma_", {}))

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        self.last_season_: dict[str, np.ndarray] = {}
        self.sigma_: dict[str, float] = {}
        self.season_by_series_: dict[str, int] = {}
        for series_id, values in split_series(panel).items():
            m = effective_season_length(len(values), self.season_length)
            self.season_by_series_[series_id] = m
            residuals = values[m:] - values[:-m]
            self.last_season_[series_id] = values[-m:].copy()
            self.sigma_[series_id] = float(np.sqrt(np.mean(residuals**2)))
        logger.info("seasonal_naive: fitted %d series in %.3f s", len(self.sigma_), time.perf_counter() - started)

    def _update(self, new_observations: pd.DataFrame) -> None:
        # the newest m values become the season to repeat; sigma is the fitted parameter and stays
        for series_id, values in split_series(new_observations).items():
            m = len(self.last_season_[series_id])
            self.last_season_[series_id] = np.r_[self.last_season_[series_id], values][-m:]

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        steps = np.arange(horizon)
        frames = []
        for series_id in self.fitted_series_ids_:
            m = len(self.last_season_[series_id])
            season_growth = np.sqrt(steps // m + 1.0)
            mean = self.last_season_[series_id][steps % m]
            scale = self.sigma_[series_id] * season_growth
            bounds = {lvl: (mean - normal_quantile(lvl) * scale, mean + normal_quantile(lvl) * scale) for lvl in levels}
            frames.append(SeriesForecast(series_id, self.future_index(series_id, horizon), mean, bounds))
        return concat_forecasts(frames)
