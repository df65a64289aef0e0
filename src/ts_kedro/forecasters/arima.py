"""Automatic ARIMA per series (statsmodels) for any frequency: seasonal ARIMA where the season is short, the
seasonality removed first (Fourier terms, a seasonal difference, MSTL) where it is long.

Every frequency-dependent setting comes from the frequency profile (``ts_kedro.frequency``): the main season
``m`` (``season_length``), the candidate periods for Fourier terms and MSTL (``seasonal_periods``, may be real:
52.18 steps a year on a weekly grid) and the validation horizon. A series uses its season only when it holds two
full seasons (``effective_season_length``); otherwise it gets a plain ARIMA.

Variants (``seasonality``):

- ``sarima``: auto.arima's procedure (Hyndman & Khandakar 2008) with its defaults where they matter. D (0/1)
  from the seasonal strength of a classical decomposition (D = 1 when it is at least 0.64, auto.arima's "seas"
  test), d from repeated KPSS tests on the seasonally differenced series, then a stepwise search over
  (p, q, P, Q, constant) by the information criterion: start at (2,2,1,1), (0,0,0,0), (1,0,1,0), (0,1,0,1),
  move to the first neighbour (one or both of p/q or P/Q by +-1, constant toggled) that improves it, at most
  ``max_search_fits`` fits. The constant is allowed where d + D <= 1 (a mean, or a drift after one difference).
  Orders are limited by ``max_p``/``max_q`` (P, Q <= 1) and by the length: every fit keeps a few points beyond
  its parameters. The ARMA is estimated on the differenced series (exact likelihood of the differences, as R's
  arima); forecasts and their variance are integrated back exactly (the psi weights of the ARMA times the
  differencing polynomial). Used for ``2 <= m <= max_sarima_season`` (default 12): the seasonal ARMA state grows
  with m and a longer season costs seconds per fit. With m = 1 (yearly data, or a series shorter than two
  seasons) the same search without the seasonal part is a plain ARIMA with drift where d = 1.
- ``fourier``: OLS of the series on an intercept, a linear time trend and ``fourier_order`` sine/cosine pairs
  for every period in ``seasonal_periods`` that has at least two full cycles in the series (a two-stage
  "regression with ARIMA errors"); the Fourier part is extrapolated exactly. One fixed profile estimated from
  the whole history; the only variant that models several seasons and non-integer ones.
- ``seasonal_difference``: the ARIMA models z[t] = y[t] - y[t-m], i.e. SARIMA(p,d,q)x(0,1,Q)m fitted on the
  differenced series; forecasts and their variance are integrated back from the last cycle (exactly
  statsmodels' SARIMAX forecasts, see the tests). The profile is the latest cycle, so it follows a drifting one.
  With ``seasonal_ma: true`` (off by default) the order found with Q = 0 is also fitted with a seasonal MA(1) at
  lag m, and the information criterion keeps it or not (both model the same differenced series, so their
  criteria compare): with it the profile is an exponentially weighted average of the past cycles (the "airline"
  model), which follows a drifting profile without copying the last cycle's noise. Measured on five real panels
  (docs/benchmarks.md, "A seasonal MA in ARIMA's seasonal difference", ``benchmarks/arima_seasonal_ma.py``), the
  family's test MASE fell on three and rose on two, at 3 to 15 times its fit CPU, hence off. The term makes the
  state m + 1 long and the filter's cost grows with its square, so it is tried only up to
  ``max_seasonal_ma_season``.
- ``mstl``: statsmodels MSTL with the same periods; each seasonal component is extrapolated by repeating its last
  cycle (as statsforecast's MSTL model does).
- ``auto`` (default): per series, the candidates that suit its season compete on its own last
  ``validation_horizon`` points (fitted on the rest), scored by MAE (which orders candidates exactly as MASE
  does): Fourier against SARIMA when 2 <= m <= ``max_sarima_season``, Fourier against the seasonal difference
  for a longer season; with m = 1 the plain ARIMA is the only candidate. The choice is made on a validation
  window, not by the information criterion, because the likelihoods of the candidates are not comparable: they
  model differently transformed data (a seasonal difference, a regression residual). Costs: Fourier gets one fit
  with ``validation_order``; SARIMA's order is searched on the whole series and refitted once on the shorter one
  (its order search thus saw the validation points, through the in-sample likelihood only). A series shorter
  than the window plus two seasons and a few points skips the validation: SARIMA where the season is short,
  Fourier otherwise. The seasonal difference's seasonal MA is decided once, by the criterion on the validation
  fit, and the final fit keeps that decision.

The non-SARIMA variants pick ``d`` on the seasonally adjusted series from a KPSS test (5 %, up to ``max_d``)
and (p, q) by the information criterion over the grid ``0..max_p`` x ``0..max_q``; a series with no usable
seasonal period gets the plain ARIMA search above. Prediction intervals are the ARIMA's own, shifted by the
seasonal forecast (Fourier, MSTL: the seasonal estimate's own uncertainty is ignored, so they are slightly
narrow) or integrated (SARIMA, seasonal difference).

All variants fit on ``log(values)`` when every value is positive (``log_transform``, default on): most series
with a seasonal swing have one proportional to their level; forecasts and interval bounds are back-transformed
with exp (the point forecast is then the median).

Covariates known in advance (``known_covariates``): a regression with ARIMA errors, y = X b + e with e the
series' ARIMA, in every variant. The covariates are standardised per series and go through the same
differencing as the series (d, D and the seasonal difference), so b is estimated jointly with the ARMA on the
series the ARMA filters (statsmodels' ``exog``), as auto.arima with ``xreg`` does; d and D are chosen on the
residuals of a regression of the series on its covariates. The Fourier regression includes them, so the seasonal
profile is not biased by them. Per series, a covariate constant in its history (a dummy that never fires) or
collinear with the others is left out. The forecast reads the plan over the horizon (``set_future_covariates``);
each plan row's regression effect is kept within the range of effects the history's rows had
(``covariate_effect_margin``, default 0: a linear regression extrapolates without bound, and nearly collinear
prices made Stallion forecasts explode; a larger margin allows what-if plans further out, null none). An
update carries the new points' covariate values. Covariates not known in advance (observed) have no values
over the horizon: they are ignored and recorded in ``ignored_covariates_``.

Short series: ``min_length`` is what the simplest model needs (one difference, a constant, the variance and
``MIN_SPARE_POINTS`` more points); longer models are tried only where the series affords them. A shorter series
is served by the ``fallback`` family (ETS), and marked so in ``served_by_``.
"""
from __future__ import annotations

import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import (
    SeriesForecast,
    concat_forecasts,
    map_series,
    normal_quantile,
    split_covariates,
    split_series,
)
from ts_kedro.forecasters.base import Forecaster, ForecasterError
from ts_kedro.frequency import candidate_periods, effective_season_length

logger = logging.getLogger(__name__)

