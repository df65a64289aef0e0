"""Prophet per series: seasonalities and their Fourier orders from the frequency, optional holidays, regressors
for the covariates known in advance, sampled intervals."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import SeriesForecast, concat_forecasts, map_series
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, Forecaster, ForecasterError

logger = logging.getLogger(__name__)

PROPHET_MAX_SPAN_YEARS = 250  # of history: Prophet's ds - start is a Timedelta (292 years), the forecast must fit too
_DAY, _WEEK, _YEAR = pd.Timedelta(days=1), pd.Timedelta(weeks=1), pd.Timedelta(days=365.25)
_CYCLES = {"daily": _DAY, "weekly": _WEEK, "yearly": _YEAR}
# Prophet's own default Fourier orders (upper bounds here; the grid and the history lower them)
_PROPHET_ORDERS = {"daily": 4, "weekly": 3, "yearly": 10}


class ProphetForecaster(Forecaster):
    """One Prophet model per series (fitted in parallel with joblib).

    Seasonalities: ``seasonalities`` (``{daily, weekly, yearly} -> bool``; ``build_forecaster`` passes the
    profile's ``prophet_seasonalities``; None = derived from the grid: a cycle longer than 1.5 steps). Per series a
    seasonality is used only when the series covers two of its cycles (Prophet's own rule; coverage = n steps).
    Fourier order of each seasonality: Prophet's default (daily 4, weekly 3, yearly 10) capped at
    ``floor(steps_per_cycle / 2)``, the number of harmonics a grid of ``steps_per_cycle`` points per cycle can
    tell apart (Nyquist): higher harmonics alias onto lower ones and only add free coefficients. Monthly data get
    order 6 (11 effective coefficients, a full seasonal profile) instead of 10, quarterly 2 (3 coefficients)
    instead of 10; finer grids keep Prophet's defaults. The cap ``floor(m/2) - 1`` was measured too (it cannot
    represent a full quarterly profile and lost on M3 quarterly; ``benchmarks/family_check_prophet_lstm.py``).
    ``seasonality_mode="auto"`` (default): multiplicative for a series of positive values, additive otherwise
    (a multiplicative seasonality scales with a trend that may cross zero).
    Intervals for all levels come from ONE set of ``uncertainty_samples`` posterior-predictive draws
    (``predictive_samples``) turned into quantiles: one fit and one sampling per series whatever the number of
    levels, instead of one fit per ``interval_width``. ``mean`` is Prophet's point forecast ``yhat``.
    Sampling is seeded (``seed``) so a saved model predicts the same intervals in any process.

    Covariates known in advance (``known_covariates``): one ``add_regressor`` each, with Prophet's defaults (prior
    scale 10, standardised unless binary, the seasonality's mode), so a holiday or promotion dummy of the panel is
    an extra regressor beside the country holidays (``holidays_country``). Per series a covariate constant in its
    history (a dummy that never fired) is left out: its coefficient would rest on the prior alone. The forecast
    reads the plan over the horizon (``set_future_covariates``); an update carries the new points' covariate
    values. Covariates not known in advance have no values over the horizon and are ignored
    (``ignored_covariates_``). A plan beyond what the history saw is bounded as ARIMA's is: per forecast row, the
    joint effect of the regressors (``sum coef * (x - center)``, per regressor mode) is kept within the range of
    the effects of the history's rows, widened by ``covariate_effect_margin`` times that range on each side (null:
    unbounded); the row's plan is shrunk towards the regressors' centres to get there (``_bounded_plan``).

    Hyperparameters: ``seasonalities``, ``seasonality_mode`` (auto|additive|multiplicative), ``changepoint_prior_scale``,
    ``seasonality_prior_scale``, ``holidays_country`` (e.g. "US", None = no holidays),
    ``uncertainty_samples`` (draws for the intervals), ``seed``, ``n_jobs`` (-1 = all cores), ``known_covariates``
    (panel columns known in advance; None: the training pipeline fills in the covariates declared
    ``known_in_advance``, empty: none), ``covariate_effect_margin`` (0.0; null: plans are not bounded).

    Series shorter than ``min_length`` (two seasons, at least three points) are served by ``fallback`` (ETS).
    Measurements: ``benchmarks/family_check_prophet_lstm.py``.
    """

    name = "prophet"
    per_series_state = True
    fallback = "ets"
    supports_covariates = True

    def __init__(self, freq: str = "h", season_length: int | None = None,
                 seasonalities: dict[str, bool] | None = None, seasonality_mode: str = "auto",
                 changepoint_prior_scale: float = 0.05, seasonality_prior_scale: float = 10.0,
                 holidays_country: str | None = None, uncertainty_samples: int = 200, seed: int = 0,
                 n_jobs: int = -1, known_covariates: list[str] | None = None,
                 covariate_effect_margin: float | None = 0.0):
        super().__init__(freq, season_length, seasonalities=seasonalities, seasonality_mode=seasonality_mode,
                         changepoint_prior_scale=changepoint_prior_scale,
                         seasonality_prior_scale=seasonality_prior_scale, holidays_country=holidays_country,
                         uncertainty_samples=uncertainty_samples, seed=seed, n_jobs=n_jobs,
                         known_covariates=known_covariates, covariate_effect_margin=covariate_effect_margin)
        if covariate_effect_margin is not None and (isinstance(covariate_effect_margin, bool)
                                                    or float(covariate_effect_margin) < 0):
            raise ForecasterError(f"prophet: covariate_effect_margin must be null or >= 0, got "
                                  f"{covariate_effect_margin!r}")
        self.covariate_effect_margin = None if covariate_effect_margin is None else float(covariate_effect_margin)
        if seasonality_mode not in ("auto", "additive", "multiplicative"):
            raise ForecasterError(f"prophet: seasonality_mode must be auto, additive or multiplicative, "
                                  f"got {seasonality_mode!r}")
        if seasonalities is not None:
            unknown = sorted(set(seasonalities) - set(_CYCLES))
            if unknown:
                raise ForecasterError(f"prophet: seasonalities keys must be among {sorted(_CYCLES)}, got {unknown}")
        self.seasonalities = None if seasonalities is None else {k: bool(v) for k, v in seasonalities.items()}
        if int(uncertainty_samples) < 20:
            raise ForecasterError(f"prophet: uncertainty_samples={uncertainty_samples} is too few for quantiles; use >= 20")
        self.seasonality_mode = seasonality_mode
        self.changepoint_prior_scale = float(changepoint_prior_scale)
        self.seasonality_prior_scale = float(seasonality_prior_scale)
        self.holidays_country = holidays_country
        self.uncertainty_samples = int(uncertainty_samples)
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.known_covariates = list(known_covariates or [])

    @property
    def min_length(self) -> int:
        from ts_kedro.frequency import MIN_CYCLES

        # two seasons so that the seasonality is estimable; a trend needs a few points even without a season
        return max(MIN_CYCLES * self.season_length, 3)

    def unfit_reason(self, values: np.ndarray, timestamps: np.ndarray | None = None) -> str | None:
        reason = super().unfit_reason(values, timestamps)
        if reason is None and timestamps is not None and len(timestamps) > 1:
            # Prophet measures time as ds - first ds in a pandas Timedelta (at most 292 years): a longer history
            # (yearly sunspots since 1700) overflows inside Prophet; the fallback serves it
            years = _span_years(timestamps)
            if years > PROPHET_MAX_SPAN_YEARS:
                return _span_reason(years)
        return reason

    def n_parameters(self) -> int:
        # trend (k, m, one delta per changepoint) + 2 Fourier coefficients per order of each seasonality
        total = 0
        for params in getattr(self, "n_parameters_", {}).values():
            total += params
        return total

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        step = _grid_step(self.freq)
        config = dict(seasonality_mode=self.seasonality_mode, changepoint_prior_scale=self.changepoint_prior_scale,
                      seasonality_prior_scale=self.seasonality_prior_scale, holidays_country=self.holidays_country,
                      step=step, cycles=_seasonality_plan(self.freq, self.seasonalities),
                      regressors=list(self.known_covariates))
        items = [(sid, self._prophet_frame(group), config)
                 for sid, group in panel.sort_values([SERIES_ID, TIMESTAMP]).groupby(SERIES_ID, sort=False)]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="prophet fit")
        self.models_: dict[str, str] = {}  # Prophet's own JSON serialisation: portable across processes
        self.n_parameters_: dict[str, int] = {}
        self.seasonalities_: dict[str, list[str]] = {}
        #: per series, the known covariates that are its regressors (those constant in its history are left out)
        self.covariates_used_: dict[str, list[str]] = {}
        #: per series, the first timestamp of its fit: an update must keep the span Prophet can hold (a dict keyed
        #: by the fitted series, so ``restricted_to`` and ``merged_with`` carry it like the other per-series state)
        self.first_timestamp_: dict[str, pd.Timestamp] = panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].min().to_dict()
        for (series_id, _, _), (model_json, n_params, seasonalities, regressors) in zip(items, results):
            self.models_[series_id], self.n_parameters_[series_id] = model_json, n_params
            self.seasonalities_[series_id] = seasonalities
            self.covariates_used_[series_id] = regressors
        logger.info("prophet: fitted %d series in %.2f s wall; seasonalities %s%s", len(items),
                    time.perf_counter() - started, next(iter(self.seasonalities_.values())),
                    f"; {sum(map(bool, self.covariates_used_.values()))} series with regressors of "
                    f"{self.known_covariates}" if self.known_covariates else "")

    def _first_timestamp(self, series_id) -> pd.Timestamp:
        starts = getattr(self, "first_timestamp_", None) or {}
        if series_id in starts:
            return starts[series_id]
        from prophet.serialize import model_from_json  # a model pickled before first_timestamp_ was kept

        return pd.Timestamp(model_from_json(self.models_[series_id]).history["ds"].min())

    def _prophet_frame(self, group: pd.DataFrame) -> pd.DataFrame:
        """One series' rows as Prophet reads them: ``ds``, ``y`` and the known covariates."""
        return (group[[TIMESTAMP, VALUE, *self.known_covariates]].rename(columns={TIMESTAMP: "ds", VALUE: "y"})
                .reset_index(drop=True))

    def _update(self, new_observations: pd.DataFrame) -> None:
        started = time.perf_counter()
        # a series whose history would outgrow Prophet's time arithmetic (``unfit_reason``) is refused, all named
        # at once: refitted, the fallback serves it (a backtest of yearly sunspots since 1700 updated past 1950)
        ends = new_observations.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        refused = {}
        for series_id, end in ends.items():
            years = _span_years([self._first_timestamp(series_id), end])
            if years > PROPHET_MAX_SPAN_YEARS:
                refused[series_id] = _span_reason(years)
        if refused:
            raise ForecasterError.refused_update(self.name, refused)
        items = [(self.models_[sid], self._prophet_frame(group))
                 for sid, group in new_observations.sort_values([SERIES_ID, TIMESTAMP]).groupby(SERIES_ID, sort=False)]
        ids = list(new_observations.sort_values([SERIES_ID, TIMESTAMP])[SERIES_ID].unique())
        results = map_series(_update_one_series, items, self.n_jobs, desc="prophet update")
        for series_id, model_json in zip(ids, results):
            self.models_[series_id] = model_json
        logger.info("prophet: warm-started %d series in %.2f s", len(ids), time.perf_counter() - started)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        started = time.perf_counter()
        items = []
        for sid in self.fitted_series_ids_:
            future = pd.DataFrame({"ds": self.future_index(sid, horizon)})
            if self.known_covariates:  # the plan, even for a series whose covariates were all constant
                future[self.known_covariates] = self.future_covariate_values(sid, future["ds"])
            items.append((self.models_[sid], future, levels, self.uncertainty_samples, self.seed,
                          getattr(self, "covariate_effect_margin", None)))  # older pickles: unbounded, as fitted
        results = map_series(_predict_one_series, items, self.n_jobs, desc="prophet predict")
        frames = [SeriesForecast(sid, pd.DatetimeIndex(future["ds"]), mean, bounds)
                  for sid, (_, future, *_), (mean, bounds) in zip(self.fitted_series_ids_, items, results)]
        logger.info("prophet: predicted %d series in %.2f s", len(frames), time.perf_counter() - started)
        return concat_forecasts(frames)


