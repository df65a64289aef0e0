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

**Per series where enough windows exist** (``per_series``, ``backtest.per_series_calibration``, on by default): a
series with at least ``1 / (1 - L)`` backtest windows of its own (80 %: 5, 95 %: 20; ``per_series_min_windows``)
also gets its own shift at level L, the conformal quantile of its scores' excess over the pooled per-step ``q``,
added to that ``q`` for it: a series the pooled rule over-covers narrows, one it under-covers widens. A series
whose count of scores puts the conformal rank more than 2 points above L in expectation (``own_quantile_is_close``:
a one-step backtest of 7 or 8 windows at 80 %) keeps the pooled rule. Fewer windows
(the 2 windows the profile derives for a horizon as long as the season): the pooled rule alone. Measured with ``benchmarks/per_series_calibration.py``
on M4 Hourly, NN5 and M3 monthly: the 80 % MSIS 1.9-5.7 % lower for four of seven family-panel pairs (Theta on all
three), at most 0.9 % higher for the other three (docs/benchmarks.md, "Per-series calibration").

**The fit's interval level** (``method``): the rule above transfers from the backtest fits to the served fit only
when the model's raw width is stable from fit to fit. It is not always: the LSTM's raw 80 % interval was 3.34
series scales wide in one M4 Hourly backtest window and 2.62 in the other, so the correction learnt on them widened
the served fit's interval too much (80 % coverage 0.836 on the test part); on M3 yearly most families' served
fits (on the whole history) are 15-70 % wider than their backtest fits and over-cover (0.86-0.94 at 80 %).
``cqr_fit_level`` first rescales each fit's intervals about its point forecast by ``G / g``, ``g`` the fit's mean
width in series scales and ``G`` the mean of the backtest windows' ``g``: each fit keeps its shape across series
and steps, and the level comes from the backtest residuals alone. ``auto`` (shipped) chooses per model: both
rules learn on the older windows and are checked on the newest (mean MSIS over the levels); ``cqr_fit_level``
is kept where it scores lower there by more than ``FIT_LEVEL_MARGIN`` (``held_out_msis`` in the result). One
window: plain CQR. Measured on eleven real panels (docs/benchmarks.md, "The fit's interval level").
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ts_kedro.evaluation.metrics import interval_score
from ts_kedro.forecasters.anomalies import IS_ANOMALY
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


METHODS = ("auto", "cqr", "cqr_fit_level")
#: ``auto`` keeps plain CQR unless the rescaled rule's newest-window MSIS is lower by more than this share: a tie
#: of two rules scored on one window is noise (M3 monthly: 6.97 against 6.97 for seasonal naive)
FIT_LEVEL_MARGIN = 0.005


def _fit_levels(frame: pd.DataFrame, level: int) -> pd.Series:
    """Each backtest window's (each fit's) mean interval width in series scales at ``level``."""
    width = (frame[f"hi-{level}"] - frame[f"lo-{level}"]).to_numpy(float) / frame["scale"].to_numpy(float)
    return pd.Series(width).groupby(frame["window"].to_numpy()).mean()


def _window_factors(frame: pd.DataFrame, level: int) -> tuple[pd.Series, float, np.ndarray]:
    """Each window's fit level ``g``, their mean ``G`` and every row's factor ``G / g`` (``cqr_fit_level``)."""
    windows = _fit_levels(frame, level)
    reference = float(windows.mean())
    return windows, reference, _level_factor(reference, frame["window"].map(windows).to_numpy(float))


def _level_factor(reference: float, level_of_fit):
    """``G / g``, and 1 where either is not a positive number (a fit of zero-width intervals is left as it is)."""
    g = np.asarray(level_of_fit, float)
    ok = np.isfinite(g) & (g > 0) & np.isfinite(reference) & (reference > 0)
    factor = np.where(ok, reference / np.where(ok, g, 1.0), 1.0)
    return factor if factor.ndim else float(factor)