SEASONALITY_METHODS = ("auto", "sarima", "fourier", "seasonal_difference", "mstl")
CRITERIA = ("aic", "aicc", "bic")
#: points every fit keeps beyond its parameters (and the points lost to differencing)
MIN_SPARE_POINTS = 3
#: auto.arima's "seas" test: one seasonal difference when the seasonal strength reaches this
SEASONAL_STRENGTH_FOR_D = 0.64
#: the validation window must leave the fit this many points beyond two seasons
VALIDATION_SPARE_POINTS = 10
#: a seasonal MA coefficient nearer -1 or 1 than this is not kept (seasonal_difference; see _with_seasonal_ma)
SEASONAL_MA_BOUND = 0.98


def derived_validation_horizon(season_length: int) -> int:
    """Validation window of a forecaster built without a profile: two seasons (one season's profile checked
    twice), at least ``2 * (MIN_SPARE_POINTS + 1)`` points where there is no season (only used to choose
    between seasonal candidates, so it matters where a season exists)."""
    return max(2 * int(season_length), 2 * (MIN_SPARE_POINTS + 1))


@dataclass
class _FittedSeries:
    """Everything needed to forecast one series again without re-estimating anything (small and picklable).

    ``order``/``seasonal_order``/``trend``/``params`` are those of the statsmodels ARIMA fitted on ``adjusted``
    (for SARIMA: the fully differenced series, so ``order`` has d = 0 there and the differencing is in
    ``seasonal["differencing"]``); ``statsmodels_model()`` rebuilds that model.
    """

    order: tuple[int, int, int]
    trend: str
    params: np.ndarray
    adjusted: np.ndarray  # seasonally adjusted (or differenced) history the ARIMA was fitted on
    n_obs: int
    seasonal: dict = field(default_factory=dict)  # how to extrapolate the seasonal part
    log_scale: bool = False  # modelled on log(values): forecasts are back-transformed (median, quantiles)
    warnings: list[str] = field(default_factory=list)
    fit_seconds: float = 0.0
    seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: the covariate regressors on the points of ``adjusted`` (None: the series uses no covariate)
    exog: np.ndarray | None = None
    #: how they were made from the raw covariates (``_covariate_regressors``): columns, centre, scale, differencing
    covariates: dict | None = None

    def statsmodels_model(self):
        """The statsmodels ARIMA these parameters belong to (filter it with ``params``; nothing is estimated)."""
        from statsmodels.tsa.arima.model import ARIMA

        return ARIMA(self.adjusted, exog=self.exog, order=self.order, seasonal_order=self.seasonal_order,
                     trend=self.trend)

    @property
    def label(self) -> str:
        """The model in the usual notation, e.g. ``SARIMA(1,1,0)(0,1,1)[4]+drift`` or ``fourier+ARIMA(2,0,1)``."""
        differencing = self.seasonal.get("differencing")
        if differencing is None:
            P, _, Q, m = self.seasonal_order
            seasonal_arma = f"({P},0,{Q})[{m}]" if P + Q else ""
            return (f"{self.seasonal.get('method', 'none')}+ARIMA{tuple(self.order)}{seasonal_arma}"
                    f"{self._covariates_label}")
        p, _, q = self.order
        P, _, Q, m = self.seasonal_order
        d, D = differencing["d"], differencing["D"]
        constant = {0: "+mean", 1: "+drift"}.get(d + D, "") if self.trend == "c" else ""
        seasonal = f"({P},{D},{Q})[{differencing['m']}]" if differencing["m"] > 1 else ""
        return f"{'S' if seasonal else ''}ARIMA({p},{d},{q}){seasonal}{constant}{self._covariates_label}"

    @property
    def _covariates_label(self) -> str:
        return f"+{len(self.covariates['columns'])} covariate(s)" if self.covariates else ""