def _span_years(timestamps) -> float:
    """Years between the first and last of ``timestamps``, computed in float (a Timedelta overflows past 292)."""
    nanoseconds = np.asarray(timestamps, dtype="datetime64[ns]").astype(np.int64).astype(float)
    return float((nanoseconds.max() - nanoseconds.min()) / 1e9 / 86400 / 365.25)


def _span_reason(years: float) -> str:
    return (f"the history spans {years:.0f} years; prophet's time arithmetic holds at most "
            f"{PROPHET_MAX_SPAN_YEARS} (with room for the horizon)")


def _grid_step(freq: str) -> pd.Timedelta:
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        anchor = pd.Timestamp("2000-01-01")
        return (anchor + offset) - anchor
    except (ValueError, TypeError) as exc:
        raise ForecasterError(f"prophet: cannot interpret freq={freq!r} as a pandas offset alias: {exc}") from exc


def _seasonality_plan(freq: str, wanted: dict[str, bool] | None) -> dict[str, int]:
    """Seasonality -> Fourier order for this grid (absent: not modelled); see the class docstring.

    Steps per cycle come from the frequency profile's candidate periods (the cycle's nominal length in grid steps
    picks the nearest candidate, so a month-start grid gets exactly 12 steps a year, not 365.25 / 31).
    """
    from ts_kedro.frequency import candidate_periods

    periods = candidate_periods(freq)
    step = _grid_step(freq)
    plan = {}
    for name, cycle in _CYCLES.items():
        approx = cycle / step
        if approx <= 1.5 or not periods or (wanted is not None and not wanted.get(name, False)):
            continue
        steps_per_cycle = min(periods, key=lambda p: abs(np.log(p / approx)))
        if abs(np.log(steps_per_cycle / approx)) > np.log(1.5):  # no candidate near this cycle
            steps_per_cycle = approx
        plan[name] = int(max(1, min(_PROPHET_ORDERS[name], np.floor(steps_per_cycle / 2))))
    return plan