def _rescaled(frame: pd.DataFrame, level: int, factor) -> tuple[np.ndarray, np.ndarray]:
    """The interval at ``level`` scaled about the point forecast by ``factor`` (1: as the model gave it)."""
    centre = frame["mean"].to_numpy(float)
    lo, hi = frame[f"lo-{level}"].to_numpy(float), frame[f"hi-{level}"].to_numpy(float)
    return centre - (centre - lo) * factor, centre + (hi - centre) * factor


def _scores(frame: pd.DataFrame, level: int, factor) -> np.ndarray:
    """The CQR scores of ``frame``'s rows at ``level`` (intervals rescaled by ``factor``)."""
    lo, hi = _rescaled(frame, level, factor)
    y = frame["actual"].to_numpy(float)
    # in units of the model's own interval width, floored by the series scale (a zero-width interval)
    unit = np.maximum(hi - lo, 1e-3 * frame["scale"].to_numpy(float))
    return np.maximum(lo - y, y - hi) / unit


def _at_least(count: float) -> int:
    """``ceil(count)`` of a ratio like ``2 / (1 - 0.8)``, whose float is a hair above the integer it means."""
    return math.ceil(round(count, 9))


def per_series_min_windows(level: int) -> int:
    """Backtest windows a series needs for its own shift at ``level``: ``1 / (1 - L)`` (80 %: 5, 95 %: 20), so
    many forecast paths that about one path's worth of its points is expected outside the interval."""
    return _at_least(1 / (1 - level / 100.0))


#: a series' own conformal quantile of ``n`` scores is its ``k = ceil((n + 1) L)``-th smallest, which covers
#: ``k / (n + 1)`` in expectation; where that exceeds L by more than this (issue 11's coverage tolerance) the
#: series keeps the pooled rule. It matters where a series has few scores: a one-step backtest of 7 windows
#: (daily, horizon 1) would take the largest of 7 at 80 % and cover 0.875 by construction.
PER_SERIES_RANK_SLACK = 0.02


def own_quantile_is_close(n_scores: int, level: int) -> bool:
    """Whether the conformal rank of ``n_scores`` scores covers at most ``PER_SERIES_RANK_SLACK`` above ``level``."""
    coverage = level / 100.0
    rank = _conformal_rank(n_scores, coverage)
    return 1 <= rank <= n_scores and rank / (n_scores + 1) <= coverage + PER_SERIES_RANK_SLACK


def _quantiles(frame: pd.DataFrame, level: int, factor, horizon: int, scores: np.ndarray | None = None) -> list[float]:
    """Per-step conformal quantiles of the CQR scores of ``frame`` (intervals rescaled by ``factor``)."""
    scores = _scores(frame, level, factor) if scores is None else scores
    coverage = level / 100.0
    needed = _at_least(2 / (1 - coverage))
    pooled = _conformal_quantile(scores, coverage)
    steps = frame["step"].to_numpy()
    per_step = []
    for step in range(horizon):
        at_step = scores[steps == step]
        per_step.append(_conformal_quantile(at_step, coverage) if len(at_step) >= needed else pooled)
    return per_step


def _held_out_msis(frame: pd.DataFrame, levels: Sequence[int], horizon: int, fit_level: bool) -> float:
    """Mean MSIS over ``levels`` on the newest window of a rule learnt on the older ones."""
    newest = frame["window"].max()
    learn, check = frame[frame["window"] < newest], frame[frame["window"] == newest]
    scores = []
    for level in levels:
        factor_learn = factor_check = 1.0
        if fit_level:
            _, reference, factor_learn = _window_factors(learn, level)
            factor_check = _level_factor(reference, float(_fit_levels(check, level).iloc[0]))
        q = np.asarray(_quantiles(learn, level, factor_learn, horizon))[check["step"].to_numpy()]
        lo, hi = _rescaled(check, level, factor_check)
        unit = np.maximum(hi - lo, 1e-3 * check["scale"].to_numpy(float))
        lo, hi = lo - q * unit, hi + q * unit
        y = check["actual"].to_numpy(float)
        finite = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
        if not finite.any():
            return float("nan")  # nothing to compare on: plain CQR is kept
        interval = interval_score(y[finite], lo[finite], hi[finite], 1 - level / 100)
        scores.append(float(np.mean(interval / check["scale"].to_numpy(float)[finite])))
    return float(np.mean(scores))


