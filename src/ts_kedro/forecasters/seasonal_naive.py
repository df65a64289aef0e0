"""Seasonal naive forecaster: repeats the last season; the reference every other family must beat."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import forecast_frame, normal_quantile, split_series
from ts_kedro.forecasters.base import Forecaster

logger = logging.getLogger(__name__)


class SeasonalNaive(Forecaster):
    """``y[T+h] = y[T+h-m*(1+(h-1)//m)]`` with Gaussian intervals from the in-sample seasonal-naive residuals.

    The residual scale is ``sigma = sqrt(mean((y[t] - y[t-m])^2))``; step ``h`` lies in complete season
    ``k = (h-1)//m`` and its standard error is ``sigma*sqrt(k+1)`` (Hyndman & Athanasopoulos, FPP3 5.5;
    the same rule as statsforecast's ``SeasonalNaive``).
    """

    name = "seasonal_naive"

    def n_parameters(self) -> int:
        # one residual scale per series; the forecast itself has no estimated parameter
        return len(getattr(self, "sigma_", {}))

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        m = self.season_length
        self.last_season_: dict[str, np.ndarray] = {}
        self.sigma_: dict[str, float] = {}
        for series_id, values in split_series(panel).items():
            residuals = values[m:] - values[:-m]
            self.last_season_[series_id] = values[-m:].copy()
            self.sigma_[series_id] = float(np.sqrt(np.mean(residuals**2)))
        logger.info("seasonal_naive: fitted %d series in %.3f s", len(self.sigma_), time.perf_counter() - started)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        m = self.season_length
        steps = np.arange(horizon)
        season_growth = np.sqrt(steps // m + 1.0)
        frames = []
        for series_id in self.series_ids_:
            mean = self.last_season_[series_id][steps % m]
            scale = self.sigma_[series_id] * season_growth
            bounds = {lvl: (mean - normal_quantile(lvl) * scale, mean + normal_quantile(lvl) * scale) for lvl in levels}
            frames.append(forecast_frame(series_id, self.future_index(series_id, horizon), mean, bounds))
        return pd.concat(frames, ignore_index=True)