def _quiet_stan_logging() -> None:
    # cmdstanpy logs every optimisation at INFO and configures its logger (level DEBUG) on first use; trigger that
    # set-up now, then lower it. Runs in every joblib worker process too.
    from cmdstanpy.utils import get_logger

    get_logger()
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fit_one_series(series_id: str, history: pd.DataFrame, config: dict) -> tuple[str, int, list[str], list[str]]:
    _quiet_stan_logging()
    from prophet import Prophet
    from prophet.serialize import model_to_json

    from ts_kedro.frequency import MIN_CYCLES

    step = config["step"]
    covered = history["ds"].iloc[-1] - history["ds"].iloc[0] + step  # n observations cover n steps
    orders = {name: order for name, order in config["cycles"].items() if covered >= MIN_CYCLES * _CYCLES[name]}
    seasonalities = {name: name in orders for name in _CYCLES}
    mode = config["seasonality_mode"]
    if mode == "auto":
        mode = "multiplicative" if (history["y"] > 0).all() else "additive"
    model = Prophet(
        daily_seasonality=orders.get("daily", False), weekly_seasonality=orders.get("weekly", False),
        yearly_seasonality=orders.get("yearly", False), seasonality_mode=mode,
        changepoint_prior_scale=config["changepoint_prior_scale"],
        seasonality_prior_scale=config["seasonality_prior_scale"], uncertainty_samples=0,
    )
    if config["holidays_country"]:
        model.add_country_holidays(country_name=config["holidays_country"])
    regressors = [name for name in config["regressors"] if history[name].nunique() > 1]
    for name in regressors:
        model.add_regressor(name)
    model.fit(history[["ds", "y", *regressors]])
    n_params = (2 + model.n_changepoints + sum(2 * s["fourier_order"] for s in model.seasonalities.values())
                + len(regressors))
    return model_to_json(model), int(n_params), [name for name, used in seasonalities.items() if used], regressors


