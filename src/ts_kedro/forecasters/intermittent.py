"""Intermittent-demand forecasters (Croston, SBA, TSB, ADIDA) for series that are mostly zeros.

Every method forecasts a flat mean demand per period:

- ``croston`` (Croston 1972): simple exponential smoothing (SES) of the non-zero demand sizes ``z`` and, separately,
  of the intervals ``p`` between them (the first interval counts from the series start, as in statsforecast),
  both updated only in periods with a demand; forecast ``z_hat / p_hat``.
- ``sba`` (Syntetos & Boylan 2005): Croston times ``1 - alpha_p / 2``, which removes Croston's positive bias.
- ``tsb`` (Teunter, Syntetos & Babai 2011): SES of the sizes (updated on demand) and of the demand probability
  ``1[y != 0]`` (updated every period, so the forecast decays while no demand arrives, which suits obsolescence);
  forecast ``prob_hat * z_hat``. The probability starts at the in-sample share of demand periods.
- ``adida`` (Nikolopoulos et al. 2011): sum the series in non-overlapping buckets of ``k = round(ADI)`` periods
  (the mean inter-demand interval; the oldest ``n mod k`` points are dropped), SES on the bucket totals,
  forecast ``bucket level / k`` per period. ``k = 1`` is SES on the series itself.
- ``auto`` (default): the Syntetos-Boylan-Croston classification (Syntetos, Boylan & Croston 2005). ADI = mean
  inter-demand interval, CV^2 = squared coefficient of variation of the non-zero sizes (ddof 1, as R's
  tsintermittent ``idclass``): smooth (ADI <= 1.32 and CV^2 <= 0.49) takes Croston, erratic, intermittent and
  lumpy take SBA. The cut-offs are exactly where the theoretical MSE of SBA falls below Croston's, so this is the
  rule the scheme was derived for; for a smooth series with ADI close to 1 Croston reduces to SES of the series,
  which is the sensible method there. A per-series holdout choice was not taken: with a few dozen points and
  three quarters zeros, a 12-point holdout holds two or three demands, too few to rank methods reliably
  (``benchmarks/family_check_intermittent.py`` measures both rules). ``classes_`` records each series' class.

Smoothing parameters are chosen per series from ``alpha_grid`` (default 0.05..0.3, the usual range for these
methods; statsforecast's CrostonOptimized searches [0.1, 0.3]) by the in-sample one-step MSE of the demand forecast
itself (for Croston/SBA/TSB jointly over the two parameters, for ADIDA on the bucket totals). Smoothing states start
at the first demand size, the first interval (and the demand share for TSB's probability). A one-element grid fixes
the parameter. ``n_parameters`` counts the chosen smoothing parameters (2 for Croston/SBA/TSB, 1 for ADIDA, 0 for a
series without any demand); states are set from the data, not estimated.

Prediction intervals: empirical quantiles of the in-sample one-step errors ``y[t] - f[t]`` (periods after the first
demand) added to the flat forecast, widened with the horizon by the local-level (ETS(A,N,N)) variance growth
``sqrt(1 + (h - 1) alpha^2)`` with the largest smoothing weight of the series' method (for ADIDA ``h`` counts
buckets), so no distributional assumption is imposed on the zero-inflated counts. With fewer than two errors a
Gaussian of their root mean square (or of the series' spread) is used. Bounds of a series without negative values
are clipped at 0. Only 201 error quantiles are kept per series (every integer level is one of them).

Any series with two observations is fitted (``min_length`` 2, no fallback). A series of only zeros forecasts 0
with zero-width intervals. Negative values are taken as they are: a "demand" is any non-zero value (statsforecast's
convention), so the methods still estimate E[y] = E[size] x P(demand); such a series is not clipped at 0, and its
CV^2 (relative to a possibly tiny mean size) tends to classify it lumpy, hence SBA.
The family ignores ``season_length``: none of these methods is seasonal.

References: Croston (1972) ORQ 23(3); Syntetos & Boylan (2005) IJF 21(2); Syntetos, Boylan & Croston (2005)
JORS 56(5); Teunter, Syntetos & Babai (2011) EJOR 214(3); Nikolopoulos et al. (2011) JORS 62(3);
Hyndman et al. (2008) Forecasting with Exponential Smoothing, ch. 6 (ETS(A,N,N) variance).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.stats import norm

from ts_kedro.forecasters._per_series import map_series, split_series
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, Forecaster, ForecasterError

logger = logging.getLogger(__name__)

METHODS = ("auto", "croston", "sba", "tsb", "adida")
ADI_CUTOFF, CV2_CUTOFF = 1.32, 0.49  # Syntetos, Boylan & Croston (2005)
DEFAULT_ALPHA_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
QUANTILE_PROBS = np.linspace(0.0, 1.0, 201)  # steps of 0.5 %: both tails of every integer level lie on the grid
_SMOOTHING_COUNT = {"croston": 2, "sba": 2, "tsb": 2, "adida": 1, "zero": 0}


@dataclass
class _SeriesState:
    """What one series needs at predict time (a few hundred floats)."""

    method: str  # croston | sba | tsb | adida | zero (no demand at all)
    demand_class: str  # smooth | erratic | intermittent | lumpy | no_demand
    mean: float
    smoothing: tuple[float, ...]  # the chosen smoothing parameters of the method
    bucket: int  # ADIDA aggregation level (1 for the other methods)
    error_quantiles: np.ndarray | None  # at QUANTILE_PROBS; None: Gaussian with error_scale
    error_scale: float
    non_negative: bool
    # the smoothing states ``update`` moves forward: Croston/SBA (size level, interval level), TSB (size level,
    # demand probability), ADIDA (bucket-total level,); with the periods since the last demand, the values of the
    # incomplete ADIDA bucket and the number of observations
    levels: tuple[float, ...] = ()
    since_demand: int = 0
    pending: tuple[float, ...] = ()
    n_obs: int = 0


def classify_demand(values: np.ndarray) -> tuple[str, float, float]:
    """Syntetos-Boylan-Croston class of one series with its ADI and CV^2 (``no_demand`` when all zero)."""
    values = np.asarray(values, float)
    positions = np.flatnonzero(values)
    if positions.size == 0:
        return "no_demand", float("inf"), float("nan")
    adi = float(np.mean(np.diff(positions, prepend=-1)))
    sizes = values[positions]
    cv2 = float((np.std(sizes, ddof=1) / np.mean(sizes)) ** 2) if sizes.size > 1 and np.mean(sizes) != 0 else 0.0
    if adi <= ADI_CUTOFF:
        return ("smooth" if cv2 <= CV2_CUTOFF else "erratic"), adi, cv2
    return ("intermittent" if cv2 <= CV2_CUTOFF else "lumpy"), adi, cv2


def _ses_levels(x: np.ndarray, alphas: np.ndarray, initial: float) -> np.ndarray:
    """SES levels after each observation for every alpha: shape (len(alphas), len(x)); level before x[0] = initial."""
    out = np.empty((alphas.size, x.size))
    for i, alpha in enumerate(alphas):
        out[i] = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * initial])[0]
    return out


def _croston_family(values: np.ndarray, method: str, alphas: np.ndarray):
    """(mean forecast, smoothing, in-sample errors) of Croston/SBA/TSB with the grid's lowest-MSE parameters."""
    positions = np.flatnonzero(values)
    sizes = values[positions]
    size_levels = _ses_levels(sizes, alphas, sizes[0])  # (G, m)
    later = np.arange(positions[0] + 1, values.size)  # periods with a one-step forecast
    last_demand = np.searchsorted(positions, later, side="left") - 1  # demand index known before period t
    if method == "tsb":
        occurred = (values != 0).astype(float)
        prob_levels = _ses_levels(occurred, alphas, float(occurred.mean()))  # (G, n)
        final = size_levels[:, None, -1] * prob_levels[None, :, -1]  # (G_size, G_prob)
        fitted = size_levels[:, None, last_demand] * prob_levels[None, :, later - 1]
        factor = np.ones(alphas.size)
        second_levels = prob_levels
    else:
        intervals = np.diff(positions, prepend=-1).astype(float)
        interval_levels = _ses_levels(intervals, alphas, intervals[0])
        second_levels = interval_levels
        factor = 1.0 - alphas / 2.0 if method == "sba" else np.ones(alphas.size)
        ratio = size_levels[:, None, :] / interval_levels[None, :, :] * factor[None, :, None]  # (G, G, m)
        final = ratio[:, :, -1]
        fitted = ratio[:, :, last_demand]
    if later.size == 0:  # the only demand is the last point: nothing to choose on
        best = (0, 0)
        errors = np.empty(0)
    else:
        residuals = values[later][None, None, :] - fitted
        best = np.unravel_index(np.argmin(np.mean(residuals**2, axis=2)), final.shape)
        errors = residuals[best]
    states = (float(size_levels[best[0], -1]), float(second_levels[best[1], -1]))
    return float(final[best]), (float(alphas[best[0]]), float(alphas[best[1]])), errors, states


