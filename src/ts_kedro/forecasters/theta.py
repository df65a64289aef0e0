"""The standard Theta method (Assimakopoulos & Nikolopoulos 2000, as in M3 and M4) per series.

What: Hyndman & Billah (2003) showed that the Theta method with theta = 2 is simple exponential smoothing
with drift: the forecast is the SES forecast of the (seasonally adjusted) series plus half the slope ``b0``
of its OLS linear trend, ``b0/2 * (h - 1 + 1/alpha - (1 - alpha)^n / alpha)``. The two steps (OLS slope,
SES with the first value as initial level) are statsmodels' ``ThetaModel`` (``use_mle=False``); ``theta``
generalises the trend weight to ``1 - 1/theta``.

Seasonal adjustment is the M4 rule, the same as the Naive2 benchmark of ``ts_kedro.evaluation.metrics``
(reused from there, not re-implemented): when the 90% autocorrelation test at lag m (``is_seasonal``, needs
three full seasons) says the series is seasonal and every value is positive, the series is divided by its
classical multiplicative seasonal indices, forecast, and the forecast multiplied back by the indices of the
forecast positions. Otherwise (too short for the test, not seasonal, non-positive values) no adjustment.

Why: Theta won M3 and is a strong, nearly free benchmark on yearly/quarterly/monthly data.

Intervals: ThetaModel's, from the ARIMA(0,1,1)-with-drift form of the model: variance
``sigma2 * (1 + (h - 1) * (1 + (alpha - 1)^2))`` with ``sigma2`` from that ARIMA fitted to the adjusted
series, Gaussian; on seasonally adjusted series the bounds are re-seasonalised with the forecast. (statsmodels
fits that ARIMA to the unadjusted series, so the seasonal swing inflates its intervals on every step, and
adds the width unscaled.) The forecast formulas are evaluated here
from the stored parameters (``b0``, ``alpha``, one-step SES level, ``sigma2``, indices): the fitted state is a
few numbers per series; a test checks them against ``ThetaModelResults``.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ts_kedro.evaluation.metrics import is_seasonal, multiplicative_seasonal_indices
from ts_kedro.forecasters._per_series import forecast_frame, map_series, normal_quantile, split_series
from ts_kedro.forecasters.base import Forecaster, ForecasterError

logger = logging.getLogger(__name__)


@dataclass
class _FittedSeries:
    b0: float  # OLS slope of the adjusted series
    alpha: float  # SES smoothing parameter
    level: float  # SES one-step forecast (last smoothed level)
    sigma2: float  # innovation variance of the ARIMA(0,1,1)+drift form
    n_obs: int
    indices: np.ndarray  # multiplicative seasonal indices by position t mod m; empty: not adjusted
    fit_seconds: float = 0.0

    @property
    def seasonal(self) -> bool:
        return self.indices.size > 0


def _sigma2(adjusted: np.ndarray) -> float:
    """Residual variance of ARIMA(0,1,1) with drift (what ThetaModelResults.sigma2 fits); 0 when undefined."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    if adjusted.size < 3 or np.ptp(np.diff(adjusted)) == 0:
        return float(np.var(np.diff(adjusted))) if adjusted.size > 1 else 0.0
    try:
        sigma2 = float(np.asarray(SARIMAX(adjusted, order=(0, 1, 1), trend="c").fit(disp=False).params)[-1])
    except (ValueError, np.linalg.LinAlgError):
        sigma2 = np.nan
    if not np.isfinite(sigma2) or sigma2 < 0:  # fall back on the spread of the differences
        sigma2 = float(np.var(np.diff(adjusted)))
    return sigma2