def _warm_start_params(model) -> dict:
    """The fitted MAP parameters as Stan's initial values (Prophet's documented warm start)."""
    return {"k": float(model.params["k"][0][0]), "m": float(model.params["m"][0][0]),
            "sigma_obs": float(model.params["sigma_obs"][0][0]),
            "delta": np.asarray(model.params["delta"][0]), "beta": np.asarray(model.params["beta"][0])}


def _update_one_series(model_json: str, new_history: pd.DataFrame) -> str:
    """The same Prophet model (seasonalities, orders, mode, priors, holidays, number of changepoints) fitted on its
    stored history plus ``new_history``, started from the previous fit's parameters (Prophet's "warm start").

    Prophet has no filter to run forward: its trend and changepoints are a regression on the whole history, so a
    forecast from new data needs a fit; started from the previous optimum the optimiser needs few iterations.
    The model stays the one that was fitted (no seasonality is added because the history got longer).
    """
    _quiet_stan_logging()
    from prophet import Prophet
    from prophet.serialize import model_from_json, model_to_json

    previous = model_from_json(model_json)
    model = Prophet(
        daily_seasonality=False, weekly_seasonality=False, yearly_seasonality=False,
        seasonality_mode=previous.seasonality_mode, changepoint_prior_scale=previous.changepoint_prior_scale,
        seasonality_prior_scale=previous.seasonality_prior_scale, n_changepoints=previous.n_changepoints,
        changepoint_range=previous.changepoint_range, uncertainty_samples=0,
    )
    for name, spec in previous.seasonalities.items():
        model.add_seasonality(name=name, period=spec["period"], fourier_order=spec["fourier_order"],
                              prior_scale=spec["prior_scale"], mode=spec["mode"])
    if previous.country_holidays:
        model.add_country_holidays(country_name=previous.country_holidays)
    regressors = list(previous.extra_regressors)
    old = previous.history[["ds", "y", *regressors]].copy()
    for name, spec in previous.extra_regressors.items():
        model.add_regressor(name, prior_scale=spec["prior_scale"], standardize=spec["standardize"], mode=spec["mode"])
        old[name] = old[name] * spec["std"] + spec["mu"]  # Prophet keeps its history's regressors standardised
    missing = [name for name in regressors if name not in new_history]
    if missing:
        raise ForecasterError(f"prophet: new observations lack the regressor column(s) {missing}")
    history = pd.concat([old, new_history[["ds", "y", *regressors]]], ignore_index=True)
    model.fit(history, init=_warm_start_params(previous))
    return model_to_json(model)


