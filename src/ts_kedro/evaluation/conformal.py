"""Conformal calibration of prediction intervals from rolling-origin backtest residuals.

Model intervals are often miscalibrated (Prophet's 80 % interval covered 59 % on the default data; Gaussian
ARIMA intervals ignore parameter uncertainty). Split conformal prediction repairs the coverage without
assumptions on the model, from forecasts it made out of sample: the backtest windows.

The variant used is conformalised quantile regression (CQR, Romano et al. 2019) pooled over series with a
per-series scale, as in rolling-origin conformal forecasting (Stankeviciute et al. 2021; statsforecast's and
mlforecast's ``ConformalIntervals`` pool windows the same way):

- nonconformity score of an actual ``y`` against an interval ``[lo, hi]`` of level L:
  ``E = max(lo - y, y - hi) / (hi - lo)`` (negative inside the interval): in units of the model's own interval
  width, so series of any level, and series the model knows to be harder, pool together (the width is
  floored at 0.001 of the series' seasonal-naive MAE ``s`` for a degenerate interval);
- per horizon step h and level L, ``q = Q(E; ceil((n+1) L) / n)`` over every (series, window) at that step
  (the finite-sample conformal quantile); steps with too few scores (n < 2 / (1 - L)) use the scores of all
  steps;
- a future interval becomes ``[lo - q w, hi + q w]`` with ``w = hi - lo``: it keeps the model's shape and
  asymmetry, widens where the model was overconfident and narrows where it was too cautious (q < 0).
  Normalising by the width rather than by ``s`` gave the same coverage with narrower intervals on M4 Hourly
  (docs/benchmarks.md).

Under exchangeability of the windows' scores the coverage is at least L; with a few windows per series the
guarantee holds for the pool, not for each series.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE


def series_scales(panel: pd.DataFrame, season_length: int) -> dict[str, float]:
    """Seasonal-naive in-sample MAE of each whole series (lag 1 where the series is shorter than a season)."""
    scales = {}
    for series_id, group in panel.sort_values([SERIES_ID, TIMESTAMP]).groupby(SERIES_ID, sort=False):
        values = group[VALUE].to_numpy(float)
        lag = season_length if len(values) > season_length else 1
        diffs = np.abs(values[lag:] - values[:-lag]) if len(values) > lag else np.array([])
        scale = float(diffs.mean()) if diffs.size else 0.0
        if not scale > 0:  # a constant stretch: fall back to the series' own level so scores stay finite
            scale = float(np.mean(np.abs(values))) or 1.0
        scales[str(series_id)] = scale
    return scales


def _cutoff_scales(backtest: pd.DataFrame, panel: pd.DataFrame, season_length: int) -> pd.Series:
    """The scale of every (series, window) from the data up to its cutoff."""
    from ts_kedro.evaluation.backtest import _training_scales

    cutoffs = backtest.groupby([SERIES_ID, "window"], sort=True)["cutoff"].first().reset_index()
    return _training_scales(panel, cutoffs, int(season_length))


def conformal_adjustments(backtest: pd.DataFrame, panel: pd.DataFrame, season_length: int,
                          levels: Sequence[int]) -> dict:
    """The per-step, per-level adjustments ``q`` (in units of the series scale) learnt from a backtest.

    Args:
        backtest: ``rolling_origin_backtest`` output (``series_id, timestamp, cutoff, window, lo-L, hi-L, actual``).
        panel: the panel the backtest ran on (for the scales at each cutoff).
        season_length: the MASE scale's lag.
        levels: interval levels to calibrate (each needs its ``lo-L``/``hi-L`` columns).

    Returns:
        ``{"method", "levels": {L: [q_1, ..., q_H]}, "n_scores": {L: [n_1, ...]}}`` (JSON-friendly).
    """
    frame = backtest.sort_values([SERIES_ID, "window", TIMESTAMP]).copy()
    frame["step"] = frame.groupby([SERIES_ID, "window"], sort=False).cumcount()
    scale = _cutoff_scales(frame, panel, season_length)
    frame["scale"] = pd.MultiIndex.from_frame(frame[[SERIES_ID, "window"]]).map(scale).to_numpy(float)
    frame = frame[np.isfinite(frame["scale"]) & (frame["scale"] > 0)]
    result = {"method": "cqr_scaled_pooled", "levels": {}, "n_scores": {}}
    horizon = int(frame["step"].max()) + 1 if len(frame) else 0
    for level in sorted(int(level) for level in levels):
        lo, hi, y = frame[f"lo-{level}"].to_numpy(float), frame[f"hi-{level}"].to_numpy(float), frame["actual"].to_numpy(float)
        # in units of the model's own interval width, floored by the series scale (a zero-width interval)
        unit = np.maximum(hi - lo, 1e-3 * frame["scale"].to_numpy(float))
        scores = np.maximum(lo - y, y - hi) / unit
        coverage = level / 100.0
        needed = math.ceil(2 / (1 - coverage))
        pooled = _conformal_quantile(scores, coverage)
        per_step, counts = [], []
        for step in range(horizon):
            at_step = scores[frame["step"].to_numpy() == step]
            per_step.append(_conformal_quantile(at_step, coverage) if len(at_step) >= needed else pooled)
            counts.append(int(len(at_step)))
        result["levels"][level] = [float(q) for q in per_step]
        result["n_scores"][level] = counts
    return result


def _conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    scores = np.sort(scores[np.isfinite(scores)])
    n = len(scores)
    if n == 0:
        return 0.0
    rank = min(math.ceil((n + 1) * coverage), n)  # beyond n: the largest score (the interval cannot be wider)
    return float(scores[rank - 1])


def apply_adjustments(forecast: pd.DataFrame, adjustments: dict, scales: dict[str, float],
                      by: Sequence[str] = (SERIES_ID,)) -> pd.DataFrame:
    """Widen (or narrow) each ``lo-L``/``hi-L`` of a forecast by ``q_{L,h}`` times its width at that step.

    ``by``: the columns of one forecast path (a backtest's ``series_id, window``); rows in time order within it.
    """
    if not adjustments or not adjustments.get("levels"):
        return forecast
    forecast = forecast.copy()
    step = forecast.groupby(list(by), sort=False).cumcount().to_numpy()
    scale = forecast[SERIES_ID].astype(str).map(scales).fillna(0.0).to_numpy(float)
    for level, per_step in adjustments["levels"].items():
        level = int(level)
        if f"lo-{level}" not in forecast or not per_step:
            continue
        q = np.asarray(per_step, float)[np.minimum(step, len(per_step) - 1)]  # beyond the horizon: the last step's
        lo, hi = forecast[f"lo-{level}"].to_numpy(float), forecast[f"hi-{level}"].to_numpy(float)
        unit = np.maximum(hi - lo, 1e-3 * scale)
        forecast[f"lo-{level}"] = lo - q * unit
        forecast[f"hi-{level}"] = hi + q * unit
    return forecast


def apply_calibration(forecast: pd.DataFrame, adjustments: dict, scales: dict[str, float],
                      nonnegative: Mapping[str, bool], by: Sequence[str] = (SERIES_ID,)) -> pd.DataFrame:
    """``apply_adjustments``, then every lower bound of a series that ``nonnegative`` marks (its history never
    went below zero) kept at zero or above: how a calibrated forecast is served, by a family or the ensemble."""
    forecast = apply_adjustments(forecast, adjustments, scales, by=by)
    floor = forecast[SERIES_ID].map(nonnegative).fillna(False).to_numpy(bool)
    for column in [c for c in forecast.columns if c.startswith("lo-")]:
        forecast[column] = np.where(floor, np.maximum(forecast[column], 0.0), forecast[column])
    return forecast


def ensemble_adjustments(member_backtests: dict[str, pd.DataFrame], member_calibrations: dict[str, dict | None],
                         panel: pd.DataFrame, season_length: int, levels: Sequence[int]) -> dict:
    """Conformal adjustments of the median ensemble, on top of its members' own calibration.

    The ensemble serves the median of its members' calibrated intervals. Each member covers about L on its
    backtest, but the median of the intervals covers more (the median forecast errs less than each member while
    its interval is as wide as theirs; M3 monthly test part: 89 % and 99.5 % for 80 % and 95 %). So the members'
    adjustments are applied to their backtest rows, the ensemble's backtest is their median, exactly as it
    would have been served, and ``conformal_adjustments`` learns the ensemble's own ``q`` from it (mostly
    negative: it narrows). The members' adjustments were learnt on the same rows, which makes this second
    stage's input slightly optimistic for the members; the ensemble's coverage is then nominal on the backtest.

    Args:
        member_backtests: each member's backtest (``series_id, timestamp, cutoff, window, mean, lo-L, hi-L,
            actual``), aligned on the same series, windows and steps.
        member_calibrations: each member's ``interval_calibration_`` (None: served uncalibrated).
        panel, season_length, levels: as for ``conformal_adjustments``.
    """
    keys = [SERIES_ID, TIMESTAMP, "cutoff", "window"]
    values = ["mean", *[f"{side}-{int(level)}" for level in levels for side in ("lo", "hi")]]
    nonnegative = panel.groupby(SERIES_ID)[VALUE].min() >= 0  # as Forecaster.predict: lower bounds stay >= 0
    calibrated = []
    for member, frame in member_backtests.items():
        frame = frame.sort_values([SERIES_ID, "window", TIMESTAMP], kind="stable")
        adjustments = member_calibrations.get(member)
        if adjustments:
            frame = apply_calibration(frame, adjustments, {}, nonnegative, by=(SERIES_ID, "window"))
        calibrated.append(frame[[*keys, *values, "actual"]])
    stacked = pd.concat(calibrated, ignore_index=True)
    median = stacked.groupby(keys, sort=False).agg({**{c: "median" for c in values}, "actual": "first"}).reset_index()
    result = conformal_adjustments(median, panel, season_length, levels)
    result["method"] = "cqr_scaled_pooled_on_calibrated_median"
    result["members"] = sorted(member_backtests)
    return result
