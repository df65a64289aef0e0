"""Per-series STL/MSTL decompositions: an in-sample one for analysis and a causal one for features."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from joblib import Parallel, delayed
from statsmodels.tsa.seasonal import STL

logger = logging.getLogger(__name__)


def usable_periods(periods: Sequence[int], n_obs: int) -> list[int]:
    """Periods that STL can estimate from ``n_obs`` values (it needs more than two full cycles)."""
    return [p for p in periods if 2 * p < n_obs]


def fit_components(values: np.ndarray, periods: Sequence[int], stl_kwargs: dict | None = None):
    """Trend, seasonal (n_obs x len(periods)) and residual of one series by MSTL (plain STL for one period).

    The algorithm is statsmodels' ``MSTL`` (Bandara et al. 2021: seasonal windows 7 + 4i, two passes
    over the periods) written out so that each inner STL gets R's ``stl`` default jumps
    (``ceil(window / 10)``): statsmodels evaluates every loess at every point, which makes a weekly
    (168-step) STL about 10x slower for a difference far below the residual noise. Pass
    ``{seasonal_jump: 1, trend_jump: 1, low_pass_jump: 1}`` in ``stl_kwargs`` for the exact statsmodels fit.

    Args:
        values: the series, no NaN.
        periods: seasonal periods in steps, ascending, each with ``2 * p < len(values)``.
        stl_kwargs: passed to every inner STL (e.g. ``robust``); overrides the default jumps.

    Returns:
        ``(trend, seasonal, resid)`` as numpy arrays.
    """
    values = np.asarray(values, dtype=float)
    seasonal = np.zeros((len(values), len(periods)))
    deseasonalised = values.copy()
    for _ in range(1 if len(periods) == 1 else 2):
        for j, period in enumerate(periods):
            deseasonalised = deseasonalised + seasonal[:, j]
            window = 7 + 4 * (j + 1)
            options = {**_r_default_jumps(period, window), **(stl_kwargs or {})}
            result = STL(deseasonalised, period=period, seasonal=window, **options).fit()
            seasonal[:, j] = result.seasonal
            deseasonalised = deseasonalised - seasonal[:, j]
    trend = np.asarray(result.trend, dtype=float)
    return trend, seasonal, deseasonalised - trend


def _r_default_jumps(period: int, seasonal_window: int) -> dict[str, int]:
    """R ``stl`` default jumps for statsmodels' default trend and low-pass windows of this period."""
    trend_window = math.ceil(1.5 * period / (1 - 1.5 / seasonal_window))
    trend_window += trend_window % 2 == 0
    low_pass_window = period + 1 + (period + 1) % 2
    return {
        "seasonal_jump": math.ceil(seasonal_window / 10),
        "trend_jump": math.ceil(trend_window / 10),
        "low_pass_jump": math.ceil(low_pass_window / 10),
    }


def in_sample_decomposition(values: np.ndarray, periods: Sequence[int], stl_kwargs: dict | None = None) -> np.ndarray:
    """Two-sided decomposition of the whole series: columns trend, seasonal per period, resid.

    Each component at t is smoothed with values after t, so this frame is for analysis and plots only,
    never a feature source. Periods the series is too short for are NaN; all NaN if none is usable.
    """
    periods = sorted(periods)
    out = np.full((len(values), len(periods) + 2), np.nan)
    usable = usable_periods(periods, len(values))
    if not usable:
        return out
    trend, seasonal, resid = fit_components(values, usable, stl_kwargs)
    out[:, 0] = trend
    for j, period in enumerate(usable):
        out[:, 1 + periods.index(period)] = seasonal[:, j]
    out[:, -1] = resid
    return out


def causal_decomposition(
    values: np.ndarray,
    periods: Sequence[int],
    min_history: int,
    refit_every: int,
    stl_kwargs: dict | None = None,
) -> np.ndarray:
    """Decomposition features that use, at every position t, only the values before t.

    The series is refitted at origins ``o = min_history, min_history + refit_every, ...`` on
    ``values[:o]`` only. For the block ``t in [o, o + refit_every)`` the features are the last fitted
    trend level (``trend[o - 1]``) and, per period p, the fitted seasonal value of the same phase in the
    last observed cycle. Positions before ``min_history`` stay NaN (not enough history to fit).

    Returns:
        array (n_obs, 1 + len(periods)): trend level, then one seasonal column per period (sorted).
    """
    periods = sorted(periods)
    n_obs = len(values)
    out = np.full((n_obs, 1 + len(periods)), np.nan)
    for origin in range(min_history, n_obs, refit_every):
        trend, seasonal, _ = fit_components(values[:origin], periods, stl_kwargs)
        block = np.arange(origin, min(origin + refit_every, n_obs))
        out[block, 0] = trend[-1]
        last = origin - 1
        for j, period in enumerate(periods):
            # Same phase, one or more whole cycles back, inside the fitted history (index <= last).
            phase = block - period * np.ceil((block - last) / period).astype(int)
            out[block, 1 + j] = seasonal[phase, j]
    return out


def map_over_series(
    function: Callable[[np.ndarray], np.ndarray],
    series_values: Iterable[np.ndarray],
    n_series: int,
    n_jobs: int,
    label: str,
    min_series_for_parallel: int = 1,
) -> list[np.ndarray]:
    """Apply ``function`` to every series in parallel (joblib), logging progress and wall time.

    Below ``min_series_for_parallel`` series it runs in this process: starting worker processes (each
    imports statsmodels) costs seconds, more than a few dozen STL fits.
    """
    if n_series < min_series_for_parallel:
        n_jobs = 1
    start = time.perf_counter()
    results: list[np.ndarray] = []
    next_report = 0.25
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    for result in runner(delayed(function)(values) for values in series_values):
        results.append(result)
        if n_series and len(results) / n_series >= next_report:
            logger.info("%s: %d/%d series (%.1f s)", label, len(results), n_series, time.perf_counter() - start)
            next_report += 0.25
    logger.info("%s: %d series in %.1f s (n_jobs=%s)", label, n_series, time.perf_counter() - start, n_jobs)
    return results