class ArimaForecaster(Forecaster):
    """Automatic ARIMA per series: seasonal ARIMA for short seasons, Fourier/seasonal difference for long ones.

    Hyperparameters: ``seasonality`` (auto|sarima|fourier|seasonal_difference|mstl), ``seasonal_periods``
    (for fourier and mstl; None: the frequency's calendar periods, ``candidate_periods(freq)``), ``fourier_order``
    (sine/cosine pairs per period, capped below period/2), ``information_criterion`` (aic|aicc|bic), ``max_p``,
    ``max_q``, ``max_d``, ``max_search_fits`` (SARIMA's stepwise search), ``max_sarima_season``, ``log_transform``,
    ``validation_horizon`` (None: two seasons, ``derived_validation_horizon``) and ``validation_order``
    ([p, q] for the Fourier/seasonal-difference candidates, or null for a full search; auto only),
    ``seasonal_ma`` and ``max_seasonal_ma_season`` (the seasonal-difference variant also tries a seasonal MA(1)
    where the season is at most that long, kept by the criterion),
    ``n_jobs`` (-1 = all cores), ``known_covariates`` (panel columns known in advance: regression with ARIMA
    errors, see the module docstring; None: the training pipeline fills in the covariates declared
    ``known_in_advance``, empty: none). ``build_forecaster`` fills the None ones from the panel's frequency profile.
    """

    name = "arima"
    per_series_state = True
    fallback = "ets"
    supports_covariates = True

    def __init__(self, freq: str, season_length: int | None = None, seasonality: str = "auto",
                 seasonal_periods: list[float] | None = None, fourier_order: int = 12,
                 information_criterion: str = "aicc", max_p: int = 2, max_q: int = 2, max_d: int = 1,
                 log_transform: bool = True, validation_horizon: int | None = None,
                 validation_order: list[int] | None = (1, 1), max_search_fits: int = 30,
                 max_sarima_season: int = 12, n_jobs: int = -1, known_covariates: list[str] | None = None,
                 covariate_effect_margin: float | None = 0.0, seasonal_ma: bool = False,
                 max_seasonal_ma_season: int = 52):
        super().__init__(freq, season_length, seasonality=seasonality, seasonal_periods=seasonal_periods,
                         fourier_order=fourier_order, information_criterion=information_criterion,
                         max_p=max_p, max_q=max_q, max_d=max_d, log_transform=log_transform,
                         validation_horizon=validation_horizon, n_jobs=n_jobs, validation_order=validation_order,
                         max_search_fits=max_search_fits, max_sarima_season=max_sarima_season,
                         known_covariates=known_covariates, covariate_effect_margin=covariate_effect_margin,
                         seasonal_ma=seasonal_ma, max_seasonal_ma_season=max_seasonal_ma_season)
        if seasonality not in SEASONALITY_METHODS:
            raise ForecasterError(f"arima: seasonality must be one of {SEASONALITY_METHODS}, got {seasonality!r}")
        if information_criterion not in CRITERIA:
            raise ForecasterError(f"arima: information_criterion must be one of {CRITERIA}, got {information_criterion!r}")
        periods = candidate_periods(freq) if seasonal_periods is None else seasonal_periods
        periods = [periods] if isinstance(periods, (int, float)) else list(periods)
        if min(max_p, max_q, max_d) < 0 or fourier_order < 1 or any(float(p) < 2 for p in periods):
            raise ForecasterError("arima: max_p/max_q/max_d must be >= 0, fourier_order >= 1 and seasonal periods >= 2")
        if validation_horizon is None:
            validation_horizon = derived_validation_horizon(self.season_length)
        if int(validation_horizon) < 1:
            raise ForecasterError(f"arima: validation_horizon must be >= 1, got {validation_horizon!r}")
        if int(max_search_fits) < 1 or int(max_sarima_season) < 1:
            raise ForecasterError("arima: max_search_fits and max_sarima_season must be >= 1")
        self.seasonality = seasonality
        self.seasonal_periods = sorted(float(p) for p in periods)
        self.fourier_order = int(fourier_order)
        self.information_criterion = information_criterion
        self.max_p, self.max_q, self.max_d = int(max_p), int(max_q), int(max_d)
        self.log_transform = bool(log_transform)
        self.validation_horizon = int(validation_horizon)
        if validation_order is not None and (len(validation_order) != 2 or min(validation_order) < 0):
            raise ForecasterError(f"arima: validation_order must be [p, q] with p, q >= 0 or null, "
                                  f"got {validation_order!r}")
        self.validation_order = None if validation_order is None else tuple(int(v) for v in validation_order)
        self.max_search_fits = int(max_search_fits)
        if covariate_effect_margin is not None and not float(covariate_effect_margin) >= 0:
            raise ForecasterError(f"arima: covariate_effect_margin must be >= 0 or null, got {covariate_effect_margin!r}")
        self.covariate_effect_margin = None if covariate_effect_margin is None else float(covariate_effect_margin)
        self.max_sarima_season = int(max_sarima_season)
        self.seasonal_ma = bool(seasonal_ma)
        self.max_seasonal_ma_season = int(max_seasonal_ma_season)
        self.n_jobs = int(n_jobs)
        self.known_covariates = list(known_covariates or [])

    @property
    def min_length(self) -> int:
        # the simplest model: max_d differences, a constant and the variance, plus a few spare points
        return self.max_d + 2 + MIN_SPARE_POINTS

    def n_parameters(self) -> int:
        fitted = getattr(self, "fitted_", {})
        total = 0
        for state in fitted.values():
            total += len(state.params) + state.seasonal.get("n_parameters", 0)
        return total

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        settings = dict(seasonality=self.seasonality, periods=self.seasonal_periods, fourier_order=self.fourier_order,
                        criterion=self.information_criterion, max_p=self.max_p, max_q=self.max_q, max_d=self.max_d,
                        log_transform=self.log_transform, season_length=self.season_length,
                        validation_horizon=self.validation_horizon, validation_order=self.validation_order,
                        max_search_fits=self.max_search_fits, max_sarima_season=self.max_sarima_season,
                        effect_margin=self.covariate_effect_margin, seasonal_ma=self.seasonal_ma,
                        max_seasonal_ma_season=self.max_seasonal_ma_season)
        covariates = split_covariates(panel, self.known_covariates)
        items = [(sid, values, settings, covariates[sid]) for sid, values in split_series(panel).items()]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="arima fit")
        self.fitted_: dict[str, _FittedSeries] = {}
        #: per series, the known covariates its regression uses (constant or collinear ones are left out)
        self.covariates_used_: dict[str, list[str]] = {}
        for (series_id, *_), state in zip(items, results):
            for message in state.warnings:
                logger.warning("arima: series %r: %s", series_id, message)
            self.fitted_[series_id] = state
            self.covariates_used_[series_id] = [self.known_covariates[j]
                                                for j in (state.covariates or {}).get("columns", [])]
        if self.known_covariates:
            logger.info("arima: %d of %d series regress on covariates known in advance (of %s)",
                        sum(bool(used) for used in self.covariates_used_.values()), len(items), self.known_covariates)
        per_series = [s.fit_seconds for s in self.fitted_.values()]
        skipped = [sid for sid, s in self.fitted_.items() if "validation_skipped" in s.seasonal]
        if skipped:
            logger.info("arima: %d series too short for the %d-point validation window took the default "
                        "seasonal model without validation (first: %r)", len(skipped), self.validation_horizon,
                        skipped[0])
        logger.info("arima: fitted %d series in %.2f s wall (%.2f s CPU mean per series); seasonality %s; models %s",
                    len(per_series), time.perf_counter() - started, float(np.mean(per_series)),
                    pd.Series([s.seasonal["method"] for s in self.fitted_.values()]).value_counts().to_dict(),
                    pd.Series([s.label for s in self.fitted_.values()]).value_counts().head(10).to_dict())

    def _update(self, new_observations: pd.DataFrame) -> None:
        covariates = split_covariates(new_observations, self.known_covariates)
        series = split_series(new_observations)
        # every refused series named at once, so a caller can refit those and update the rest
        refused = {sid: f"modelled on the log scale, a new observation is {float(values[values <= 0][0])!r} (<= 0)"
                   for sid, values in series.items() if self.fitted_[sid].log_scale and np.any(values <= 0)}
        if refused:
            raise ForecasterError.refused_update(self.name, refused)
        for series_id, values in series.items():
            self.fitted_[series_id] = _update_one_series(series_id, self.fitted_[series_id], values,
                                                         covariates[series_id])

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames = []
        for series_id in self.fitted_series_ids_:
            state = self.fitted_[series_id]
            index = self.future_index(series_id, horizon)
            # the plan is required whenever the model reads covariates, even for a series that left them all out
            plan = self.future_covariate_values(series_id, index) if self.known_covariates else None
            mean, bounds = _forecast_one_series(state, horizon, levels, plan,
                                                getattr(self, "covariate_effect_margin", None))  # older pickles: none
            frames.append(SeriesForecast(series_id, index, mean, bounds))
        return concat_forecasts(frames)


# -- seasonal part --------------------------------------------------------------------------------------------
def _usable_periods(periods: list[float], n_obs: int) -> list[float]:
    """Only periods with at least two full cycles in the data can be estimated."""
    return [p for p in periods if n_obs >= 2 * p]