def _adida(values: np.ndarray, alphas: np.ndarray):
    """(mean forecast, smoothing, in-sample per-period errors, bucket) of ADIDA."""
    positions = np.flatnonzero(values)
    bucket = max(1, int(round(float(np.mean(np.diff(positions, prepend=-1))))))
    bucket = min(bucket, max(1, values.size // 2))  # at least two buckets to smooth
    usable = values[values.size % bucket:]
    totals = usable.reshape(-1, bucket).sum(axis=1)
    levels = _ses_levels(totals, alphas, totals[0])  # (G, B)
    bucket_errors = totals[None, 1:] - levels[:, :-1]
    best = int(np.argmin(np.mean(bucket_errors**2, axis=1))) if totals.size > 1 else 0
    per_period = np.repeat(levels[best, :-1] / bucket, bucket)
    errors = usable[bucket:] - per_period
    return float(levels[best, -1] / bucket), (float(alphas[best]),), errors, bucket, (float(levels[best, -1]),)


def _fit_one_series(values: np.ndarray, method: str, alphas: np.ndarray) -> _SeriesState:
    demand_class, _, _ = classify_demand(values)
    non_negative = bool(np.all(values >= 0))
    if demand_class == "no_demand":
        return _SeriesState("zero", demand_class, 0.0, (), 1, None, 0.0, non_negative, n_obs=values.size)
    if method == "auto":
        method = "croston" if demand_class == "smooth" else "sba"
    bucket = 1
    if method == "adida":
        mean, smoothing, errors, bucket, states = _adida(values, alphas)
    else:
        mean, smoothing, errors, states = _croston_family(values, method, alphas)
    quantiles, scale = None, 0.0
    if errors.size >= 2:
        quantiles = np.quantile(errors, QUANTILE_PROBS)
    else:
        scale = float(np.sqrt(np.mean(errors**2))) if errors.size else float(np.std(values))
    since_demand = int(values.size - 1 - np.flatnonzero(values)[-1])
    return _SeriesState(method, demand_class, mean, smoothing, bucket, quantiles, scale, non_negative,
                        levels=states, since_demand=since_demand, n_obs=values.size)


def _update_one_series(state: _SeriesState, values: np.ndarray, method: str, alphas: np.ndarray) -> _SeriesState:
    """The state after ``values`` with the fitted smoothing parameters, error quantiles and ADIDA bucket kept.

    Croston/SBA/TSB run their SES recursions over the new periods exactly as the fit did, so the state equals a
    fit with these parameters on the longer series. ADIDA keeps its bucket boundaries (the fitted buckets end at
    the fit's last point): new periods fill the next bucket and each complete bucket updates the level (a fit on
    the longer series would re-align the buckets unless the new points fill whole buckets). A series that had no
    demand at all has no parameters to keep: when its first demand arrives it is fitted on its whole series
    (the known zeros and the new values), which is cheap and exact.
    """
    values = np.asarray(values, float)
    non_negative = state.non_negative and bool(np.all(values >= 0))
    if state.method == "zero":
        if not np.any(values):
            return dataclasses.replace(state, n_obs=state.n_obs + values.size, non_negative=non_negative)
        return _fit_one_series(np.r_[np.zeros(state.n_obs), values], method, alphas)
    pending = state.pending
    since = state.since_demand
    levels = list(state.levels)
    first_alpha = state.smoothing[0]
    if state.method == "adida":
        pending = tuple(state.pending) + tuple(values)
        while len(pending) >= state.bucket:
            levels[0] += first_alpha * (float(np.sum(pending[:state.bucket])) - levels[0])
            pending = pending[state.bucket:]
        mean = levels[0] / state.bucket
    else:
        second_alpha = state.smoothing[1]
        for value in values:
            since += 1
            if state.method == "tsb":
                levels[1] += second_alpha * (float(value != 0) - levels[1])
            if value != 0:
                levels[0] += first_alpha * (value - levels[0])
                if state.method != "tsb":
                    levels[1] += second_alpha * (since - levels[1])
                since = 0
        if state.method == "tsb":
            mean = levels[0] * levels[1]
        else:
            mean = levels[0] / levels[1] * ((1.0 - second_alpha / 2.0) if state.method == "sba" else 1.0)
    return dataclasses.replace(state, mean=float(mean), levels=tuple(levels), since_demand=since,
                               pending=tuple(pending), n_obs=state.n_obs + values.size, non_negative=non_negative)


class IntermittentForecaster(Forecaster):
    """Croston / SBA / TSB / ADIDA per series, chosen by the SBC demand class under ``method="auto"``.

    Args:
        method: ``auto`` (SBC classification: Croston for smooth, SBA otherwise), ``croston``, ``sba``, ``tsb``
            or ``adida``, for every series.
        alpha_grid: smoothing parameters searched per series by in-sample one-step MSE (one value: fixed).
        n_jobs: parallel workers over series (joblib convention, -1 = all cores).

    The module docstring gives the methods, the parameter choice, the intervals and the edge cases.
    """

    name = "intermittent"
    per_series_state = True
    fallback = None  # takes any series with two observations
    # sporadic demand's large orders are what Croston/SBA/TSB model, and data_processing's detector flags them (7.6 %
    # of car parts' points): never fit around them
    anomaly_treatment = "keep"
    anomaly_treatments = ("keep",)

    def __init__(self, freq: str, season_length: int | None = None, method: str = "auto",
                 alpha_grid: Sequence[float] = DEFAULT_ALPHA_GRID, n_jobs: int = -1):
        alpha_grid = tuple(float(a) for a in alpha_grid)
        super().__init__(freq, season_length, method=method, alpha_grid=list(alpha_grid), n_jobs=n_jobs)
        if method not in METHODS:
            raise ForecasterError(f"intermittent: method must be one of {METHODS}, got {method!r}")
        if not alpha_grid or any(not 0 < a <= 1 for a in alpha_grid):
            raise ForecasterError(f"intermittent: alpha_grid needs values in (0, 1], got {list(alpha_grid)!r}")
        self.method = method
        self.alpha_grid = alpha_grid
        self.n_jobs = int(n_jobs)

    @property
    def min_length(self) -> int:
        return 2

    def n_parameters(self) -> int:
        return sum(_SMOOTHING_COUNT[s.method] for s in getattr(self, "fitted_", {}).values())

    @property
    def classes_(self) -> dict[str, str]:
        """SBC demand class of every fitted series (smooth, erratic, intermittent, lumpy, no_demand)."""
        return {sid: state.demand_class for sid, state in self.fitted_.items()}

    def _fit(self, panel: pd.DataFrame) -> None:
        started = time.perf_counter()
        alphas = np.asarray(self.alpha_grid, float)
        by_series = split_series(panel)
        ids = list(by_series)
        items = [(by_series[sid], self.method, alphas) for sid in ids]
        states = map_series(_fit_one_series, items, self.n_jobs, desc="intermittent fit")
        self.fitted_: dict[str, _SeriesState] = dict(zip(ids, states))
        logger.info("intermittent: fitted %d series in %.2f s; classes %s; methods %s", len(states),
                    time.perf_counter() - started, pd.Series(self.classes_).value_counts().to_dict(),
                    pd.Series([s.method for s in states]).value_counts().to_dict())

    def _update(self, new_observations: pd.DataFrame) -> None:
        alphas = np.asarray(self.alpha_grid, float)
        for series_id, values in split_series(new_observations).items():
            self.fitted_[series_id] = _update_one_series(self.fitted_[series_id], values, self.method, alphas)

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        steps = np.arange(1, horizon + 1)
        columns: dict[str, list[np.ndarray]] = {"mean": []}
        for level in levels:
            columns[f"lo-{level}"], columns[f"hi-{level}"] = [], []
        timestamps = []
        for series_id in self.fitted_series_ids_:
            state = self.fitted_[series_id]
            timestamps.append(self.future_index(series_id, horizon))
            mean = np.full(horizon, state.mean)
            columns["mean"].append(mean)
            alpha = max(state.smoothing, default=0.0)
            ahead = np.ceil(steps / state.bucket)  # ADIDA's SES steps over buckets
            growth = np.sqrt(1.0 + (ahead - 1.0) * alpha**2)
            for level in levels:
                tail = (1.0 - level / 100.0) / 2.0
                if state.error_quantiles is not None:
                    low_q, high_q = np.interp([tail, 1.0 - tail], QUANTILE_PROBS, state.error_quantiles)
                else:
                    z = float(norm.ppf(1.0 - tail))
                    low_q, high_q = -z * state.error_scale, z * state.error_scale
                lo, hi = mean + low_q * growth, mean + high_q * growth
                if state.non_negative:
                    lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
                columns[f"lo-{level}"].append(lo)
                columns[f"hi-{level}"].append(hi)
        frame = pd.DataFrame({
            SERIES_ID: np.repeat(np.asarray(self.fitted_series_ids_, dtype=object), horizon),
            TIMESTAMP: timestamps[0].append(timestamps[1:]) if len(timestamps) > 1 else timestamps[0],
        })
        for name, parts in columns.items():
            frame[name] = np.concatenate(parts)
        return frame
