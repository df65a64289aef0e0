"""Automatic exponential smoothing (ETS state space models, statsmodels ``ETSModel``) chosen per series by AICc.

What: for every series the candidate models of Hyndman et al. (2002, 2008) are fitted by maximum likelihood
(initial states estimated too) and the one with the smallest information criterion (AICc by default, R's
``forecast::ets`` and statsforecast's ``AutoETS``) forecasts it:

- error additive or multiplicative; trend none, additive or additive damped (damping in [0.8, 0.98], the
  statsmodels/R bounds); season none, additive or multiplicative with period ``effective_season_length``;
- as R's default ``restrict=TRUE``: no additive error with multiplicative season (numerically unstable),
  no multiplicative trend; multiplicative error or season only for strictly positive data;
- a season only when the series holds two full seasons plus ``SEASON_SLACK`` points, and the season is at most
  ``MAX_SEASONAL_STATES`` (24) long, as in R's ``ets`` and statsforecast's ``AutoETS`` (weekly data: none);
- R's rule for the sample size: a model with k parameters (smoothing parameters, initial states and the
  error variance) is only tried when ``n > k + 1`` (otherwise its AICc is undefined);
- initial states (``initialization``): estimated by maximum likelihood with the smoothing parameters (R's
  ``ets``), except that with ``auto`` (the default) a seasonal candidate of a series holding at least
  ``HEURISTIC_FROM_SEASONS`` (20) full seasons starts from statsmodels' heuristic states (Hyndman and
  Athanasopoulos' classical decomposition of the first five seasons) and only its smoothing parameters are
  estimated. Over many seasons the filter forgets where it started, so estimating m - 1 start values buys no
  accuracy and costs most of the fit: numerical gradients over 23 extra parameters for hourly data. Measured
  (``benchmarks/ets_initialization.py``, ``docs/benchmarks.md``): on M4 Hourly (29-40 seasons) and NN5 (105 weeks)
  the heuristic states are both far cheaper and more accurate; on M3 monthly and quarterly (4-16 seasons) the
  estimated ones are slightly more accurate, so short series keep them. The AICc counts the m - 1 states either
  way;
- a fit that is non-finite or raises is skipped; one that warns of non-convergence is only used when every
  candidate warned. The simple exponential smoothing model (ANN) is the last resort, so any series of
  ``min_length`` = 3 points is forecast (shorter ones go to the fallback, ``seasonal_naive``).

Why: ETS is the classic winner on low-frequency data (M3: Hyndman et al. 2008), cheap per series and it
gives model-based prediction intervals. The fit skips statsmodels' results object (its complex-step
Hessian costs more than the fit) by asking ``fit`` for the parameters only; the AICc is computed here
(R's definition).

Intervals: ``get_prediction`` of the fitted state space model. Exact (analytic) for the additive-error
models without multiplicative parts; the others are simulated (``simulation_paths`` sample paths, numpy
generator seeded with ``random_state`` per series, so forecasts are reproducible). The point forecast is
the model's conditional mean path (zero future errors), as in R.

Fitted state per series: the model spec, its parameters and the series itself (refiltered at predict: one
pass of the smoother), so the pickled model is small and needs no statsmodels results object.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import concat_forecasts, SeriesForecast, map_series, split_series
from ts_kedro.forecasters.base import Forecaster, ForecasterError
from ts_kedro.frequency import effective_season_length

logger = logging.getLogger(__name__)

CRITERIA = ("aicc", "aic", "bic")
INITIALIZATIONS = ("auto", "estimated", "heuristic")
#: ``initialization: auto`` gives a seasonal candidate heuristic initial states from this many full seasons on
HEURISTIC_FROM_SEASONS = 20  # not a period: a series-length rule measured in benchmarks/ets_initialization.py
#: statsmodels' heuristic needs two seasons; five make its start values independent of later observations
HEURISTIC_MIN_SEASONS = 5
#: points beyond two full seasons a series needs before a seasonal model is tried
SEASON_SLACK = 3
#: longest season given its own states, as R's forecast::ets and statsforecast's AutoETS: with more (weekly data's
#: 52) the m-1 free initial states overfit, and the seasonal pattern is left to the non-seasonal model's level
MAX_SEASONAL_STATES = 24  # not a period: a model-size limit


@dataclass(frozen=True)
class ETSSpec:
    """One ETS model: error/trend/season types (statsmodels names), damping and the seasonal period."""

    error: str  # "add" | "mul"
    trend: str | None  # None | "add"
    damped: bool
    seasonal: str | None  # None | "add" | "mul"
    period: int
    initialization: str = "estimated"  # initial states: "estimated" (with the parameters) | "heuristic" (see module)

    @property
    def label(self) -> str:
        """R's notation, e.g. ``ETS(M,Ad,M)``."""
        short = {None: "N", "add": "A", "mul": "M"}
        trend = short[self.trend] + ("d" if self.damped else "")
        return f"ETS({short[self.error]},{trend},{short[self.seasonal]})"

    @property
    def n_parameters(self) -> int:
        """Smoothing parameters + initial states + the error variance (R's count)."""
        k = 2  # alpha, l0
        if self.trend:
            k += 2 + int(self.damped)  # beta, b0 (+ phi)
        if self.seasonal:
            k += 1 + self.period - 1  # gamma, m-1 free initial seasonal states
        return k + 1  # sigma

    def model(self, values: np.ndarray):
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        # a RangeIndex Series: statsmodels' prediction results need an index
        return ETSModel(pd.Series(values), error=self.error, trend=self.trend, damped_trend=self.damped,
                        seasonal=self.seasonal, seasonal_periods=self.period if self.seasonal else None,
                        initialization_method=self.initialization)


