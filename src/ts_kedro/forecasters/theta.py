"""Theta models per series: the standard Theta method and the optimised / dynamic Theta models (AutoTheta).

What: ``method: auto`` (default) fits the four Theta models of Fiorucci, Pellegrini, Louzada, Petropoulos &
Koehler (2016, "Models for optimising the theta method and their relationship to state space models", IJF 32)
to each (seasonally adjusted) series and keeps the one with the lowest AICc of its one-step errors,
``n log(MSE) + 2k + 2k(k+1)/(n-k-1)`` (k = 2: l_0 and alpha; 3 where theta is estimated too; a series too
short for any AICc gets STM):

- STM, the standard theta model (theta = 2), and OTM, the optimised theta model (theta estimated);
- DSTM and DOTM, their dynamic versions, whose trend line ``A_t + B_t t`` is re-estimated at every step from
  the observations so far (the OLS intercept and slope of ``y_1..y_t`` on time), instead of once on the
  whole sample.

statsforecast's ``AutoTheta`` keeps the lowest MSE instead; OTM and DOTM nest STM and DSTM, so that rule nearly
always keeps an estimated theta, which follows noise in the slope. Measured on all of M3 (theta family alone,
``benchmarks/family_check_ets_theta.py``; docs/benchmarks.md): the AICc rule gives sMAPE / MASE 16.33 / 2.608
(yearly), 9.187 / 1.107 (quarterly), 14.31 / 0.852 (monthly), against 16.61 / 2.619, 9.305 / 1.109,
14.94 / 0.856 with the MSE rule and 16.82 / 2.780, 9.187 / 1.115, 13.94 / 0.868 for the standard method.

The state space form (equations (4)-(8) of the paper): with ``w = 1 - 1/theta``,
``mu_t = l_{t-1} + w ((1-alpha)^(t-1) A_{t-1} + (1 - (1-alpha)^t) / alpha * B_{t-1})`` is the one-step
forecast, ``l_t = alpha y_t + (1-alpha) l_{t-1}`` the SES level. The static models use the whole sample's
``A_n, B_n`` in every step. Parameters: the initial level ``l_0``, ``alpha`` in [0.1, 0.99] and, for OTM /
DOTM, ``theta >= 1``, by Nelder-Mead on the one-step MSE (on the series scaled by its mean absolute value, so
one tolerance fits every scale). The level recursion is a linear filter (``scipy.signal.lfilter``) and the
running trend of the dynamic models depends on the data only, so one evaluation of the loss is a few
vector operations: all four models cost 0.02-0.03 CPU s per series on M3 (docs/benchmarks.md). The h-step
forecast iterates the recursions with each step's forecast in place of the observation (the dynamic trend
keeps updating), as forecTheta does. Intervals: Gaussian with the SES state-space variance ``sigma2 (1 + (h-1) alpha^2)``,
``sigma2`` the one-step MSE (backtest calibration, ``backtest.calibrate_intervals``, corrects what this
ignores of the trend's uncertainty).

Why: Theta won M3; its optimised and dynamic forms beat the standard method on M3 and M4 (Fiorucci et al.
2016; statsforecast's AutoTheta benchmarks), most on yearly and other trending data, where a fixed half-slope
trails the series. ``method`` may also name one model (STM, OTM, DSTM, DOTM) or ``standard``:

The standard Theta method (``method: standard``; Assimakopoulos & Nikolopoulos 2000, as in M3 and M4):
Hyndman & Billah (2003) showed that the Theta method with theta = 2 is simple exponential smoothing
with drift: the forecast is the SES forecast of the (seasonally adjusted) series plus half the slope ``b0``
of its OLS linear trend, ``b0/2 * (h - 1 + 1/alpha - (1 - alpha)^n / alpha)``. The two steps (OLS slope,
SES with the first value as initial level) are statsmodels' ``ThetaModel`` (``use_mle=False``); ``theta``
generalises the trend weight to ``1 - 1/theta``. Its intervals: ThetaModel's, from the ARIMA(0,1,1)-with-drift
form of the model: variance ``sigma2 * (1 + (h - 1) * (1 + (alpha - 1)^2))`` with ``sigma2`` from that ARIMA
fitted to the adjusted series, Gaussian. (statsmodels fits that ARIMA to the unadjusted series, so the
seasonal swing inflates its intervals on every step, and adds the width unscaled.) The forecast formulas are
evaluated here from the stored parameters (``b0``, ``alpha``, one-step SES level, ``sigma2``, indices); a test
checks them against ``ThetaModelResults``.

Seasonal adjustment (every method) is the M4 rule, the same as the Naive2 benchmark of
``ts_kedro.evaluation.metrics`` (reused from there, not re-implemented): when the 90% autocorrelation test at
lag m (``is_seasonal``, needs three full seasons) says the series is seasonal and every value is positive, the
series is divided by its classical multiplicative seasonal indices, forecast, and the forecast (and its
bounds) multiplied back by the indices of the forecast positions. Otherwise (too short for the test, not
seasonal, non-positive values) no adjustment.

Update (Day N): the fitted parameters stay; the new (adjusted) observations run through the same recursions
(level; for the dynamic models also the running trend), which is exactly the state a fit with these
parameters on the longer series reaches.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ts_kedro.evaluation.metrics import is_seasonal, multiplicative_seasonal_indices
from ts_kedro.forecasters._per_series import SeriesForecast, concat_forecasts, map_series, normal_quantile, split_series
from ts_kedro.forecasters.base import Forecaster, ForecasterError

logger = logging.getLogger(__name__)

MODELS = ("STM", "OTM", "DSTM", "DOTM")
DYNAMIC = ("DSTM", "DOTM")  # the trend line is re-estimated at every step
ESTIMATED_THETA = ("OTM", "DOTM")  # theta is a parameter (STM / DSTM: fixed, the ``theta`` hyperparameter)
METHODS = ("auto", "standard", *MODELS)
ALPHA_BOUNDS = (0.1, 0.99)  # statsforecast's and forecTheta's bounds on the SES smoothing parameter
W_MAX = 1.0 - 1e-6  # w = 1 - 1/theta < 1 (theta finite)


@dataclass
class _FittedSeries:
    """One series' fitted state. Every field added after the standard method's has a default, so a model
    pickled before the optimised / dynamic models existed (a registered champion) unpickles as ``standard``."""

    alpha: float  # SES smoothing parameter
    level: float  # standard: SES one-step forecast; models: the last level l_n
    sigma2: float  # innovation variance (models: the in-sample one-step MSE, which ``auto`` compares by AICc)
    n_obs: int
    indices: np.ndarray  # multiplicative seasonal indices by position t mod m; empty: not adjusted
    b0: float = 0.0  # standard: OLS slope of the adjusted series
    fit_seconds: float = 0.0
    method: str = "standard"  # "standard" or one of MODELS
    theta: float = 2.0  # models: fixed (STM, DSTM) or estimated (OTM, DOTM); standard: the forecaster's
    intercept: float = 0.0  # models: A_n (static: whole sample's; dynamic: the running one at n)
    slope: float = 0.0  # models: B_n
    mean_y: float = 0.0  # models: mean of the adjusted observations so far (the dynamic trend's running mean)

    @property
    def seasonal(self) -> bool:
        return self.indices.size > 0

    @property
    def dynamic(self) -> bool:
        return self.method in DYNAMIC

    def moving_state(self) -> dict:
        """The recursions' state at n, for ``_step`` to move on (update, forecast)."""
        return {"level": self.level, "intercept": self.intercept, "slope": self.slope, "mean_y": self.mean_y,
                "n": self.n_obs}


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