def _bounded_plan(model, future: pd.DataFrame, margin: float | None) -> pd.DataFrame:
    """The plan's regressor rows, shrunk towards the regressors' centres so that each row's joint effect
    (``sum coef_j * (x_j - center_j)`` over the regressors of one mode) stays within the range of the effects of
    the history's rows, widened by ``margin`` times that range on each side; None: the plan as it is.

    Same reason as ARIMA's ``_bounded_effect``: a linear regression extrapolates without bound, and nearly
    collinear covariates (prices and a discount derived from them) have large coefficients of opposite signs
    that only the history's combinations cancel, so the joint effect is bounded, not each covariate.
    """
    if margin is None or not model.extra_regressors:
        return future
    from prophet.utilities import regressor_coefficients

    coefficients = regressor_coefficients(model)
    future = future.copy()
    for _, group in coefficients.groupby("regressor_mode"):
        names = group["regressor"].tolist()
        coef, center = group["coef"].to_numpy(float), group["center"].to_numpy(float)
        std = np.array([model.extra_regressors[name]["std"] for name in names], float)
        mu = np.array([model.extra_regressors[name]["mu"] for name in names], float)
        seen = (model.history[names].to_numpy(float) * std + mu - center) @ coef  # the history is standardised
        plan = future[names].to_numpy(float) - center
        effect = plan @ coef
        span = margin * (seen.max() - seen.min())
        bounded = np.clip(effect, seen.min() - span, seen.max() + span)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(effect != 0, bounded / effect, 1.0)
        future[names] = center + plan * factor[:, None]
    return future


def _predict_one_series(model_json: str, future: pd.DataFrame, levels: list[int], n_samples: int, seed: int,
                        effect_margin: float | None = None):
    """Point forecast and interval bounds at ``future["ds"]`` (with the planned values of any regressor,
    bounded by ``_bounded_plan``)."""
    _quiet_stan_logging()
    from prophet.serialize import model_from_json

    model = model_from_json(model_json)
    future = _bounded_plan(model, future, effect_margin)
    model.uncertainty_samples = 0  # the point forecast needs no sampling
    mean = model.predict(future)["yhat"].to_numpy()
    bounds = {}
    if levels:
        model.uncertainty_samples = n_samples
        state = np.random.get_state()
        np.random.seed(seed)  # Prophet samples with the global numpy generator
        try:
            draws = model.predictive_samples(future)["yhat"]
        finally:
            np.random.set_state(state)
        for level in levels:
            lo, hi = np.quantile(draws, [0.5 - level / 200, 0.5 + level / 200], axis=1)
            bounds[level] = (lo, hi)
    return mean, bounds
