"""Origin-horizon rows for global direct models: features known at a forecast origin, the target h steps later.

One row is one (series, origin o, horizon h): the model learns ``y[o+h]`` from what is known at ``o``. This is
the *direct, horizon as a feature* multi-horizon strategy: one model for every step, ``h`` is an input, and no
forecast is fed back as an input (no recursion, so no error accumulation and intervals per step come from
quantile models trained on the same rows).

Leak-free by construction: every feature of a row is computed from ``y[..o]`` (values up to and including the
origin), from the target's timestamp (calendar terms) or from covariates declared known in advance at the
target's time; an observed covariate enters only through its value at the origin or earlier. The per-row
scaling is also taken at the origin (``level``: the mean of the last ``level_window`` values; ``scale``, with
``scaling: level``: their mean absolute value; with ``scaling: seasonal_diff``: the mean absolute seasonal
difference ``|y[t] - y[t-m]|`` over the last ``scale_window`` = max(m, horizon) steps, the in-sample scale of
MASE taken locally, so the trees learn in MASE units), so a row is the same whether it is built from the whole
history or from a history cut right after its target: a backtest on a truncated panel sees exactly these rows
(``tests`` check it). A scale of zero falls back to the mean absolute value of the last season, then of the
history so far, then 1.

Features (all on the scaled axis ``(y - level) / scale``):

- ``horizon``: h.
- ``lag_<k>``: ``y[o-k+1]`` for k = 1..season_length (the last season; ``lag_1`` is the origin's value) and
  ``k = p`` for each longer integer period p of the profile.
- ``seasonal_<p>``: ``y[o+h-p*ceil(h/p)]``, the value one (or more) cycles of period p before the target: the
  seasonal-naive forecast of that period, which the trees correct.
- ``roll_mean_<w>``, ``roll_std_<w>``: statistics of the w values ending at o, w = season_length and every longer
  integer period (windows of at least two values).
- ``log_scale``: the series' scale at the origin (a static-like attribute: small and large series differ).
- calendar terms of the target timestamp (those the frequency and span support, ``calendar.select_features``),
  and covariates (``cov_<name>``) as described above.

Target: ``(y[o+h] - level) / scale``. The forecast is ``level + scale * prediction``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import calendar

SCALINGS = ("level", "seasonal_diff")


@dataclass(frozen=True)
class OriginFeatureSpec:
    """What ``origin_rows`` builds: every number derives from the frequency profile of the panel.

    ``known_covariates`` are taken at the target's timestamp, ``observed_covariates`` at the origin.
    """

    freq: str
    horizon: int
    season_length: int
    periods: tuple[int, ...]  # integer seasonal periods >= 2 of the profile
    calendar_features: tuple[str, ...]
    known_covariates: tuple[str, ...] = ()
    observed_covariates: tuple[str, ...] = ()
    scaling: str = "level"  # level | seasonal_diff (see the module docstring)
    lags: tuple[int, ...] = field(init=False)
    windows: tuple[int, ...] = field(init=False)
    level_window: int = field(init=False)
    scale_window: int = field(init=False)

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        m = max(int(self.season_length), 1)
        longer = tuple(p for p in self.periods if p > m)
        object.__setattr__(self, "lags", tuple(range(1, m + 1)) + longer)
        object.__setattr__(self, "windows", tuple(w for w in (m, *longer) if w >= 2))
        object.__setattr__(self, "level_window", m)
        object.__setattr__(self, "scale_window", max(m, int(self.horizon)) if self.scaling == "seasonal_diff" else m)

    @property
    def history_needed(self) -> int:
        """Values before the forecast origin that any feature reads (older ones never matter)."""
        scale_reach = self.scale_window + self.level_window if self.scaling == "seasonal_diff" else 0  # window + lag m
        return max([*self.lags, *self.windows, *self.periods, self.level_window, scale_reach])

    def feature_names(self) -> list[str]:
        names = ["horizon", *(f"lag_{k}" for k in self.lags), *(f"seasonal_{p}" for p in self.periods)]
        for window in self.windows:
            names += [f"roll_mean_{window}", f"roll_std_{window}"]
        names.append("log_scale")
        names += calendar_columns(self.calendar_features)
        names += [f"cov_{c}" for c in (*self.known_covariates, *self.observed_covariates)]
        return names


def calendar_columns(features: Sequence[str]) -> list[str]:
    """Column names ``calendar.calendar_frame`` gives for ``features`` with the cyclic encoding."""
    return [f"{name}_{part}" for name in features for part in ("sin", "cos")]


def origin_rows(values: np.ndarray, timestamps: pd.DatetimeIndex, origins: np.ndarray, horizons: np.ndarray,
                spec: OriginFeatureSpec, covariates: Mapping[str, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features of the (origin, horizon) pairs of one series.

    Args:
        values: the series' values in time order (positions 0..n-1).
        timestamps: timestamps of positions 0..max(origins + horizons) (future ones for forecasting).
        origins: positions o of the rows (each >= ``level_window - 1`` and < n).
        horizons: h of the rows (>= 1), same length as ``origins``.
        spec: the feature specification.
        covariates: ``name -> values`` on the same positions as ``timestamps`` (known-in-advance ones must
            cover every target position; observed ones are read at origins only).

    Returns:
        ``features`` (rows x ``spec.feature_names()``, float), ``level``, ``scale`` (per row) and the positions
        of the targets ``origins + horizons``.
    """
    values = np.asarray(values, float)
    origins = np.asarray(origins, int)
    horizons = np.asarray(horizons, int)
    targets = origins + horizons
    w = spec.level_window
    padded = np.r_[0.0, np.cumsum(values)]
    padded_abs = np.r_[0.0, np.cumsum(np.abs(values))]
    padded_sq = np.r_[0.0, np.cumsum(values**2)]
    level = (padded[origins + 1] - padded[origins + 1 - w]) / w
    scale = (padded_abs[origins + 1] - padded_abs[origins + 1 - w]) / w
    # a window of zeros (intermittent demand): the mean absolute value of the whole history so far, else 1
    expanding = padded_abs[origins + 1] / (origins + 1)
    scale = np.where(scale > 0, scale, np.where(expanding > 0, expanding, 1.0))
    if spec.scaling == "seasonal_diff":
        scale = _seasonal_diff_scale(values, origins, spec.level_window, spec.scale_window, scale)  # lag m

    def scaled_at(positions: np.ndarray) -> np.ndarray:
        inside = (positions >= 0) & (positions < values.size)
        out = np.full(positions.shape, np.nan)
        out[inside] = (values[positions[inside]] - level[inside]) / scale[inside]
        return out

    columns = [horizons.astype(float)]
    columns += [scaled_at(origins - k + 1) for k in spec.lags]
    for period in spec.periods:
        cycles = -(-horizons // period)  # ceil(h / p)
        columns.append(scaled_at(targets - period * cycles))
    for window in spec.windows:
        start = origins + 1 - window
        ok = start >= 0
        safe = np.where(ok, start, 0)
        total = padded[origins + 1] - padded[safe]
        mean = total / window
        variance = np.maximum((padded_sq[origins + 1] - padded_sq[safe]) / window - mean**2, 0.0)
        columns.append(np.where(ok, (mean - level) / scale, np.nan))
        columns.append(np.where(ok, np.sqrt(variance * window / (window - 1)) / scale, np.nan))
    columns.append(np.log(scale))
    if spec.calendar_features:
        frame = calendar.calendar_frame(pd.Series(timestamps[targets]), list(spec.calendar_features), "cyclic")
        columns += [frame[name].to_numpy(float) for name in calendar_columns(spec.calendar_features)]
    covariates = covariates or {}
    for name in spec.known_covariates:
        columns.append(np.asarray(covariates[name], float)[targets])
    for name in spec.observed_covariates:
        columns.append(np.asarray(covariates[name], float)[origins])
    features = np.column_stack(columns) if columns else np.empty((origins.size, 0))
    return features, level, scale, targets


def _seasonal_diff_scale(values: np.ndarray, origins: np.ndarray, m: int, window: int,
                         fallback: np.ndarray) -> np.ndarray:
    """Mean ``|y[t] - y[t-m]|`` over t in (o - window, o] (the differences that exist), per origin o; where there is
    none, or all are zero, ``fallback``."""
    diffs = np.abs(values[m:] - values[:-m]) if values.size > m else np.empty(0)
    cumulative = np.r_[0.0, np.cumsum(diffs)]
    high = np.clip(origins - m + 1, 0, diffs.size)  # differences of t <= o: positions [.., high) of diffs
    low = np.clip(high - window, 0, None)
    count = high - low
    mean = np.where(count > 0, (cumulative[high] - cumulative[low]) / np.maximum(count, 1), 0.0)
    return np.where(mean > 0, mean, fallback)


def training_pairs(n_obs: int, spec: OriginFeatureSpec, keep_probability: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(origin, horizon) pairs of a series of ``n_obs`` values whose target lies inside the series, each kept with
    ``keep_probability`` (the row budget of a large panel); the earliest origin has a full level window."""
    first = spec.level_window - 1
    origins, horizons = [], []
    for h in range(1, spec.horizon + 1):
        candidates = np.arange(first, n_obs - h)
        if candidates.size == 0:
            continue
        if keep_probability < 1.0:
            candidates = candidates[rng.random(candidates.size) < keep_probability]
        origins.append(candidates)
        horizons.append(np.full(candidates.size, h))
    if not origins:
        return np.empty(0, int), np.empty(0, int)
    return np.concatenate(origins), np.concatenate(horizons)
