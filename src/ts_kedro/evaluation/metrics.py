"""M4-exact accuracy measures (sMAPE, MASE, MSIS, OWA, ...) and the Naive2 / seasonal-naive benchmark forecasts.

Definitions follow the M4 organisers' evaluation code as described in ``../shared/data/M4_REFERENCE.md``.
Every function is pure numpy and vectorised. Point measures take ``axis``: ``None`` (default) averages over
every element, which is M4's aggregation over the whole series x horizon array; ``axis=-1`` on a 2-D
``(series, horizon)`` array gives one value per series.

Conventions where M4 leaves a value undefined (documented, tested):

- ``smape``: a step with ``y == yhat == 0`` is a perfect forecast and scores 0 (M4 would give 0/0 = NaN).
- ``mape``: steps with ``y == 0`` are skipped (no epsilon, which would make the value depend on an arbitrary
  constant); if every actual is 0 the result is NaN.
- ``mase`` / ``msis``: a training part with no seasonal variation (scale 0) makes the measure undefined: NaN.
"""
from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

# One-sided 95% normal quantile used by M4's seasonality test ("90% limit": two-sided 90%).
_SEASONALITY_Z = 1.645


class MetricError(ValueError):
    """Inputs that no accuracy measure can be computed from (shape mismatch, empty, NaN, too short)."""


def _pair(y, yhat, name: str) -> tuple[np.ndarray, np.ndarray]:
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    if y.shape != yhat.shape:
        raise MetricError(f"{name}: actuals have shape {y.shape} but forecasts {yhat.shape}; they must match")
    if y.size == 0:
        raise MetricError(f"{name}: no values to score")
    if np.isnan(y).any() or np.isnan(yhat).any():
        raise MetricError(f"{name}: NaN in actuals or forecasts; align forecasts with actuals before scoring")
    return y, yhat


def smape(y, yhat, axis=None):
    """Symmetric MAPE in percent, M4 form: mean of 200·|y−ŷ|/(|y|+|ŷ|); 0/0 steps count as 0."""
    y, yhat = _pair(y, yhat, "smape")
    denominator = np.abs(y) + np.abs(yhat)
    safe = np.where(denominator == 0, 1.0, denominator)
    terms = np.where(denominator == 0, 0.0, 200.0 * np.abs(y - yhat) / safe)
    return np.mean(terms, axis=axis)


def mape(y, yhat, axis=None):
    """Mean absolute percentage error in percent; steps whose actual is 0 are skipped (NaN if all are 0)."""
    y, yhat = _pair(y, yhat, "mape")
    nonzero = y != 0
    ratio = np.where(nonzero, np.abs(y - yhat) / np.where(nonzero, np.abs(y), 1.0), 0.0)
    count = nonzero.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.sum(ratio, axis=axis) / np.where(count == 0, np.nan, count)


def mae(y, yhat, axis=None):
    """Mean absolute error."""
    y, yhat = _pair(y, yhat, "mae")
    return np.mean(np.abs(y - yhat), axis=axis)


def rmse(y, yhat, axis=None):
    """Root mean squared error."""
    y, yhat = _pair(y, yhat, "rmse")
    return np.sqrt(np.mean((y - yhat) ** 2, axis=axis))


def seasonal_scale(insample, m: int) -> float:
    """M4's MASE/MSIS denominator: mean |Y_t − Y_{t−m}| over the training part only.

    Returns NaN when the training part has no seasonal variation (the scaled measures are undefined).
    """
    insample = np.asarray(insample, dtype=float)
    m = int(m)
    if m < 1:
        raise MetricError(f"seasonal period m must be >= 1, got {m}")
    if insample.ndim != 1 or insample.size <= m:
        raise MetricError(
            f"the training part needs more than m={m} observations for the seasonal-naive scale, got {insample.size}"
        )
    if np.isnan(insample).any():
        raise MetricError("training part has NaN values: impute them before scoring")
    scale = float(np.mean(np.abs(insample[m:] - insample[:-m])))
    return scale if scale > 0 else float("nan")


def mase(y, yhat, insample, m: int) -> float:
    """Mean absolute scaled error of one series: MAE over the horizon / seasonal-naive in-sample MAE (lag m)."""
    return float(mae(y, yhat)) / seasonal_scale(insample, m)


def coverage(y, lo, hi, axis=None):
    """Share of actuals inside the closed interval [lo, hi] (0..1)."""
    y, lo = _pair(y, lo, "coverage")
    _, hi = _pair(y, hi, "coverage")
    return np.mean((y >= lo) & (y <= hi), axis=axis)