def _fourier_terms(time_index: np.ndarray, periods: list[float], order: int) -> np.ndarray:
    """Sine/cosine pairs k = 1..order per period, k below period/2 (real periods allowed: 52.18, 365.25)."""
    columns = []
    for period in periods:
        for k in range(1, min(order, int(np.floor(period / 2))) + 1):
            angle = 2 * np.pi * k * time_index / period
            if not (float(period).is_integer() and int(period) % 2 == 0 and k == int(period) // 2):
                columns.append(np.sin(angle))  # at the Nyquist frequency of an even period sin is identically 0
            columns.append(np.cos(angle))
    return np.column_stack(columns) if columns else np.empty((len(time_index), 0))


def _remove_seasonality(values: np.ndarray, method: str, periods: list[float], order: int,
                        season_length: int, covariates: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    n_obs = len(values)
    if method == "seasonal_difference":
        # the ARIMA models y[t] - y[t-m]: the seasonal profile is the latest cycle, so a profile that drifts
        # (e.g. temperature-like series whose daily shape moves with the time of year) is followed exactly
        m = season_length
        return values[m:] - values[:-m], {"method": "seasonal_difference", "period": m,
                                          "last_cycle": values[-m:].copy(), "n_parameters": 0}
    usable = _usable_periods(periods, n_obs)
    if not usable:
        return values.copy(), {"method": "none", "n_parameters": 0}
    if method == "fourier":
        t = np.arange(n_obs, dtype=float)
        seasonal_x = _fourier_terms(t, usable, order)
        # the covariates take their share in the same regression, so the profile is not biased by them
        regressors = _standardised(covariates, n_obs)
        design = np.column_stack([np.ones(n_obs), t / n_obs, seasonal_x, regressors])
        coef, *_ = np.linalg.lstsq(design, values, rcond=None)
        seasonal_coef = coef[2:2 + seasonal_x.shape[1]]
        adjusted = values - seasonal_x @ seasonal_coef
        return adjusted, {"method": "fourier", "periods": usable, "order": order, "coef": seasonal_coef,
                          "n_parameters": len(seasonal_coef)}
    from statsmodels.tsa.seasonal import MSTL

    integer = sorted({int(round(p)) for p in usable})  # MSTL needs whole periods
    decomposition = MSTL(values, periods=integer if len(integer) > 1 else integer[0]).fit()
    seasonal = np.asarray(decomposition.seasonal).reshape(n_obs, -1)
    last_cycles = [seasonal[-p:, i].copy() for i, p in enumerate(integer)]
    return values - seasonal.sum(axis=1), {"method": "mstl", "periods": integer, "last_cycles": last_cycles,
                                           "n_parameters": int(sum(integer))}


def _seasonal_forecast(seasonal: dict, n_obs: int, horizon: int) -> np.ndarray:
    if seasonal["method"] in ("none", "seasonal_difference"):  # the latter is integrated in _forecast_one_series
        return np.zeros(horizon)
    if seasonal["method"] == "fourier":
        future_t = np.arange(n_obs, n_obs + horizon, dtype=float)
        return _fourier_terms(future_t, seasonal["periods"], seasonal["order"]) @ seasonal["coef"]
    steps = np.arange(horizon)
    return sum(cycle[steps % len(cycle)] for cycle in seasonal["last_cycles"])


def _seasonal_strength(values: np.ndarray, m: int) -> float:
    """1 - var(remainder) / var(seasonal + remainder) of a classical additive decomposition (trend: centred
    moving average over one season), the strength measure of auto.arima's "seas" test (which uses STL)."""
    n = len(values)
    if m < 2 or n < 2 * m + 1:
        return 0.0
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = len(weights) // 2
    detrended = values[half:n - half] - np.convolve(values, weights, mode="valid")
    phase = np.arange(half, n - half) % m
    profile = np.array([detrended[phase == k].mean() for k in range(m)])
    remainder = detrended - (profile - profile.mean())[phase]
    spread = np.var(detrended)
    return 0.0 if spread <= 0 else float(max(0.0, 1.0 - np.var(remainder) / spread))


# -- covariates: regression with ARIMA errors ----------------------------------------------------------------------
def _standardised(covariates: np.ndarray | None, n_points: int) -> np.ndarray:
    """The covariates that vary in this history, centred and scaled (``n_points`` x varying columns)."""
    if covariates is None:
        return np.empty((n_points, 0))
    raw = np.asarray(covariates, float)
    center, scale = raw.mean(axis=0), raw.std(axis=0)
    varying = scale > 0
    return (raw[:, varying] - center[varying]) / scale[varying]


def _without_covariates(values: np.ndarray, regressors: np.ndarray | None) -> np.ndarray:
    """``values`` minus their least-squares fit on the regressors (intercept kept): what the unit-root and
    seasonal-strength tests look at in a regression with ARIMA errors (auto.arima does the same with xreg)."""
    if regressors is None or not regressors.size:
        return values
    design = np.column_stack([np.ones(len(values)), regressors])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - regressors @ coef[1:]


def _covariate_regressors(covariates: np.ndarray | None, d: int, D: int, m: int,
                          n_points: int) -> tuple[np.ndarray | None, dict | None]:
    """The regressors of one series for an ARMA on (1 - B)^d (1 - B^m)^D y, and how to make them again.

    Each covariate is standardised on the series' history and differenced like the series. Left out: a covariate
    constant in the history (nothing to estimate; e.g. a holiday dummy that never fired), one that differencing
    makes constant or collinear with those before it, and any beyond half of the points the simplest ARMA leaves
    spare (``n_points``: points of the differenced series). Returns (regressors on the differenced points, spec),
    or (None, None) when none is left. ``spec["history"]`` holds the last d + m*D standardised rows, from which
    the regressors of later points (an update, the horizon) are differenced.
    """
    if covariates is None or not covariates.shape[1]:
        return None, None
    raw = np.asarray(covariates, float)
    center, scale = raw.mean(axis=0), raw.std(axis=0)
    varying = np.flatnonzero(scale > 0)
    standard = (raw[:, varying] - center[varying]) / scale[varying]
    differenced = _difference(standard, d, D, m)
    budget = max(0, (n_points - MIN_SPARE_POINTS - 2) // 2)
    keep: list[int] = []
    for j in range(differenced.shape[1]):
        if len(keep) >= budget:
            break
        trial = np.column_stack([np.ones(len(differenced)), differenced[:, keep + [j]]])
        if np.ptp(differenced[:, j]) > 0 and np.linalg.matrix_rank(trial) == trial.shape[1]:
            keep.append(j)
    if not keep:
        return None, None
    lag = d + m * D
    spec = {"columns": varying[keep].tolist(), "center": center[varying[keep]], "scale": scale[varying[keep]],
            "d": d, "D": D, "m": m, "history": standard[len(standard) - lag:, keep].copy()}
    return differenced[:, keep], spec


def _extend_regressors(spec: dict, covariates: np.ndarray) -> tuple[np.ndarray, dict]:
    """Regressors for the points after the history (raw ``covariates``: points x all known covariates), and the
    spec whose ``history`` has moved past them."""
    standard = (np.asarray(covariates, float)[:, spec["columns"]] - spec["center"]) / spec["scale"]
    extended = np.vstack([spec["history"], standard])
    lag = spec["d"] + spec["m"] * spec["D"]
    return (_difference(extended, spec["d"], spec["D"], spec["m"]),
            {**spec, "history": extended[len(extended) - lag:].copy()})


# -- ARIMA on the adjusted series ---------------------------------------------------------------------------------
def _choose_d(adjusted: np.ndarray, max_d: int) -> int:
    """Number of differences by repeated KPSS tests at 5 % (the auto.arima rule)."""
    from statsmodels.tsa.stattools import kpss

    series = adjusted
    for d in range(max_d + 1):
        if d == max_d or len(series) < MIN_SPARE_POINTS + 3 or np.ptp(series) == 0:
            return d
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # KPSS warns when the p-value is outside its lookup table
                p_value = kpss(series, regression="c", nlags="auto")[1]
        except (ValueError, np.linalg.LinAlgError):  # too short for its lag choice: no evidence to difference
            return d
        if p_value >= 0.05:
            return d
        series = np.diff(series)
    return max_d


def _information_criterion(result, criterion: str) -> float:
    return float({"aic": result.aic, "aicc": result.aicc, "bic": result.bic}[criterion])


def _fit_arima(adjusted: np.ndarray, order: tuple[int, int, int], trend: str,
               seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0), exog: np.ndarray | None = None):
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; failures are judged by the result below
        result = ARIMA(adjusted, exog=exog, order=order, seasonal_order=seasonal_order, trend=trend).fit()
    if not np.all(np.isfinite(result.params)) or not np.isfinite(result.llf):
        raise FloatingPointError(f"non-finite estimates for ARIMA{order}{seasonal_order}")
    return result


def _fit_candidate(values: np.ndarray, method: str, settings: dict,
                   order: tuple[int, int, int] | None = None, p_q: tuple[int, int] | None = None,
                   covariates: np.ndarray | None = None, seasonal_q: int | None = None) -> _FittedSeries:
    """Seasonal part by ``method``, then the ARIMA order by the information criterion (or the given ``order``;
    ``p_q``: fixed p and q, d from KPSS). Without a usable seasonal part: the plain ARIMA search. ``covariates``
    (points x known covariates): regressors of a regression with ARIMA errors (module docstring). The seasonal
    difference's seasonal MA(1): tried by the criterion (``settings["seasonal_ma"]``), or ``seasonal_q`` as
    given (a refit of a validated choice)."""
    m = effective_season_length(len(values), settings["season_length"])
    if method == "seasonal_difference" and m < 2:
        method = "none"
    if method in ("fourier", "mstl") and not _usable_periods(settings["periods"], len(values)):
        method = "none"
    if method == "none":
        return _fit_sarima(values, settings, 1, covariates=covariates)
    adjusted, seasonal = _remove_seasonality(values, method, settings["periods"], settings["fourier_order"], m,
                                             covariates)
    # the covariates go through the transformation the ARIMA sees: the seasonal difference, or none (the Fourier
    # and MSTL profiles are subtracted; the ARIMA's own d differences them inside statsmodels)
    D, period = (1, seasonal["period"]) if method == "seasonal_difference" else (0, 1)
    exog, covariate_spec = _covariate_regressors(covariates, 0, D, period, len(adjusted))
    if order is not None:
        d, grid = order[1], [(order[0], order[2])]
    else:
        d = _choose_d(_without_covariates(adjusted, exog), settings["max_d"])
        grid = [tuple(p_q)] if p_q is not None else list(
            itertools.product(range(settings["max_p"] + 1), range(settings["max_q"] + 1)))
    trend = "c" if d == 0 else "n"
    n_exog = 0 if exog is None else exog.shape[1]
    spare = len(adjusted) - d - MIN_SPARE_POINTS - 1 - (trend == "c") - n_exog
    grid = [(p, q) for p, q in grid if p + q <= spare] or [(0, 0)]
    best, best_score, failures = None, np.inf, []
    for p, q in grid:
        try:
            result = _fit_arima(adjusted, (p, d, q), trend, exog=exog)
        except Exception as exc:  # noqa: BLE001 - one failing order must not stop the search; it is reported
            failures.append(f"ARIMA({p},{d},{q}) failed: {exc}")
            continue
        score = _information_criterion(result, settings["criterion"])
        if np.isfinite(score) and score < best_score:
            best, best_score = result, score
    if best is not None and method == "seasonal_difference":
        best, best_score = _with_seasonal_ma(adjusted, best, best_score, seasonal["period"], trend, exog, settings,
                                             seasonal_q, failures)
    messages = []
    if failures:
        messages.append(f"{len(failures)} candidate orders failed and were skipped ({failures[0]})")
    if best is None:
        # the simplest model left: a random walk, which cannot fail on finite data
        messages.append(f"no ARIMA order up to ({settings['max_p']},{d},{settings['max_q']}) could be fitted; "
                        "falling back to ARIMA(0,1,0)")
        trend = "n"
        try:
            best = _fit_arima(adjusted, (0, 1, 0), "n")
            params = np.asarray(best.params, float)
        except Exception:  # noqa: BLE001 - e.g. a constant series: the random walk's variance by hand
            params = np.array([max(float(np.mean(np.diff(adjusted) ** 2)), 1e-12)])
        # no covariates in this last resort: the fits with them are what failed
        return _FittedSeries(order=(0, 1, 0), trend=trend, params=params, adjusted=adjusted, n_obs=len(values),
                             seasonal=seasonal, warnings=messages)
    return _FittedSeries(order=tuple(int(v) for v in best.model.order), trend=trend,
                         params=np.asarray(best.params, float), adjusted=adjusted, n_obs=len(values),
                         seasonal=seasonal, warnings=messages, exog=exog, covariates=covariate_spec,
                         seasonal_order=tuple(int(v) for v in best.model.seasonal_order))


def _with_seasonal_ma(adjusted: np.ndarray, best, best_score: float, m: int, trend: str, exog: np.ndarray | None,
                      settings: dict, seasonal_q: int | None, failures: list[str]):
    """The seasonal difference's ARIMA with a seasonal MA(1) at lag ``m`` where it lowers the criterion (same
    differenced series, so the criteria compare), or where ``seasonal_q`` = 1 asks for it; else ``best``.

    Kept only when invertible with room (|Theta| < ``SEASONAL_MA_BOUND``): a coefficient at -1 cancels the
    seasonal difference (a fixed profile, which the Fourier candidate models) and its filter is unstable."""
    wanted = (settings["seasonal_ma"] and m <= settings["max_seasonal_ma_season"] if seasonal_q is None
              else seasonal_q >= 1)
    p, d, q = (int(v) for v in best.model.order)
    n_exog = 0 if exog is None else exog.shape[1]
    if not wanted or len(adjusted) - d < 3 * m + p + q + n_exog + MIN_SPARE_POINTS:
        return best, best_score
    try:
        result = _fit_arima(adjusted, (p, d, q), trend, (0, 0, 1, m), exog=exog)
    except Exception as exc:  # noqa: BLE001 - the model without it stands; the failure is reported
        failures.append(f"ARIMA({p},{d},{q})(0,0,1)[{m}] failed: {exc}")
        return best, best_score
    theta = float(dict(zip(result.param_names, result.params)).get(f"ma.S.L{m}", 0.0))
    score = _information_criterion(result, settings["criterion"])
    if abs(theta) < SEASONAL_MA_BOUND and np.isfinite(score) and (seasonal_q is not None or score < best_score):
        return result, score
    return best, best_score


# -- seasonal ARIMA (and plain ARIMA with drift) by auto.arima's stepwise search -----------------------------------
def _difference(values: np.ndarray, d: int, D: int, m: int) -> np.ndarray:
    out = values
    for _ in range(D):
        out = out[m:] - out[:-m]
    for _ in range(d):
        out = np.diff(out, axis=0)  # along time: covariates come as points x columns
    return out


def _difference_polynomial(d: int, D: int, m: int) -> np.ndarray:
    """Coefficients of (1 - B)^d (1 - B^m)^D in ascending powers of the lag operator B."""
    poly = np.array([1.0])
    for _ in range(D):
        seasonal = np.zeros(m + 1)
        seasonal[0], seasonal[m] = 1.0, -1.0
        poly = np.convolve(poly, seasonal)
    for _ in range(d):
        poly = np.convolve(poly, [1.0, -1.0])
    return poly


def _seasonal_order(P: int, Q: int, m: int) -> tuple[int, int, int, int]:
    return (P, 0, Q, m) if m > 1 and P + Q > 0 else (0, 0, 0, 0)


def _fit_differenced(w: np.ndarray, spec: tuple, m: int, exog: np.ndarray | None = None):
    """ARMA(p, q)(P, Q)m, with a constant or not (and the differenced covariates), on the differenced series."""
    p, q, P, Q, constant = spec
    trend = "c" if constant else "n"
    if P + Q == 0:
        return _fit_arima(w, (p, 0, q), trend, exog=exog)
    return _fit_arima(w, (p, 0, q), trend, _seasonal_order(P, Q, m), exog=exog)


def _stepwise_search(w: np.ndarray, m: int, allow_constant: bool, settings: dict, messages: list[str],
                     exog: np.ndarray | None = None):
    """(result, (p, q, P, Q, constant)) of the best model on the differenced series ``w`` (None if none fits)."""
    max_p, max_q = settings["max_p"], settings["max_q"]
    max_seasonal = 1 if m > 1 else 0
    n = len(w) - (0 if exog is None else exog.shape[1])  # each covariate takes a point

    def feasible(spec) -> bool:
        p, q, P, Q, constant = spec
        if min(spec[:4]) < 0 or p > max_p or q > max_q or P > max_seasonal or Q > max_seasonal:
            return False
        if constant and not allow_constant:
            return False
        # a few points beyond the parameters, and beyond the longest lag of the state
        return n - (p + q + P + Q + constant + 1) >= MIN_SPARE_POINTS and n > max(p + m * P, q + m * Q) + 1

    tried: dict[tuple, float] = {}
    results: dict[tuple, object] = {}
    failures: list[str] = []

    def score(spec) -> float:
        if spec in tried:
            return tried[spec]
        p, q, P, Q, constant = spec
        try:
            result = _fit_differenced(w, spec, m, exog)
            value = _information_criterion(result, settings["criterion"])
            value = value if np.isfinite(value) else np.inf
            results[spec] = result
        except Exception as exc:  # noqa: BLE001 - one failing order must not stop the search; it is reported
            failures.append(f"ARIMA({p},{q})({P},{Q}) failed: {exc}")
            value = np.inf
        tried[spec] = value
        return value

    constant = bool(allow_constant)
    starts = [(min(2, max_p), min(2, max_q), max_seasonal, max_seasonal, constant), (0, 0, 0, 0, constant),
              (min(1, max_p), 0, max_seasonal, 0, constant), (0, min(1, max_q), 0, max_seasonal, constant)]
    starts = [s for s in dict.fromkeys(starts) if feasible(s)] or [(0, 0, 0, 0, False)]
    best = min(starts, key=score)
    improved = True
    while improved and len(tried) < settings["max_search_fits"]:
        improved = False
        p, q, P, Q, c = best
        moves = [(p, q, P - 1, Q, c), (p, q, P + 1, Q, c), (p, q, P, Q - 1, c), (p, q, P, Q + 1, c),
                 (p, q, P - 1, Q - 1, c), (p, q, P + 1, Q + 1, c),
                 (p - 1, q, P, Q, c), (p + 1, q, P, Q, c), (p, q - 1, P, Q, c), (p, q + 1, P, Q, c),
                 (p - 1, q - 1, P, Q, c), (p + 1, q + 1, P, Q, c), (p, q, P, Q, not c)]
        for move in moves:
            if move in tried or not feasible(move) or len(tried) >= settings["max_search_fits"]:
                continue
            if score(move) < tried[best]:
                best, improved = move, True
                break
    if failures:
        messages.append(f"{len(failures)} candidate orders failed and were skipped ({failures[0]})")
    if not np.isfinite(tried.get(best, np.inf)):
        return None, best
    return results[best], best


def _fit_sarima(values: np.ndarray, settings: dict, m: int, spec: tuple | None = None,
                covariates: np.ndarray | None = None) -> _FittedSeries:
    """auto.arima on one series with season ``m`` (1: no seasonal part); ``spec`` = (p, d, q, P, D, Q, constant)
    refits that model instead of searching. ``covariates`` (points x known covariates): regression with ARIMA
    errors, the covariates differenced like the series, D and d chosen on the regression residuals."""
    messages: list[str] = []
    if spec is None:
        tested = _without_covariates(values, _standardised(covariates, len(values)))
        D = int(m > 1 and len(values) >= 2 * m + MIN_SPARE_POINTS + 2
                and _seasonal_strength(tested, m) >= SEASONAL_STRENGTH_FOR_D)
        d = _choose_d(_difference(tested, 0, D, m), settings["max_d"])
    else:
        d, D = spec[1], spec[4]
    w = _difference(values, d, D, m)
    exog, covariate_spec = _covariate_regressors(covariates, d, D, m, len(w))
    allow_constant = d + D <= 1
    if spec is None:
        result, (p, q, P, Q, constant) = _stepwise_search(w, m, allow_constant, settings, messages, exog)
    else:
        p, _, q, P, _, Q, constant = spec
        try:
            result = _fit_differenced(w, (p, q, P, Q, constant), m, exog)
        except Exception as exc:  # noqa: BLE001 - the refit is reported and replaced below
            messages.append(f"refit of ARIMA({p},{d},{q})({P},{D},{Q}) failed: {exc}")
            result = None
    seasonal = {"method": "sarima" if m > 1 else "none", "n_parameters": 0,
                "differencing": {"d": d, "D": D, "m": m, "history": values[len(values) - (d + m * D):].copy()},
                "spec": None}
    if result is None:
        # nothing could be fitted (e.g. a constant series): white noise on the differences, variance by hand
        messages.append(f"no ARIMA could be fitted on the differenced series; falling back to "
                        f"ARIMA(0,{d},0)(0,{D},0)")
        p = q = P = Q = 0
        constant = False
        params = np.array([max(float(np.mean(w ** 2)) if len(w) else 0.0, 1e-12)])
        exog = covariate_spec = None  # white noise without covariates: the fits with them are what failed
    else:
        params = np.asarray(result.params, float)
    seasonal["spec"] = (p, d, q, P, D, Q, bool(constant))
    return _FittedSeries(order=(p, 0, q), trend="c" if constant else "n", params=params, adjusted=w,
                         n_obs=len(values), seasonal=seasonal, warnings=messages,
                         seasonal_order=_seasonal_order(P, Q, m), exog=exog, covariates=covariate_spec)


def _fit_one_series(series_id: str, values: np.ndarray, settings: dict,
                    covariates: np.ndarray | None = None) -> _FittedSeries:
    started = time.process_time()  # CPU time: honest per-series cost even on a shared, oversubscribed machine
    # log turns seasonal swings proportional to the level into additive ones
    log_scale = bool(settings["log_transform"] and np.all(values > 0))
    modelled = np.log(values) if log_scale else values
    n = len(values)
    m = effective_season_length(n, settings["season_length"])
    short_season = 2 <= m <= settings["max_sarima_season"]
    method, h, messages, fitted = settings["seasonality"], settings["validation_horizon"], [], None
    x = covariates
    if method == "sarima" or (method == "auto" and m < 2):
        fitted = _fit_sarima(modelled, settings, m if short_season else 1, covariates=x)
    elif method == "auto":
        # Fourier terms estimate one fixed profile from the whole history; SARIMA and the seasonal difference
        # follow the latest cycles. Which suits a series is decided on its own last h points (fitted on the
        # rest): the candidate with the lower MAE there wins (MAE orders candidates exactly as MASE does).
        candidates = ("fourier", "sarima") if short_season else ("fourier", "seasonal_difference")
        if n - h < 2 * m + VALIDATION_SPARE_POINTS:
            method = "sarima" if short_season else "fourier"
            fitted = (_fit_sarima(modelled, settings, m, covariates=x) if short_season
                      else _fit_candidate(modelled, method, settings, covariates=x))
            fitted.seasonal["validation_skipped"] = f"{n} points, too short for a {h}-point validation window"
        else:
            errors, orders, full = {}, {}, {}
            for candidate in candidates:
                # the validation window's recorded covariates are its plan (they were known in advance)
                fit_x, plan = (None, None) if x is None else (x[:-h], x[-h:])
                if candidate == "sarima":
                    # the order is searched once on all data and refitted on the shorter series
                    full[candidate] = _fit_sarima(modelled, settings, m, covariates=x)
                    state = _fit_sarima(modelled[:-h], settings, m, spec=full[candidate].seasonal["spec"],
                                        covariates=fit_x)
                else:
                    state = _fit_candidate(modelled[:-h], candidate, settings, p_q=settings["validation_order"],
                                           covariates=fit_x)
                state.log_scale = log_scale
                mean, _ = _forecast_one_series(state, h, [], plan, settings.get("effect_margin"))
                errors[candidate] = float(np.mean(np.abs(values[-h:] - mean)))
                orders[candidate] = (state.order, state.seasonal_order[2])
            method = min(errors, key=lambda c: (not np.isfinite(errors[c]), errors[c]))
            if method in full:
                fitted = full[method]
            elif settings["validation_order"] is None:
                fitted = _fit_candidate(modelled, method, settings, order=orders[method][0], covariates=x,
                                        seasonal_q=orders[method][1])
            else:  # the full order search; the seasonal MA as the validation fit's criterion decided (one fit less)
                fitted = _fit_candidate(modelled, method, settings, covariates=x, seasonal_q=orders[method][1])
            fitted.seasonal["validation_mae"] = errors
    if fitted is None:
        fitted = _fit_candidate(modelled, method, settings, covariates=x)
    fitted.log_scale = log_scale
    fitted.warnings = messages + fitted.warnings
    fitted.fit_seconds = time.process_time() - started
    return fitted


def _update_one_series(series_id: str, state: _FittedSeries, values: np.ndarray,
                       covariates: np.ndarray | None = None) -> _FittedSeries:
    """The state after ``values`` (the next observations), with every estimate kept.

    The new points go through the same transformation as the fitted history, with the fitted seasonal part
    (log when the model is on the log scale; the differences from the stored last values; the seasonal
    difference from the last cycle; minus the fitted Fourier terms at the new time indices; minus the MSTL
    cycles repeated, which then roll forward), and are appended to the series the ARIMA filters. ``predict``
    runs the state space filter with the fitted parameters over it (statsmodels' ``filter(params)``, what
    ``results.append(refit=False)`` does), so the forecast is the fitted model conditioned on the longer series.
    A series that regresses on covariates gets their values at the new points (``covariates``), differenced from
    the stored last rows like the series. A log-scale series' new values are positive (``_update`` refuses others).
    """
    modelled = np.log(values) if state.log_scale else np.asarray(values, float)
    seasonal = dict(state.seasonal)
    k = len(modelled)
    if "differencing" in seasonal:
        differencing = dict(seasonal["differencing"])
        d, D, m = differencing["d"], differencing["D"], differencing["m"]
        extended = np.r_[np.asarray(differencing["history"], float), modelled]
        new_adjusted = _difference(extended, d, D, m)
        differencing["history"] = extended[len(extended) - (d + m * D):].copy()
        seasonal["differencing"] = differencing
    elif seasonal["method"] == "seasonal_difference":
        m = seasonal["period"]
        extended = np.r_[np.asarray(seasonal["last_cycle"], float), modelled]
        new_adjusted = extended[m:] - extended[:-m]
        seasonal["last_cycle"] = extended[-m:].copy()
    else:
        new_adjusted = modelled - _seasonal_forecast(seasonal, state.n_obs, k)
        if seasonal["method"] == "mstl":
            seasonal["last_cycles"] = [np.roll(cycle, -k) for cycle in seasonal["last_cycles"]]
    exog, covariate_spec = state.exog, state.covariates
    if covariate_spec:
        if covariates is None:
            raise ForecasterError(f"arima: series {series_id!r} regresses on covariates; the new observations "
                                  "need their values")
        new_exog, covariate_spec = _extend_regressors(covariate_spec, covariates)
        exog = np.vstack([state.exog, new_exog])
    return _FittedSeries(order=state.order, trend=state.trend, params=state.params,
                         adjusted=np.r_[state.adjusted, new_adjusted], n_obs=state.n_obs + k, seasonal=seasonal,
                         log_scale=state.log_scale, warnings=[], fit_seconds=state.fit_seconds,
                         seasonal_order=state.seasonal_order, exog=exog, covariates=covariate_spec)


def _forecast_one_series(state: _FittedSeries, horizon: int, levels: list[int],
                         covariates: np.ndarray | None = None, effect_margin: float | None = None):
    """Mean and interval bounds over ``horizon``; ``covariates`` (horizon x known covariates) is the plan a
    series with covariate regressors forecasts from (the others ignore it)."""
    future_exog = None
    if state.covariates:
        if covariates is None:
            raise ForecasterError("arima: a series that regresses on covariates needs their planned values")
        future_exog, _ = _extend_regressors(state.covariates, covariates[:horizon])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = state.statsmodels_model().filter(state.params)
        if future_exog is not None and effect_margin is not None:
            future_exog = _bounded_effect(result, state.exog, future_exog, effect_margin)
        forecast = result.get_forecast(horizon, exog=future_exog)
    if "differencing" in state.seasonal:
        mean, std = _integrate_differences(state, result, np.asarray(forecast.predicted_mean), horizon)
        bounds = {level: (mean - normal_quantile(level) * std, mean + normal_quantile(level) * std)
                  for level in levels}
    elif state.seasonal["method"] == "seasonal_difference":
        mean, std = _integrate_seasonal_difference(state, result, np.asarray(forecast.predicted_mean), horizon)
        bounds = {level: (mean - normal_quantile(level) * std, mean + normal_quantile(level) * std)
                  for level in levels}
    else:
        seasonal = _seasonal_forecast(state.seasonal, state.n_obs, horizon)
        mean = np.asarray(forecast.predicted_mean) + seasonal
        bounds = {}
        for level in levels:
            interval = np.asarray(forecast.conf_int(alpha=1 - level / 100))
            bounds[level] = (interval[:, 0] + seasonal, interval[:, 1] + seasonal)
    if state.log_scale:
        # exp maps quantiles to quantiles, so the back-transformed mean is the median forecast
        mean = np.exp(mean)
        bounds = {level: (np.exp(lo), np.exp(hi)) for level, (lo, hi) in bounds.items()}
    return mean, bounds


def _bounded_effect(result, exog: np.ndarray, future_exog: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """The plan's regressor rows, each shrunk so that its effect ``x b`` stays within the range of the effects
    the history's rows had, widened by ``margin`` times that range on each side (the ``covariate_effect_margin``
    hyperparameter; 0, the default, is the history's range).

    A regression on covariates says nothing about values it never saw, and a linear one extrapolates without
    bound. Bounding each covariate separately does not help when they are nearly collinear (prices and a discount
    derived from them): their coefficients are large and of opposite signs, and only the history's combinations
    cancel. So the joint effect is bounded. On Stallion, a discount of 22 % against 3-8 % in the history gave a
    backtest forecast of 1.4e7 for a series of about 200.
    """
    names = list(result.model.exog_names or [])
    params = dict(zip(result.model.param_names, np.asarray(result.params, float)))
    beta = np.array([params.get(name, 0.0) for name in names[-future_exog.shape[1]:]], float)
    seen = np.asarray(exog, float) @ beta
    effect = np.asarray(future_exog, float) @ beta
    span = margin * (seen.max() - seen.min())
    bounded = np.clip(effect, seen.min() - span, seen.max() + span)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(effect != 0, bounded / effect, 1.0)
    return np.asarray(future_exog, float) * factor[:, None]


def _arma_polynomials(state: _FittedSeries, result) -> tuple[np.ndarray, np.ndarray]:
    """AR and MA lag polynomials (ascending powers of B) with the seasonal factors multiplied in."""
    params = dict(zip(result.param_names, result.params))
    p, _, q = state.order
    P, _, Q, m = state.seasonal_order
    ar = np.r_[1.0, -np.array([params.get(f"ar.L{i}", 0.0) for i in range(1, p + 1)])]
    ma = np.r_[1.0, np.array([params.get(f"ma.L{i}", 0.0) for i in range(1, q + 1)])]
    seasonal_ar, seasonal_ma = np.zeros(m * P + 1), np.zeros(m * Q + 1)
    seasonal_ar[0] = seasonal_ma[0] = 1.0
    for i in range(1, P + 1):
        seasonal_ar[i * m] = -params.get(f"ar.S.L{i * m}", 0.0)
    for i in range(1, Q + 1):
        seasonal_ma[i * m] = params.get(f"ma.S.L{i * m}", 0.0)
    return np.convolve(ar, seasonal_ar), np.convolve(ma, seasonal_ma)


def _integrate_differences(state: _FittedSeries, result, differenced_mean: np.ndarray, horizon: int):
    """Mean and standard deviation of y from forecasts of w = (1 - B)^d (1 - B^m)^D y.

    y[t] = w[t] - sum_k c_k y[t-k] with c the differencing polynomial, recursively from the stored last values.
    The forecast error of y has the MA(inf) weights of the ARMA with the AR polynomial times the differencing
    polynomial, so var(y error at h) = sigma2 * sum_{j<h} psi[j]^2 (what SARIMAX computes with the
    differences in its state).
    """
    from statsmodels.tsa.arima_process import arma2ma

    differencing = state.seasonal["differencing"]
    poly = _difference_polynomial(differencing["d"], differencing["D"], differencing["m"])
    lags = len(poly) - 1
    path = np.r_[np.asarray(differencing["history"], float), np.zeros(horizon)]
    for step in range(horizon):
        t = lags + step
        path[t] = differenced_mean[step] - float(np.dot(poly[1:], path[t - 1::-1][:lags])) if lags else \
            differenced_mean[step]
    ar, ma = _arma_polynomials(state, result)
    psi = arma2ma(np.convolve(ar, poly), ma, lags=horizon)
    sigma2 = float(dict(zip(result.param_names, result.params))["sigma2"])
    return path[lags:], np.sqrt(sigma2 * np.cumsum(psi ** 2))


def _integrate_seasonal_difference(state: _FittedSeries, result, differenced_mean: np.ndarray, horizon: int):
    """Mean and standard deviation of y from forecasts of z[t] = y[t] - y[t-m] (m = the stored period).

    y[n+h] = y[n+h-m] + z[n+h], recursively from the last observed cycle. The forecast error of y at h sums the
    z errors at h, h-m, h-2m, ...; with z's MA(inf) weights psi (d integrated in), y's weights are
    psi_y[j] = sum_k psi[j - k m], so var(y error at h) = sigma2 * sum_{j<h} psi_y[j]^2.
    """
    from statsmodels.tsa.arima_process import arma2ma

    m, last_cycle = state.seasonal["period"], state.seasonal["last_cycle"]
    mean = np.empty(horizon)
    for step in range(horizon):
        mean[step] = (last_cycle[step] if step < m else mean[step - m]) + differenced_mean[step]
    params = dict(zip(result.param_names, result.params))
    ar, ma = _arma_polynomials(state, result)  # with the seasonal MA at lag m where the model has one
    psi = arma2ma(ar, ma, lags=horizon)
    for _ in range(state.order[1]):  # each non-seasonal difference integrates the weights once
        psi = np.cumsum(psi)
    psi_y = psi.copy()
    for lag in range(m, horizon, m):  # seasonal integration
        psi_y[lag:] += psi[:horizon - lag]
    std = np.sqrt(params["sigma2"] * np.cumsum(psi_y ** 2))
    return mean, std
