"""A test-only family with ``supports_covariates``: it forecasts the planned values of its first known covariate,
so a test sees exactly which plan reached a forecast (backtest windows, Day-N inference)."""
from __future__ import annotations

import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, Forecaster


class PlanEcho(Forecaster):
    """Mean = the plan of ``known_covariates[0]``; intervals collapse onto it."""

    name = "plan_echo"
    supports_covariates = True
    fallback = None

    def __init__(self, freq: str, season_length: int | None = None, known_covariates: list[str] | None = None):
        super().__init__(freq, season_length, known_covariates=known_covariates)
        self.known_covariates = list(known_covariates or [])

    @property
    def min_length(self) -> int:
        return 1

    def _fit(self, panel: pd.DataFrame) -> None:
        pass

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames = []
        for series_id in self.fitted_series_ids_:
            index = self.future_index(series_id, horizon)
            mean = self.future_covariate_values(series_id, index)[:, 0]
            frame = pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: index, "mean": mean})
            for level in levels:
                frame[f"lo-{level}"] = frame[f"hi-{level}"] = mean
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