def running_trend(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, OLS intercept ``A_t`` and slope ``B_t`` of ``y_1..y_t`` on ``1..t``, for every t (``B_1 = 0``).

    ``B_t = 6 / (t^2 - 1) * (2/t * sum_s s y_s - (t + 1) mean_t)`` and ``A_t = mean_t - (t + 1)/2 * B_t``:
    the closed form of the least-squares line, so the dynamic models' trend costs one cumulative sum.
    """
    t = np.arange(1, y.size + 1, dtype=float)
    mean = np.cumsum(y) / t
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = 6.0 / (t**2 - 1.0) * (2.0 / t * np.cumsum(t * y) - (t + 1.0) * mean)
    slope[0] = 0.0
    return mean, mean - (t + 1.0) / 2.0 * slope, slope


def _one_step(y: np.ndarray, level0: float, alpha: float, w: float, dynamic: bool,
              trend: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """In-sample one-step forecasts ``mu_1..mu_n`` and levels ``l_1..l_n`` of one Theta model."""
    from scipy.signal import lfilter

    n = y.size
    decay = 1.0 - alpha
    levels, _ = lfilter([alpha], [1.0, -decay], y, zi=[decay * level0])
    previous = np.r_[level0, levels[:-1]]
    t = np.arange(1, n + 1, dtype=float)
    _, intercepts, slopes = trend
    if dynamic:  # A_{t-1}, B_{t-1}; nothing is known of the trend before the first observation
        a, b = np.r_[0.0, intercepts[:-1]], np.r_[0.0, slopes[:-1]]
    else:
        a, b = intercepts[-1], slopes[-1]
    mu = previous + w * (decay ** (t - 1.0) * a + (1.0 - decay**t) / alpha * b)
    return mu, levels


def _fit_model(y: np.ndarray, model: str, theta: float, trend) -> dict:
    """Least-squares one-step fit of one Theta model (``theta`` is fixed for STM / DSTM)."""
    from scipy.optimize import minimize

    dynamic, optimise_theta = model in DYNAMIC, model in ESTIMATED_THETA
    w_fixed = 1.0 - 1.0 / theta

    def unpack(x):
        return x[0], x[1], (x[2] if optimise_theta else w_fixed)

    def loss(x):
        level0, alpha, w = unpack(x)
        mu, _ = _one_step(y, level0, alpha, w, dynamic, trend)
        return float(np.mean((y - mu) ** 2))

    x0 = [y[0], 0.5] + ([w_fixed] if optimise_theta else [])
    bounds = [(None, None), ALPHA_BOUNDS] + ([(0.0, W_MAX)] if optimise_theta else [])
    result = minimize(loss, np.asarray(x0, float), method="Nelder-Mead", bounds=bounds,
                      options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 400 * len(x0)})
    level0, alpha, w = unpack(result.x)
    mu, levels = _one_step(y, level0, alpha, w, dynamic, trend)
    return {"model": model, "alpha": float(alpha), "w": float(w), "level": float(levels[-1]),
            "mse": float(np.mean((y - mu) ** 2))}


def _criterion(fit: dict, n: int) -> float:
    """AICc of a Gaussian one-step fit, ``n log(mse) + 2k + 2k(k+1)/(n-k-1)`` (k: l_0, alpha, and theta where
    estimated); infinite where the series is too short for it (n <= k + 1)."""
    k = 2 + int(fit["model"] in ESTIMATED_THETA)
    if not np.isfinite(fit["mse"]) or n <= k + 1:
        return np.inf
    return n * np.log(max(fit["mse"], 1e-300)) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _fit_models(adjusted: np.ndarray, method: str, theta: float) -> dict:
    """The chosen (``auto``: lowest AICc of the four) Theta model, on the scale of ``adjusted``."""
    scale = float(np.mean(np.abs(adjusted))) or 1.0
    y = adjusted / scale
    trend = running_trend(y)
    fits = [_fit_model(y, model, theta, trend) for model in (MODELS if method == "auto" else (method,))]
    scored = [fit for fit in fits if np.isfinite(_criterion(fit, y.size))]
    # too short for any criterion (3 points): the model with the fewest estimates among those fitted
    best = min(scored, key=lambda fit: _criterion(fit, y.size)) if scored else fits[0]
    mean, intercepts, slopes = trend
    # the line at n: the static models' whole-sample line, and the dynamic ones' running line at its last step
    intercept, slope = intercepts[-1], slopes[-1]
    return {"method": best["model"], "alpha": best["alpha"], "theta": 1.0 / (1.0 - best["w"]),
            "level": best["level"] * scale, "intercept": float(intercept) * scale, "slope": float(slope) * scale,
            "mean_y": float(mean[-1]) * scale, "sigma2": best["mse"] * scale**2}


def _fit_one_series(series_id: str, values: np.ndarray, settings: dict) -> _FittedSeries:
    started = time.process_time()
    m = settings["season_length"]
    indices = np.empty(0)
    if settings["deseasonalize"] and np.all(values > 0) and is_seasonal(values, m):
        indices = multiplicative_seasonal_indices(values, m)
    adjusted = values / indices[np.arange(values.size) % m] if indices.size else values
    method = settings["method"]
    if method != "standard":
        if np.ptp(adjusted) == 0:  # constant: the forecast is the constant (a flat static model)
            fit = {"method": method if method != "auto" else "STM", "alpha": 0.5, "theta": settings["theta"],
                   "level": float(adjusted[-1]), "intercept": float(adjusted[-1]), "slope": 0.0,
                   "mean_y": float(adjusted[-1]), "sigma2": 0.0}
        else:
            fit = _fit_models(adjusted, method, settings["theta"])
        return _FittedSeries(n_obs=values.size, indices=indices, fit_seconds=time.process_time() - started, **fit)
    from statsmodels.tsa.forecasting.theta import ThetaModel

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
    return _FittedSeries(method="standard", b0=b0, alpha=alpha, level=level, sigma2=sigma2, n_obs=values.size,
                         indices=indices, theta=settings["theta"], fit_seconds=time.process_time() - started)


def _step(state: dict, alpha: float, w: float, dynamic: bool, value: float | None) -> float:
    """One step of a Theta model from ``state`` (``level, intercept, slope, mean_y, n`` at t-1): returns
    ``mu_t`` and moves ``state`` to t with ``value`` observed (None: with ``mu_t`` in its place)."""
    t = state["n"] + 1
    decay = 1.0 - alpha
    mu = state["level"] + w * (decay ** (t - 1) * state["intercept"] + (1.0 - decay**t) / alpha * state["slope"])
    y = mu if value is None else value
    state["level"] = alpha * y + decay * state["level"]
    if dynamic:  # the running least-squares line of y_1..y_t (running_trend's closed form, one step on)
        mean = ((t - 1) * state["mean_y"] + y) / t
        slope = 0.0 if t == 1 else ((t - 2) * state["slope"] + 6.0 * (y - state["mean_y"]) / t) / (t + 1)
        state.update(mean_y=mean, slope=slope, intercept=mean - (t + 1) / 2.0 * slope)
    state["n"] = t
    return mu


def _update_one_series(state: _FittedSeries, values: np.ndarray) -> _FittedSeries:
    """The fitted parameters (alpha, theta or b0, sigma2, the seasonal indices) stay; the new (seasonally
    adjusted) values move the level and, for the dynamic models, the running trend: exactly the state a fit
    with these parameters on the longer series reaches (SES of the standard method starts from the first
    value either way; the static models keep their fitted line)."""
    m = state.indices.size
    positions = state.n_obs + np.arange(values.size)
    adjusted = values / state.indices[positions % m] if m else values
    if state.method == "standard":
        level = state.level
        for value in adjusted:
            level = state.alpha * value + (1.0 - state.alpha) * level
        return replace(state, level=float(level), n_obs=state.n_obs + values.size)
    moving = state.moving_state()
    for value in adjusted:
        _step(moving, state.alpha, 1.0 - 1.0 / state.theta, state.dynamic, float(value))
    return replace(state, level=moving["level"], intercept=moving["intercept"], slope=moving["slope"],
                   mean_y=moving["mean_y"], n_obs=moving["n"])


def theta_forecast(state: _FittedSeries, horizon: int, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjusted-scale mean, its standard error, and the seasonal factor of each step.

    ``theta`` weighs the standard method's drift; the models carry their own (fitted or fixed) theta."""
    steps = np.arange(horizon, dtype=float)  # h - 1
    if state.method == "standard":
        drift = steps.copy()
        if state.alpha > 0:
            drift += 1.0 / state.alpha - (1.0 - state.alpha) ** state.n_obs / state.alpha
        mean = state.level + (theta - 1.0) / theta * state.b0 * drift
        scale = np.sqrt(state.sigma2 * (1.0 + steps * (1.0 + (state.alpha - 1.0) ** 2)))
    else:
        moving = state.moving_state()
        w = 1.0 - 1.0 / state.theta
        mean = np.array([_step(moving, state.alpha, w, state.dynamic, None) for _ in range(horizon)])
        scale = np.sqrt(state.sigma2 * (1.0 + steps * state.alpha**2))
    m = state.indices.size
    factor = state.indices[(state.n_obs + np.arange(horizon)) % m] if m else np.ones(horizon)
    return mean, scale, factor


class ThetaForecaster(Forecaster):
    """Theta per series: ``auto`` picks the best of the four optimised / dynamic Theta models (by AICc).

    Hyperparameters: ``method`` (``auto``: lowest AICc of the one-step errors of STM, OTM, DSTM, DOTM; one of those
    names; or ``standard``: the classic method through statsmodels' ThetaModel), ``theta`` (>= 1; the fixed
    theta of ``standard``, STM and DSTM, 2 being the standard method), ``deseasonalize`` (the M4
    test-then-adjust rule; false: never adjust), ``n_jobs`` (-1 = all cores).
    """

    name = "theta"
    per_series_state = True
    fallback = "seasonal_naive"

    def __init__(self, freq: str, season_length: int | None = None, method: str = "auto", theta: float = 2.0,
                 deseasonalize: bool = True, n_jobs: int = -1):
        super().__init__(freq, season_length, method=method, theta=theta, deseasonalize=deseasonalize, n_jobs=n_jobs)
        if method not in METHODS:
            raise ForecasterError(f"theta: method must be one of {list(METHODS)}, got {method!r}")
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not np.isfinite(theta) or theta < 1:
            raise ForecasterError(f"theta: theta must be a number >= 1, got {theta!r}")
        if not isinstance(deseasonalize, bool):
            raise ForecasterError(f"theta: deseasonalize must be true or false, got {deseasonalize!r}")
        if isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs == 0:
            raise ForecasterError(f"theta: n_jobs must be a non-zero integer (-1 = all cores), got {n_jobs!r}")
        self.method = method
        self.theta = float(theta)
        self.deseasonalize = deseasonalize
        self.n_jobs = int(n_jobs)

    @property
    def min_length(self) -> int:
        # an OLS slope and an SES level; seasonal adjustment only when the test has its three seasons
        return 3

    def n_parameters(self) -> int:
        # standard: b0, alpha, sigma2 (the initial level is the first value); models: l_0, alpha, sigma2 and
        # theta where estimated; the trend line (A, B) is computed, not searched. Plus m - 1 free indices.
        def count(state: _FittedSeries) -> int:
            return 3 + int(state.method in ESTIMATED_THETA) + max(state.indices.size - 1, 0)
        return sum(count(state) for state in getattr(self, "fitted_", {}).values())

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        settings = dict(season_length=self.season_length, deseasonalize=self.deseasonalize, method=self.method,
                        theta=self.theta)
        items = [(sid, values, settings) for sid, values in split_series(panel).items()]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="theta fit")
        self.fitted_: dict[str, _FittedSeries] = {sid: state for (sid, _, _), state in zip(items, results)}
        self.seasonally_adjusted_ = {sid: state.seasonal for sid, state in self.fitted_.items()}
        self.model_by_series_ = {sid: state.method for sid, state in self.fitted_.items()}
        logger.info("theta: fitted %d series in %.1f s (%d seasonally adjusted; models %s)", len(self.fitted_),
                    time.perf_counter() - started, sum(self.seasonally_adjusted_.values()),
                    pd.Series(self.model_by_series_, dtype=object).value_counts().to_dict())

    def _update(self, new_observations: pd.DataFrame) -> None:
        for series_id, values in split_series(new_observations).items():
            self.fitted_[series_id] = _update_one_series(self.fitted_[series_id], values)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames = []
        for series_id in self.fitted_series_ids_:
            mean, scale, factor = theta_forecast(self.fitted_[series_id], horizon, self.theta)
            bounds = {level: ((mean - normal_quantile(level) * scale) * factor,
                              (mean + normal_quantile(level) * scale) * factor) for level in levels}
            frames.append(SeriesForecast(series_id, self.future_index(series_id, horizon), mean * factor, bounds))
        return concat_forecasts(frames)