def check_calibration_method(method: str) -> None:
    """Refuse a ``backtest.calibration_method`` this module cannot apply, naming the parameter."""
    if method not in METHODS:
        raise ValueError(f"backtest.calibration_method must be one of {METHODS}, got {method!r}")


def check_calibration_params(backtest_params: Mapping | None) -> None:
    """Refuse a ``backtest.calibration_method``, ``per_series_calibration`` or ``calibration_excludes_anomalies``
    this module cannot apply."""
    check_calibration_method((backtest_params or {}).get("calibration_method") or "auto")
    per_series_calibration(backtest_params)
    excludes_anomalies(backtest_params)


def _switch(backtest_params: Mapping | None, key: str) -> bool:
    """``backtest.<key>`` (default true, null too), refused with the parameter's name unless a boolean."""
    value = (backtest_params or {}).get(key, True)
    value = True if value is None else value
    if not isinstance(value, bool):
        raise ValueError(f"backtest.{key} must be true or false, got {value!r}")
    return value


def per_series_calibration(backtest_params: Mapping | None) -> bool:
    """``backtest.per_series_calibration`` (default true)."""
    return _switch(backtest_params, "per_series_calibration")


def excludes_anomalies(backtest_params: Mapping | None) -> bool:
    """``backtest.calibration_excludes_anomalies`` (default true)."""
    return _switch(backtest_params, "calibration_excludes_anomalies")