@dataclass
class _FittedSeries:
    spec: ETSSpec
    params: np.ndarray
    values: np.ndarray
    criterion: float
    n_candidates: int
    fit_seconds: float = 0.0


def seasonal_initialization(n: int, period: int, initialization: str = "auto") -> str:
    """How a seasonal candidate of a series of ``n`` points gets its initial states (see the module docstring).

    ``auto``: heuristic from ``HEURISTIC_FROM_SEASONS`` full seasons on, estimated below. ``heuristic`` is only
    honoured where statsmodels can compute it (two seasons and 10 + 2 * (period // 2) points), and always from the
    first five seasons at most, so appending observations (``update``) leaves a fitted model's initial states as
    they were."""
    feasible = n >= max(HEURISTIC_MIN_SEASONS * period, 10 + 2 * (period // 2))
    if initialization == "heuristic":
        return "heuristic" if feasible else "estimated"
    if initialization == "auto":
        return "heuristic" if feasible and n >= HEURISTIC_FROM_SEASONS * period else "estimated"
    return "estimated"


def candidate_specs(values: np.ndarray, season_length: int, allow_multiplicative: bool = True,
                    initialization: str = "auto") -> list[ETSSpec]:
    """The ETS models tried on one series (see the module docstring for the rules), simplest first."""
    n = len(values)
    positive = bool(np.all(values > 0)) and allow_multiplicative
    m = effective_season_length(n, season_length)
    seasonal_ok = 1 < m <= MAX_SEASONAL_STATES and n >= 2 * m + SEASON_SLACK and np.ptp(values) > 0
    errors = ["add", "mul"] if positive else ["add"]
    seasons = [None] + (["add"] + (["mul"] if positive else []) if seasonal_ok else [])
    specs = []
    for seasonal in seasons:
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            for error in errors:
                if error == "add" and seasonal == "mul":
                    continue
                spec = ETSSpec(error, trend, damped, seasonal, m if seasonal else 1,
                               seasonal_initialization(n, m, initialization) if seasonal else "estimated")
                if n > spec.n_parameters + 1:
                    specs.append(spec)
    return specs


def information_criterion(llf: float, k: int, n: int, criterion: str) -> float:
    aic = -2.0 * llf + 2.0 * k
    if criterion == "aic":
        return aic
    if criterion == "bic":
        return -2.0 * llf + np.log(n) * k
    return aic + 2.0 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf


def _fit_spec(spec: ETSSpec, values: np.ndarray, criterion: str) -> tuple[np.ndarray, float, bool]:
    """Parameters, criterion value and whether the optimiser warned (non-convergence)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    model = spec.model(values)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = np.asarray(model.fit(disp=False, return_params=True), float)
        llf = float(model.loglike(params))
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return params, information_criterion(llf, spec.n_parameters, len(values), criterion), warned


def _fit_one_series(series_id: str, values: np.ndarray, settings: dict) -> _FittedSeries:
    started = time.process_time()
    specs = candidate_specs(values, settings["season_length"], settings["allow_multiplicative"],
                            settings["initialization"])
    best = None  # (warned, criterion, spec, params): converged fits first, then the smallest criterion
    for spec in specs:
        try:
            params, value, warned = _fit_spec(spec, values, settings["criterion"])
        except (ValueError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError) as exc:
            logger.debug("ets %s: %s failed: %s", series_id, spec.label, exc)
            continue
        if not (np.isfinite(value) and np.all(np.isfinite(params))):
            continue
        if best is None or (warned, value) < (best[0], best[1]):
            best = (warned, value, spec, params)
    if best is None:
        # too short for R's rule (n = 3) or every fit failed: simple exponential smoothing, AICc undefined
        spec = ETSSpec("add", None, False, None, 1)
        try:
            params, value, _ = _fit_spec(spec, values, settings["criterion"])
            if not np.all(np.isfinite(params)):
                raise ValueError("non-finite parameters")
        except (ValueError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError):
            params, value = np.array([1.0 - 1e-4, values[0]]), np.nan  # ~ the naive forecast
        best = (False, value, spec, params)
        if len(specs):
            logger.warning("ets %s: every candidate model failed; using %s", series_id, spec.label)
    _, value, spec, params = best
    return _FittedSeries(spec=spec, params=params, values=np.asarray(values, float), criterion=float(value),
                         n_candidates=len(specs), fit_seconds=time.process_time() - started)


def _predict_one_series(series_id: str, state: _FittedSeries, horizon: int, levels: list[int],
                        settings: dict) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    n = len(state.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = state.spec.model(state.values).smooth(state.params)
        kwargs = {}
        if state.spec.error == "mul" or state.spec.seasonal == "mul":
            # the same seed for every series: a series' forecast does not depend on the rest of the panel
            kwargs = {"simulate_repetitions": settings["simulation_paths"],
                      "rng": np.random.default_rng(settings["random_state"])}
        prediction = results.get_prediction(start=n, end=n + horizon - 1, **kwargs)
        mean = np.asarray(prediction.predicted_mean, float)
        bounds = {}
        for level in levels:
            frame = prediction.summary_frame(alpha=1.0 - level / 100.0)
            bounds[level] = (frame["pi_lower"].to_numpy(float), frame["pi_upper"].to_numpy(float))
    return mean, bounds


class ETSForecaster(Forecaster):
    """Automatic ETS per series (AICc over the admissible ETS models); see the module docstring.

    Hyperparameters: ``information_criterion`` (aicc|aic|bic), ``allow_multiplicative`` (multiplicative
    error/season for positive data), ``simulation_paths`` and ``random_state`` (simulated intervals),
    ``n_jobs`` (-1 = all cores), ``initialization`` (auto|estimated|heuristic: initial seasonal states, see the
    module docstring; ``heuristic`` applies from five seasons on).
    """

    name = "ets"
    per_series_state = True
    fallback = "seasonal_naive"

    def __init__(self, freq: str, season_length: int | None = None, information_criterion: str = "aicc",
                 allow_multiplicative: bool = True, simulation_paths: int = 1000, random_state: int = 0,
                 n_jobs: int = -1, initialization: str = "auto"):
        super().__init__(freq, season_length, information_criterion=information_criterion,
                         allow_multiplicative=allow_multiplicative, simulation_paths=simulation_paths,
                         random_state=random_state, n_jobs=n_jobs, initialization=initialization)
        if information_criterion not in CRITERIA:
            raise ForecasterError(f"ets: information_criterion must be one of {CRITERIA}, got {information_criterion!r}")
        if not isinstance(allow_multiplicative, bool):
            raise ForecasterError(f"ets: allow_multiplicative must be true or false, got {allow_multiplicative!r}")
        if isinstance(simulation_paths, bool) or int(simulation_paths) != simulation_paths or simulation_paths < 100:
            raise ForecasterError(f"ets: simulation_paths must be an integer >= 100, got {simulation_paths!r}")
        if isinstance(random_state, bool) or int(random_state) != random_state or random_state < 0:
            raise ForecasterError(f"ets: random_state must be a non-negative integer, got {random_state!r}")
        if initialization not in INITIALIZATIONS:
            raise ForecasterError(f"ets: initialization must be one of {INITIALIZATIONS}, got {initialization!r}")
        if isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs == 0:
            raise ForecasterError(f"ets: n_jobs must be a non-zero integer (-1 = all cores), got {n_jobs!r}")
        self.information_criterion = information_criterion
        self.allow_multiplicative = allow_multiplicative
        self.simulation_paths = int(simulation_paths)
        self.random_state = int(random_state)
        self.n_jobs = int(n_jobs)
        self.initialization = initialization

    @property
    def min_length(self) -> int:
        return 3

    def n_parameters(self) -> int:
        return sum(state.spec.n_parameters for state in getattr(self, "fitted_", {}).values())

    def _settings(self) -> dict:
        return dict(season_length=self.season_length, criterion=self.information_criterion,
                    allow_multiplicative=self.allow_multiplicative, simulation_paths=self.simulation_paths,
                    random_state=self.random_state,
                    # a model pickled before the hyperparameter existed estimated every start state
                    initialization=getattr(self, "initialization", "estimated"))

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        settings = self._settings()
        items = [(sid, values, settings) for sid, values in split_series(panel).items()]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="ets fit")
        self.fitted_: dict[str, _FittedSeries] = {sid: state for (sid, _, _), state in zip(items, results)}
        self.model_by_series_ = {sid: state.spec.label for sid, state in self.fitted_.items()}
        logger.info("ets: fitted %d series in %.1f s (models: %s)", len(self.fitted_), time.perf_counter() - started,
                    pd.Series(self.model_by_series_).value_counts().head(5).to_dict())

    def _update(self, new_observations: pd.DataFrame) -> None:
        # the state space filter runs over the stored series at predict time with the fitted parameters (initial
        # states included), so appending the new values is the filter run forward: nothing is re-estimated.
        # A multiplicative model needs positive data; a new value <= 0 is refused for it (a refit decides anew).
        series = split_series(new_observations)
        refused = {sid: f"fitted with the multiplicative {self.fitted_[sid].spec.label}, a new observation is "
                        f"{float(values[values <= 0][0])!r} (<= 0)"
                   for sid, values in series.items() if np.any(values <= 0)
                   and (self.fitted_[sid].spec.error == "mul" or self.fitted_[sid].spec.seasonal == "mul")}
        if refused:
            raise ForecasterError.refused_update(self.name, refused)
        for series_id, values in series.items():
            state = self.fitted_[series_id]
            self.fitted_[series_id] = _FittedSeries(spec=state.spec, params=state.params,
                                                    values=np.r_[state.values, values], criterion=state.criterion,
                                                    n_candidates=state.n_candidates, fit_seconds=state.fit_seconds)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        settings = self._settings()
        items = [(sid, self.fitted_[sid], horizon, levels, settings) for sid in self.fitted_series_ids_]
        # refiltering is cheap: in-process unless there are many series
        n_jobs = self.n_jobs if len(items) > 50 else 1
        outputs = map_series(_predict_one_series, items, n_jobs, desc="ets predict")
        frames = [SeriesForecast(sid, self.future_index(sid, horizon), mean, bounds)
                  for sid, (mean, bounds) in zip(self.fitted_series_ids_, outputs)]
        return concat_forecasts(frames)