def _fit_one_series(series_id: str, values: np.ndarray, settings: dict) -> _FittedSeries:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    started = time.process_time()
    m = settings["season_length"]
    indices = np.empty(0)
    if settings["deseasonalize"] and np.all(values > 0) and is_seasonal(values, m):
        indices = multiplicative_seasonal_indices(values, m)
    adjusted = values / indices[np.arange(values.size) % m] if indices.size else values
    if np.ptp(adjusted) == 0:  # constant: SES and OLS are degenerate, the forecast is the constant
        b0, alpha, level = 0.0, 1.0, float(adjusted[-1])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ThetaModel(adjusted, deseasonalize=False).fit(use_mle=False)
        b0, alpha = float(result.params["b0"]), float(result.params["alpha"])
        level = float(np.asarray(result.forecast_components(1)["ses"])[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma2 = _sigma2(adjusted)
    return _FittedSeries(b0=b0, alpha=alpha, level=level, sigma2=sigma2, n_obs=values.size, indices=indices,
                         fit_seconds=time.process_time() - started)


def _update_one_series(state: _FittedSeries, values: np.ndarray) -> _FittedSeries:
    """SES of the new (seasonally adjusted) values from the stored level with the fitted alpha; b0, sigma2 and the
    seasonal indices are the fitted parameters and stay. Exactly the state a fit with these parameters on the
    longer series reaches (SES starts from the first value either way)."""
    m = state.indices.size
    positions = state.n_obs + np.arange(values.size)
    adjusted = values / state.indices[positions % m] if m else values
    level = state.level
    for value in adjusted:
        level = state.alpha * value + (1.0 - state.alpha) * level
    return _FittedSeries(b0=state.b0, alpha=state.alpha, level=float(level), sigma2=state.sigma2,
                         n_obs=state.n_obs + values.size, indices=state.indices, fit_seconds=state.fit_seconds)


def theta_forecast(state: _FittedSeries, horizon: int, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjusted-scale mean, its standard error, and the seasonal factor of each step (ThetaModel's formulas)."""
    steps = np.arange(horizon, dtype=float)  # h - 1
    drift = steps.copy()
    if state.alpha > 0:
        drift += 1.0 / state.alpha - (1.0 - state.alpha) ** state.n_obs / state.alpha
    weight = (theta - 1.0) / theta
    mean = state.level + weight * state.b0 * drift
    scale = np.sqrt(state.sigma2 * (1.0 + steps * (1.0 + (state.alpha - 1.0) ** 2)))
    m = state.indices.size
    factor = state.indices[(state.n_obs + np.arange(horizon)) % m] if m else np.ones(horizon)
    return mean, scale, factor


class ThetaForecaster(Forecaster):
    """Standard Theta (SES with half the linear drift) on the M4-rule seasonally adjusted series.

    Hyperparameters: ``theta`` (>= 1; 2 is the standard method), ``deseasonalize`` (the M4 test-then-adjust
    rule; false: never adjust), ``n_jobs`` (-1 = all cores).
    """

    name = "theta"
    fallback = "seasonal_naive"

    def __init__(self, freq: str, season_length: int | None = None, theta: float = 2.0,
                 deseasonalize: bool = True, n_jobs: int = -1):
        super().__init__(freq, season_length, theta=theta, deseasonalize=deseasonalize, n_jobs=n_jobs)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not np.isfinite(theta) or theta < 1:
            raise ForecasterError(f"theta: theta must be a number >= 1, got {theta!r}")
        if not isinstance(deseasonalize, bool):
            raise ForecasterError(f"theta: deseasonalize must be true or false, got {deseasonalize!r}")
        if isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs == 0:
            raise ForecasterError(f"theta: n_jobs must be a non-zero integer (-1 = all cores), got {n_jobs!r}")
        self.theta = float(theta)
        self.deseasonalize = deseasonalize
        self.n_jobs = int(n_jobs)

    @property
    def min_length(self) -> int:
        # an OLS slope and an SES level; seasonal adjustment only when the test has its three seasons
        return 3

    def n_parameters(self) -> int:
        # b0, alpha, initial level (the first value, not estimated: not counted), sigma2, m - 1 free indices
        return sum(3 + max(state.indices.size - 1, 0) for state in getattr(self, "fitted_", {}).values())

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        settings = dict(season_length=self.season_length, deseasonalize=self.deseasonalize)
        items = [(sid, values, settings) for sid, values in split_series(panel).items()]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="theta fit")
        self.fitted_: dict[str, _FittedSeries] = {sid: state for (sid, _, _), state in zip(items, results)}
        self.seasonally_adjusted_ = {sid: state.seasonal for sid, state in self.fitted_.items()}
        logger.info("theta: fitted %d series in %.1f s (%d seasonally adjusted)", len(self.fitted_),
                    time.perf_counter() - started, sum(self.seasonally_adjusted_.values()))

    def _update(self, new_observations: pd.DataFrame) -> None:
        for series_id, values in split_series(new_observations).items():
            self.fitted_[series_id] = _update_one_series(self.fitted_[series_id], values)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames = []
        for series_id in self.fitted_series_ids_:
            mean, scale, factor = theta_forecast(self.fitted_[series_id], horizon, self.theta)
            bounds = {level: ((mean - normal_quantile(level) * scale) * factor,
                              (mean + normal_quantile(level) * scale) * factor) for level in levels}
            frames.append(forecast_frame(series_id, self.future_index(series_id, horizon), mean * factor, bounds))
        return pd.concat(frames, ignore_index=True)