def interval_score(y, lo, hi, alpha: float) -> np.ndarray:
    """Per-step interval score of a (1−alpha) interval: width plus 2/alpha times any miss."""
    if not 0 < alpha < 1:
        raise MetricError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    y, lo = _pair(y, lo, "interval_score")
    _, hi = _pair(y, hi, "interval_score")
    below = np.where(y < lo, lo - y, 0.0)
    above = np.where(y > hi, y - hi, 0.0)
    return (hi - lo) + (2.0 / alpha) * (below + above)


def msis(y, lo, hi, insample, m: int, alpha: float = 0.05) -> float:
    """Mean scaled interval score of one series (M4): mean interval score / seasonal-naive in-sample MAE."""
    return float(np.mean(interval_score(y, lo, hi, alpha))) / seasonal_scale(insample, m)


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """Overall weighted average relative to Naive2, from aggregated sMAPE and MASE (Naive2 scores 1)."""
    if smape_naive2 <= 0 or mase_naive2 <= 0:
        raise MetricError(f"Naive2 reference scores must be positive, got sMAPE {smape_naive2}, MASE {mase_naive2}")
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


def seasonal_naive_forecast(insample, horizon: int, m: int) -> np.ndarray:
    """M4's sNaive: repeat the last m observations over the horizon."""
    insample = np.asarray(insample, dtype=float)
    if insample.size < m:
        raise MetricError(f"seasonal naive needs at least m={m} observations, got {insample.size}")
    last_season = insample[insample.size - m:]
    return np.resize(last_season, int(horizon))


def _acf(x: np.ndarray, nlags: int) -> np.ndarray:
    """Sample autocorrelations r_1..r_nlags (demeaned, divided by n as in R's ``acf``)."""
    x = x - x.mean()
    denominator = np.dot(x, x)
    return np.array([np.dot(x[k:], x[:-k]) / denominator for k in range(1, nlags + 1)])


def is_seasonal(insample, m: int) -> bool:
    """M4 seasonality test: |r_m| > 1.645·sqrt((1 + 2·Σ_{k<m} r_k²)/n); needs m > 1 and n >= 3m."""
    insample = np.asarray(insample, dtype=float)
    n = insample.size
    if m <= 1 or n < 3 * m or np.all(insample == insample[0]):
        return False
    r = _acf(insample, m)
    limit = _SEASONALITY_Z * np.sqrt((1.0 + 2.0 * np.sum(r[: m - 1] ** 2)) / n)
    return bool(abs(r[m - 1]) > limit)


def multiplicative_seasonal_indices(insample, m: int) -> np.ndarray:
    """Classical multiplicative decomposition (R ``decompose``): one index per position ``t mod m``, mean 1.

    The trend is the centred moving average of order m (2×m for even m); the index of a cycle position is
    the mean of value/trend over the cycles where the trend exists, then normalised to average 1.
    """
    x = np.asarray(insample, dtype=float)
    n = x.size
    if m % 2 == 0:
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        weights = np.ones(m) / m
    half = len(weights) // 2
    trend = np.full(n, np.nan)
    trend[half : n - half] = np.convolve(x, weights, mode="valid")
    ratio = x / trend
    positions = np.arange(n) % m
    sums = np.bincount(positions, weights=np.nan_to_num(ratio), minlength=m)
    counts = np.bincount(positions, weights=~np.isnan(ratio), minlength=m)
    figure = sums / counts
    return figure / figure.mean()


def naive2(insample, horizon: int, m: int) -> np.ndarray:
    """M4's Naive2 benchmark: naive forecast of the seasonally adjusted series, re-seasonalised.

    If the M4 seasonality test at lag m passes, the series is divided by its classical multiplicative
    seasonal indices, its last adjusted value is repeated, and the indices of the forecast positions
    (continuing the cycle) are multiplied back; otherwise this is the plain naive forecast.
    """
    x = np.asarray(insample, dtype=float)
    if x.ndim != 1 or x.size == 0 or np.isnan(x).any():
        raise MetricError("naive2 needs a non-empty 1-D training series without NaN")
    horizon = int(horizon)
    if not is_seasonal(x, m):
        return np.full(horizon, x[-1])
    indices = multiplicative_seasonal_indices(x, m)
    n = x.size
    adjusted_last = x[-1] / indices[(n - 1) % m]
    return adjusted_last * indices[np.arange(n, n + horizon) % m]
