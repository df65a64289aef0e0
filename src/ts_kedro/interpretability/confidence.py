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


def _calibration(coverage: float, nominal: float) -> float:
    return float(max(0.0, 1.0 - abs(coverage - nominal) / max(nominal, 1.0 - nominal)))


def _relative_width(width: float, scale: float) -> float:
    # a constant-zero series has scale 0: a zero-width interval is perfectly sharp, any positive width infinitely wide
    if scale > 0:
        return width / scale
    return 0.0 if width == 0 else np.inf


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
        One row per series: ``series_id, model, n_points, coverage-L, calibration-L, relative_width-L,
        calibration, sharpness, confidence``.
    """
    levels = [int(level) for level in levels]
    if not levels:
        raise InterpretabilityError("confidence_scores needs at least one interval level (params:panel.levels)")
    bounds = [f"{side}-{level}" for level in levels for side in ("lo", "hi")]
    require_columns(candidate_backtests, ["model", "series_id", "actual", *bounds], "candidate_backtests")
    require_columns(panel, ["series_id", "value"], "primary_panel")
    choice = dict(selection.get("choice") or {})
    overall = selection.get("overall_model")
    scale = panel.groupby("series_id")["value"].apply(lambda v: float(np.abs(v).mean()))
    # each series' chosen model's rows, grouped once (a filter per series is quadratic in the panel size)
    chosen_model = candidate_backtests["series_id"].map(choice).fillna(overall)
    chosen = candidate_backtests[candidate_backtests["model"] == chosen_model].dropna(subset=["actual"])
    by_series = dict(tuple(chosen.groupby("series_id", sort=False)))
    empty = chosen.iloc[:0]
    rows = []
    for series_id in scale.index:
        model = choice.get(series_id, overall)
        points = by_series.get(series_id, empty)
        if points.empty:
            raise InterpretabilityError(
                f"series {series_id!r}: no backtest rows of its chosen model {model!r} in candidate_backtests; "
                "rerun model_selection so that selection and backtests come from the same run"
            )
        row = {"series_id": series_id, "model": model, "n_points": len(points)}
        actual = points["actual"].to_numpy(float)
        calibrations, widths = [], []
        for level in levels:
            lo, hi = points[f"lo-{level}"].to_numpy(float), points[f"hi-{level}"].to_numpy(float)
            coverage = float(np.mean((actual >= lo) & (actual <= hi)))
            calibration = _calibration(coverage, level / 100)
            width = _relative_width(float(np.mean(hi - lo)), scale[series_id])
            row.update({f"coverage-{level}": coverage, f"calibration-{level}": calibration,
                        f"relative_width-{level}": width})
            calibrations.append(calibration)
            widths.append(width)
        row["calibration"] = float(np.mean(calibrations))
        row["sharpness"] = float(1.0 / (1.0 + np.mean(widths)))
        row["confidence"] = row["calibration"] * row["sharpness"]
        rows.append(row)
    scores = pd.DataFrame(rows)
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