def conformal_adjustments(backtest: pd.DataFrame, panel: pd.DataFrame, season_length: int,
                          levels: Sequence[int], method: str = "auto", per_series: bool = True,
                          exclude_anomalies: bool = True) -> dict:
    """The per-step, per-level adjustments ``q`` (in units of the interval width) learnt from a backtest.

    Args:
        backtest: ``rolling_origin_backtest`` output (``series_id, timestamp, cutoff, window, lo-L, hi-L, actual``).
        panel: the panel the backtest ran on (for the scales at each cutoff).
        season_length: the MASE scale's lag.
        levels: interval levels to calibrate (each needs its ``lo-L``/``hi-L`` columns).
        method: ``auto`` (default: ``cqr_fit_level`` where it scores a lower MSIS, by more than
            ``FIT_LEVEL_MARGIN``, on the newest window when learnt on the older ones), ``cqr`` or ``cqr_fit_level``
            (``backtest.calibration_method``; module docstring).
        per_series: give each series with enough windows of its own (``per_series_min_windows``) its own shift
            on top of the pooled rule (``backtest.per_series_calibration``; module docstring).
        exclude_anomalies: leave out the backtest points whose actual data_processing flagged as anomalous
            (``is_anomaly`` in ``panel``; ``backtest.calibration_excludes_anomalies``): a strike, an outage or a
            recording error in a backtest window is no sample of the forecast error the intervals are for, and
            one such run widened every interval of its panel (Ansett: 7 % of the backtest points, 97 % of them
            outside the raw 80 % interval).

    Returns:
        ``{"method", "levels": {L: [q_1, ..., q_H]}, "n_scores": {L: [n_1, ...]}}`` (JSON-friendly); with
        ``cqr_fit_level`` also ``fit_level``: ``{"reference": {L: G}, "windows": {L: {window: g}}}`` (the served
        fit's own ``g``, ``served``, is added at its first forecast: ``Forecaster.record_fit_level``,
        ``served_fit_levels``), with ``auto`` ``held_out_msis`` of both rules, and with ``per_series``, where any
        series has enough windows, ``series_shift``: ``{L: {series_id: shift}}`` (added to that series' ``q``).
    """
    check_calibration_method(method)
    frame = backtest.sort_values([SERIES_ID, "window", TIMESTAMP]).copy()
    frame["step"] = frame.groupby([SERIES_ID, "window"], sort=False).cumcount()
    if exclude_anomalies:
        frame = _without_flagged_actuals(frame, panel)
    scale = _cutoff_scales(frame, panel, season_length)
    frame["scale"] = pd.MultiIndex.from_frame(frame[[SERIES_ID, "window"]]).map(scale).to_numpy(float)
    frame = frame[np.isfinite(frame["scale"]) & (frame["scale"] > 0)]
    levels = sorted(int(level) for level in levels)
    horizon = int(frame["step"].max()) + 1 if len(frame) else 0
    held_out = None
    fit_level = method == "cqr_fit_level"
    if method == "auto" and len(frame) and frame["window"].nunique() >= 2 and levels:
        held_out = {"cqr": _held_out_msis(frame, levels, horizon, False),
                    "cqr_fit_level": _held_out_msis(frame, levels, horizon, True)}
        fit_level = bool(held_out["cqr_fit_level"] < held_out["cqr"] * (1 - FIT_LEVEL_MARGIN))
    result = {"method": "cqr_fit_level" if fit_level else "cqr_scaled_pooled", "levels": {}, "n_scores": {}}
    if held_out is not None:
        result["held_out_msis"] = held_out
    if fit_level:
        result["fit_level"] = {"reference": {}, "windows": {}}
    steps = frame["step"].to_numpy()
    for level in levels:
        factor = 1.0
        if fit_level and len(frame):
            windows, reference, factor = _window_factors(frame, level)
            result["fit_level"]["reference"][level] = reference
            result["fit_level"]["windows"][level] = {int(w): float(g) for w, g in windows.items()}
        scores = _scores(frame, level, factor)
        per_step = [float(q) for q in _quantiles(frame, level, factor, horizon, scores)]
        result["levels"][level] = per_step
        result["n_scores"][level] = [int((steps == step).sum()) for step in range(horizon)]
        if per_series:
            shifts = _series_shifts(frame, scores - np.asarray(per_step)[steps], level)
            if shifts:
                result.setdefault("series_shift", {})[level] = shifts
    return result


