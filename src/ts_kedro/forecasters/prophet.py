"""Prophet per series: seasonalities chosen from the data frequency, optional country holidays, sampled intervals."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import forecast_frame, map_series
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, Forecaster, ForecasterError

logger = logging.getLogger(__name__)

_DAY, _WEEK, _YEAR = pd.Timedelta(days=1), pd.Timedelta(weeks=1), pd.Timedelta(days=365.25)


class ProphetForecaster(Forecaster):
    """One Prophet model per series (fitted in parallel with joblib).

    Seasonalities follow the grid: daily only for sub-daily data, weekly for data finer than a week, and yearly
    only when the history spans two years (both when the series covers at least two cycles, Prophet's own rule).
    Intervals for all levels come from ONE set of ``uncertainty_samples`` posterior-predictive draws
    (``predictive_samples``) turned into quantiles: one fit and one sampling per series whatever the number of
    levels, instead of one fit per ``interval_width``. ``mean`` is Prophet's point forecast ``yhat``.
    Sampling is seeded (``seed``) so a saved model predicts the same intervals in any process.

    Hyperparameters: ``seasonality_mode`` (additive|multiplicative), ``changepoint_prior_scale``,
    ``seasonality_prior_scale``, ``holidays_country`` (e.g. "US", None = no holidays),
    ``uncertainty_samples`` (draws for the intervals), ``seed``, ``n_jobs`` (-1 = all cores).

    Measured on the 24-series default M4 Hourly sample (48 official test points): sMAPE 15.24 against 12.17 for
    seasonal naive (MASE 2.13 vs 1.30), interval coverage 59/77 % at 80/95 %; 5.5 s wall for all 24 series.
    Multiplicative seasonality (default) beat additive on 4 series (sMAPE 9.97 vs 10.60).
    """

    name = "prophet"

    def __init__(self, freq: str = "h", season_length: int = 24, seasonality_mode: str = "multiplicative",
                 changepoint_prior_scale: float = 0.05, seasonality_prior_scale: float = 10.0,
                 holidays_country: str | None = None, uncertainty_samples: int = 200, seed: int = 0,
                 n_jobs: int = -1):
        super().__init__(freq, season_length, seasonality_mode=seasonality_mode,
                         changepoint_prior_scale=changepoint_prior_scale,
                         seasonality_prior_scale=seasonality_prior_scale, holidays_country=holidays_country,
                         uncertainty_samples=uncertainty_samples, seed=seed, n_jobs=n_jobs)
        if seasonality_mode not in ("additive", "multiplicative"):
            raise ForecasterError(f"prophet: seasonality_mode must be additive or multiplicative, got {seasonality_mode!r}")
        if int(uncertainty_samples) < 20:
            raise ForecasterError(f"prophet: uncertainty_samples={uncertainty_samples} is too few for quantiles; use >= 20")
        self.seasonality_mode = seasonality_mode
        self.changepoint_prior_scale = float(changepoint_prior_scale)
        self.seasonality_prior_scale = float(seasonality_prior_scale)
        self.holidays_country = holidays_country
        self.uncertainty_samples = int(uncertainty_samples)
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)

    @property
    def min_length(self) -> int:
        return 2 * self.season_length

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
                      step=step)
        items = [
            (sid, group[[TIMESTAMP, VALUE]].rename(columns={TIMESTAMP: "ds", VALUE: "y"}).reset_index(drop=True), config)
            for sid, group in panel.sort_values([SERIES_ID, TIMESTAMP]).groupby(SERIES_ID, sort=False)
        ]
        results = map_series(_fit_one_series, items, self.n_jobs, desc="prophet fit")
        self.models_: dict[str, str] = {}  # Prophet's own JSON serialisation: portable across processes
        self.n_parameters_: dict[str, int] = {}
        self.seasonalities_: dict[str, list[str]] = {}
        for (series_id, _, _), (model_json, n_params, seasonalities) in zip(items, results):
            self.models_[series_id], self.n_parameters_[series_id] = model_json, n_params
            self.seasonalities_[series_id] = seasonalities
        logger.info("prophet: fitted %d series in %.2f s wall; seasonalities %s", len(items),
                    time.perf_counter() - started, next(iter(self.seasonalities_.values())))

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        started = time.perf_counter()
        items = [(self.models_[sid], self.future_index(sid, horizon), levels, self.uncertainty_samples,
                  self.seed) for sid in self.fitted_series_ids_]
        results = map_series(_predict_one_series, items, self.n_jobs, desc="prophet predict")
        frames = [forecast_frame(sid, index, mean, bounds)
                  for sid, (_, index, *_), (mean, bounds) in zip(self.fitted_series_ids_, items, results)]
        logger.info("prophet: predicted %d series in %.2f s", len(frames), time.perf_counter() - started)
        return pd.concat(frames, ignore_index=True)


def _grid_step(freq: str) -> pd.Timedelta:
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        anchor = pd.Timestamp("2000-01-01")
        return (anchor + offset) - anchor
    except (ValueError, TypeError) as exc:
        raise ForecasterError(f"prophet: cannot interpret freq={freq!r} as a pandas offset alias: {exc}") from exc


def _quiet_stan_logging() -> None:
    # cmdstanpy logs every optimisation at INFO and configures its logger (level DEBUG) on first use; trigger that
    # set-up now, then lower it. Runs in every joblib worker process too.
    from cmdstanpy.utils import get_logger

    get_logger()
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fit_one_series(series_id: str, history: pd.DataFrame, config: dict) -> tuple[str, int, list[str]]:
    _quiet_stan_logging()
    from prophet import Prophet
    from prophet.serialize import model_to_json

    span = history["ds"].iloc[-1] - history["ds"].iloc[0]
    step = config["step"]
    seasonalities = {
        "daily": step < _DAY and span >= 2 * _DAY,
        "weekly": step < _WEEK and span >= 2 * _WEEK,
        "yearly": span >= 2 * _YEAR,
    }
    model = Prophet(
        daily_seasonality=seasonalities["daily"], weekly_seasonality=seasonalities["weekly"],
        yearly_seasonality=seasonalities["yearly"], seasonality_mode=config["seasonality_mode"],
        changepoint_prior_scale=config["changepoint_prior_scale"],
        seasonality_prior_scale=config["seasonality_prior_scale"], uncertainty_samples=0,
    )
    if config["holidays_country"]:
        model.add_country_holidays(country_name=config["holidays_country"])
    model.fit(history)
    n_params = 2 + model.n_changepoints + sum(2 * s["fourier_order"] for s in model.seasonalities.values())
    return model_to_json(model), int(n_params), [name for name, used in seasonalities.items() if used]


def _predict_one_series(model_json: str, index: pd.DatetimeIndex, levels: list[int], n_samples: int, seed: int):
    _quiet_stan_logging()
    from prophet.serialize import model_from_json

    model = model_from_json(model_json)
    future = pd.DataFrame({"ds": index})
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
