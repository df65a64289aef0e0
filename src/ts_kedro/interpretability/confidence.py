"""Per-series forecast confidence in [0, 1] from the chosen model's backtest: calibrated and sharp intervals score high.

Formula (per series s, chosen model m = selection["choice"][s], over its backtest points):

- empirical coverage ``c_L`` = share of backtest actuals inside ``[lo-L, hi-L]``, for every level L (nominal n_L = L/100);
- calibration ``cal_L = max(0, 1 - |c_L - n_L| / max(n_L, 1 - n_L))``: 1 when the interval covers exactly as often as
  promised, 0 at the worst possible miss (never or, for L < 50, always covering);
- relative width ``w_L`` = mean(hi-L - lo-L) / mean(|value|) of the series in the panel (its scale);
- ``calibration`` = mean of cal_L over levels, ``sharpness`` = 1 / (1 + mean of w_L over levels);
- ``confidence = calibration * sharpness``.

A forecast is trusted only when its intervals are honest (calibration) AND narrow compared with the series level
(sharpness): a perfectly calibrated interval as wide as the series' level scores 0.5, one that misses half the
time scores low whatever its width.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ts_kedro.interpretability.errors import InterpretabilityError, require_columns

logger = logging.getLogger(__name__)


def confidence_scores(
    candidate_backtests: pd.DataFrame, selection: dict, panel: pd.DataFrame, levels: Sequence[int]
) -> pd.DataFrame:
    """Confidence per series from the chosen model's backtest coverage and interval width (formula in the module doc).

    Args:
        candidate_backtests: stacked backtests with a ``model`` column (model_selection's ``candidate_backtests``).
        selection: ``model_selection`` JSON; ``choice`` maps series to model (``overall_model`` for the rest).
        panel: canonical panel (``primary_panel``) giving each series' scale, mean |value|.
        levels: interval levels in percent (``params:panel.levels``).

    Returns:
        One row per series: ``series_id, model, n_points, validated, coverage-L, calibration-L, relative_width-L,
        calibration, sharpness, confidence``; a series in ``selection["unvalidated_series"]`` (too short for one
        backtest window) has ``validated`` false, ``n_points`` 0, NaN coverage and calibration, confidence 0.
    """
    levels = [int(level) for level in levels]
    if not levels:
        raise InterpretabilityError("confidence_scores needs at least one interval level (params:panel.levels)")
    bounds = [f"{side}-{level}" for level in levels for side in ("lo", "hi")]
    require_columns(candidate_backtests, ["model", "series_id", "actual", *bounds], "candidate_backtests")
    require_columns(panel, ["series_id", "value"], "primary_panel")
    choice = dict(selection.get("choice") or {})
    overall = selection.get("overall_model")
    ids = panel["series_id"]
    scale = panel["value"].abs().groupby(ids).mean()  # sorted ids, as the rows are
    # the chosen model's rows of every series, reduced by group-bys over all rows at once (a pandas frame per
    # series held 100,000 frames in memory and took minutes)
    chosen_model = candidate_backtests["series_id"].map(choice).fillna(overall)
    chosen = candidate_backtests[candidate_backtests["model"] == chosen_model].dropna(subset=["actual"])
    by_series = chosen["series_id"]
    n_points = by_series.value_counts().reindex(scale.index)
    unvalidated = set(selection.get("unvalidated_series") or ())
    missing = [s for s in n_points.index[n_points.isna()] if str(s) not in unvalidated]
    if missing:
        raise InterpretabilityError(
            f"series {missing[0]!r}: no backtest rows of its chosen model {choice.get(missing[0], overall)!r} in "
            "candidate_backtests; rerun model_selection so that selection and backtests come from the same run"
        )
    # A series too short for one backtest window (model_selection's unvalidated_series) has no evidence for its
    # intervals: confidence 0, validated false, and NaN for what was not measured.
    validated = n_points.notna().to_numpy()
    columns = {"series_id": scale.index.to_numpy(), "model": [choice.get(s, overall) for s in scale.index],
               "n_points": n_points.fillna(0).to_numpy(np.int64), "validated": validated}
    actual = chosen["actual"].to_numpy(float)
    scale_values = scale.to_numpy(float)
    calibrations, widths = [], []
    for level in levels:
        lo, hi = chosen[f"lo-{level}"].to_numpy(float), chosen[f"hi-{level}"].to_numpy(float)
        inside = pd.Series(((actual >= lo) & (actual <= hi)).astype(float), index=chosen.index)
        coverage = inside.groupby(by_series).mean().reindex(scale.index).to_numpy(float)
        nominal = level / 100
        calibration = np.maximum(0.0, 1.0 - np.abs(coverage - nominal) / max(nominal, 1.0 - nominal))
        mean_width = pd.Series(hi - lo, index=chosen.index).groupby(by_series).mean().reindex(scale.index).to_numpy(float)
        # a constant-zero series has scale 0: a zero-width interval is perfectly sharp, any positive width infinitely wide
        with np.errstate(divide="ignore", invalid="ignore"):
            width = np.where(scale_values > 0, mean_width / scale_values, np.where(mean_width == 0, 0.0, np.inf))
        columns.update({f"coverage-{level}": coverage, f"calibration-{level}": calibration,
                        f"relative_width-{level}": width})
        calibrations.append(calibration)
        widths.append(width)
    columns["calibration"] = np.mean(calibrations, axis=0)
    columns["sharpness"] = 1.0 / (1.0 + np.mean(widths, axis=0))
    columns["confidence"] = np.where(validated, columns["calibration"] * columns["sharpness"], 0.0)
    scores = pd.DataFrame(columns)
    logger.info("confidence: %d series, median %.3f (min %.3f, max %.3f)", len(scores),
                scores["confidence"].median(), scores["confidence"].min(), scores["confidence"].max())
    return scores


def attach_confidence(forecasts: pd.DataFrame, confidence: pd.DataFrame) -> pd.DataFrame:
    """The forecasts with the ``confidence`` of their series as an extra column (row order kept).

    Args:
        forecasts: future forecasts (``series_id, timestamp, mean, lo/hi, model``).
        confidence: output of :func:`confidence_scores`.

    Returns:
        ``forecasts`` plus ``confidence``.
    """
    require_columns(forecasts, ["series_id"], "forecasts")
    require_columns(confidence, ["series_id", "confidence"], "confidence_scores")
    by_series = confidence.set_index("series_id")["confidence"]
    attached = forecasts.assign(confidence=forecasts["series_id"].map(by_series))
    missing = attached.loc[attached["confidence"].isna(), "series_id"].unique()
    if len(missing):
        raise InterpretabilityError(
            f"forecasts hold series {sorted(missing)[:5]} ({len(missing)} in all) without a confidence score; "
            "forecasts and confidence_scores must come from the same run"
        )
    return attached