def _without_flagged_actuals(frame: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """The backtest rows whose actual data_processing did not flag as anomalous (``is_anomaly`` in ``panel``)."""
    if IS_ANOMALY not in panel.columns:
        return frame
    flagged = panel.loc[panel[IS_ANOMALY].fillna(False).astype(bool), [SERIES_ID, TIMESTAMP]]
    if flagged.empty:
        return frame
    keys = pd.MultiIndex.from_frame(frame[[SERIES_ID, TIMESTAMP]])
    return frame[~keys.isin(pd.MultiIndex.from_frame(flagged))]


def _series_shifts(frame: pd.DataFrame, excess: np.ndarray, level: int) -> dict[str, float]:
    """Each series' own shift at ``level``: the conformal quantile of its scores' excess over the pooled per-step
    ``q``, for the series with at least ``per_series_min_windows(level)`` backtest windows whose count of scores
    gives a rank within ``PER_SERIES_RANK_SLACK`` of ``level`` (``own_quantile_is_close``; none: {})."""
    windows = frame.groupby(SERIES_ID, sort=False)["window"].nunique()
    counts = frame.groupby(SERIES_ID, sort=False)["window"].size()
    eligible = {series_id for series_id in windows.index[windows >= per_series_min_windows(level)]
                if own_quantile_is_close(int(counts[series_id]), level)}
    if not eligible:
        return {}
    own = pd.DataFrame({SERIES_ID: frame[SERIES_ID].to_numpy(), "excess": excess})
    own = own[own[SERIES_ID].isin(eligible)]
    return {str(series_id): _conformal_quantile(values.to_numpy(float), level / 100.0)
            for series_id, values in own.groupby(SERIES_ID, sort=True)["excess"]}


def served_fit_levels(forecast: pd.DataFrame, scales: Mapping[str, float], levels: Sequence[int]) -> dict[int, float]:
    """The served fit's mean interval width in series scales per level (its ``g``), from its raw forecast of
    every series it serves (recorded once, so a forecast of some series is rescaled like one of all)."""
    scale = forecast[SERIES_ID].astype(str).map(scales).to_numpy(float)
    usable = np.isfinite(scale) & (scale > 0)
    return {int(level): float(np.mean(((forecast[f"hi-{level}"] - forecast[f"lo-{level}"]).to_numpy(float)
                                       / np.where(usable, scale, 1.0))[usable]))
            for level in levels if f"lo-{level}" in forecast}


def _conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    scores = np.sort(scores[np.isfinite(scores)])
    n = len(scores)
    if n == 0:
        return 0.0
    rank = min(_conformal_rank(n, coverage), n)  # beyond n: the largest score (the interval cannot be wider)
    return float(scores[rank - 1])


def _conformal_rank(n: int, coverage: float) -> int:
    """The rank of the conformal quantile of ``n`` scores, ``ceil((n + 1) coverage)`` (may exceed ``n``);
    ``own_quantile_is_close`` reads the same rank the quantile takes."""
    return math.ceil((n + 1) * coverage)


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
    fit_level = adjustments.get("fit_level")
    for level, per_step in adjustments["levels"].items():
        level = int(level)
        if f"lo-{level}" not in forecast or not per_step:
            continue
        q = np.asarray(per_step, float)[np.minimum(step, len(per_step) - 1)]  # beyond the horizon: the last step's
        shifts = adjustments.get("series_shift") or {}
        shifts = shifts.get(level, shifts.get(str(level)))
        if shifts:  # the series with windows enough for their own shift (conformal_adjustments)
            q = q + forecast[SERIES_ID].astype(str).map(shifts).fillna(0.0).to_numpy(float)
        lo, hi = forecast[f"lo-{level}"].to_numpy(float), forecast[f"hi-{level}"].to_numpy(float)
        if fit_level:
            lo, hi = _rescaled(forecast, level, _fit_factor(forecast, fit_level, level, by))
        unit = np.maximum(hi - lo, 1e-3 * scale)
        forecast[f"lo-{level}"] = lo - q * unit
        forecast[f"hi-{level}"] = hi + q * unit
    return forecast


def _fit_factor(forecast: pd.DataFrame, fit_level: dict, level: int, by: Sequence[str]):
    """``G / g`` of ``cqr_fit_level``: per backtest window (``window`` in ``by``: that window's recorded ``g``),
    else the served fit's (``served``; 1 where it was not recorded)."""
    reference = _by_level(fit_level["reference"], level)
    if "window" in by:
        windows = {int(w): g for w, g in _by_level(fit_level["windows"], level).items()}
        return _level_factor(reference, forecast["window"].astype(int).map(windows).to_numpy(float))
    served = fit_level.get("served") or {}
    return _level_factor(reference, _by_level(served, level)) if served else 1.0


def _by_level(mapping: Mapping, level: int):
    """A per-level entry whether its key is the int or, after a JSON round trip, the string."""
    return mapping[level] if level in mapping else mapping[str(level)]


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
                         panel: pd.DataFrame, season_length: int, levels: Sequence[int],
                         per_series: bool = True, exclude_anomalies: bool = True) -> dict:
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
        panel, season_length, levels, per_series, exclude_anomalies: as for ``conformal_adjustments``.
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
    # plain CQR: the median of calibrated members has no fit of its own whose level could be recorded
    result = conformal_adjustments(median, panel, season_length, levels, method="cqr", per_series=per_series,
                                   exclude_anomalies=exclude_anomalies)
    result["method"] = "cqr_scaled_pooled_on_calibrated_median"
    result["members"] = sorted(member_backtests)
    return result
