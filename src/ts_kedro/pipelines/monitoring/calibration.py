"""Drift thresholds calibrated on each series' own history: an empirical null per monitored column.

Why: a drift test on one recent window of autocorrelated data has no valid fixed threshold. A KS p-value assumes
independent samples, and a distance such as Wasserstein has no scale that means the same for every series. So
each column is scored, with the same Evidently test, on its own earlier windows of the same geometry (a
reference window followed by a window as long as the recent one); the recent window drifts when its score is
beyond what those earlier windows reached (``quantile``). This is the rank test of a new observation against
the scores of the same statistic on the series' own past, in the spirit of conformal change detection.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.pipelines.monitoring.data_drift import drift_method, drift_score
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
from ts_kedro.pipelines.monitoring.windows import (
    MIN_POINTS,
    SEPARATOR,
    deciding_features,
    drift_profile,
    series_features,
    split_column,
)

logger = logging.getLogger(__name__)

SOURCE_SERIES, SOURCE_PANEL = "series", "panel"


def calibrate_drift_thresholds(history_primary_panel: pd.DataFrame, monitoring: dict[str, Any],
                               panel: dict[str, Any]) -> dict[str, Any]:
    """Per monitored column, the drift threshold its own earlier windows give.

    Calibration windows end every ``calibration_stride_steps`` before the recent window (the newest first, at
    most ``max_windows``), each with a reference window of the same length before it. The threshold is the
    ``quantile`` of their scores (the ``1 - quantile`` quantile for a p-value test), never laxer than the test's
    fixed ``threshold``. A column with fewer than ``min_windows`` own windows gets the pooled windows of that
    feature over all series (the scores are scale-free: normed distances or p-values); with fewer still, the
    fixed threshold.

    Args:
        history_primary_panel: regular canonical panel of the whole history.
        monitoring: ``monitoring`` parameters (``data_drift.method``, ``threshold``, ``calibration``).
        panel: shared ``panel`` parameters.

    Returns:
        ``drift_thresholds``: ``{method, quantile, fixed_threshold, windows, columns: {"<series_id>|<feature>":
        {threshold, windows, source}}}``; ``columns`` is empty when ``calibration.quantile`` is null (the fixed
        threshold then applies to every column).
    """
    settings = monitoring.get("data_drift", {})
    calibration = settings.get("calibration") or {}
    method, fixed, is_p_value = drift_method(settings)
    quantile = calibration.get("quantile")
    profile = drift_profile(history_primary_panel, monitoring, panel)
    geometry = profile.monitoring
    # the windows' geometry in steps, for the verdict (how far back a change stays inside them)
    windows = {key: int(geometry[key]) for key in ("reference_window_steps", "recent_window_steps",
                                                   "seasonal_lag_steps")}
    result = {"method": method, "quantile": quantile, "fixed_threshold": fixed, "p_value": is_p_value,
              "windows": windows, "columns": {}}
    if quantile is None:
        return result
    if not 0 < float(quantile) <= 1:
        raise MonitoringConfigError(f"monitoring.data_drift.calibration.quantile must be in (0, 1], got {quantile}")
    min_windows = int(calibration.get("min_windows") or 1)
    max_windows = int(calibration.get("max_windows") or 0) or None
    scores: dict[str, list[float]] = {}
    for series_id, features in series_features(history_primary_panel, profile):
        before = features.iloc[:-geometry["recent_window_steps"]]
        for feature in features.columns:
            scores[f"{series_id}{SEPARATOR}{feature}"] = _window_scores(
                before[feature].to_numpy(dtype=float), geometry["reference_window_steps"],
                geometry["recent_window_steps"], geometry["calibration_stride_steps"], max_windows, method)

    pooled: dict[str, list[float]] = {}
    for column, values in scores.items():
        pooled.setdefault(split_column(column)[1], []).extend(values)
    # Several deciding features (series_feature a list): a series drifts when any of them does, so the false-flag
    # budget 1 - quantile is split between them (Bonferroni), keeping a clean series' chance of a flag the same
    deciding = deciding_features(settings.get("series_feature"))
    for column, values in scores.items():
        feature = split_column(column)[1]
        budget = (1 - float(quantile)) / (len(deciding) if feature in deciding else 1)
        tail = budget if is_p_value else 1 - budget
        source = SOURCE_SERIES
        if len(values) < min_windows:
            values, source = pooled[feature], SOURCE_PANEL
            if len(values) < min_windows:
                continue
        threshold = float(np.quantile(values, tail))
        threshold = min(threshold, fixed) if is_p_value else max(threshold, fixed)
        result["columns"][column] = {"threshold": threshold, "windows": len(values), "source": source}
    own = sum(entry["source"] == SOURCE_SERIES for entry in result["columns"].values())
    logger.info("drift thresholds: %d columns calibrated on their own history, %d on the pooled panel, %d fixed",
                own, len(result["columns"]) - own, len(scores) - len(result["columns"]))
    return result


def _window_scores(values: np.ndarray, reference_steps: int, recent_steps: int, stride: int,
                   max_windows: int | None, method: str) -> list[float]:
    """Scores of the earlier windows of one column (``values``: the steps before the recent window), newest first;
    windows start at the column's first observed value (a seasonal difference starts one lag in)."""
    scores: list[float] = []
    observed = np.flatnonzero(np.isfinite(values))
    if not len(observed):
        return scores
    end = len(values)
    while end - recent_steps - reference_steps >= observed[0] and (max_windows is None or len(scores) < max_windows):
        current = values[end - recent_steps:end]
        reference = values[end - recent_steps - reference_steps:end - recent_steps]
        current, reference = current[np.isfinite(current)], reference[np.isfinite(reference)]
        if len(current) >= MIN_POINTS and len(reference) >= MIN_POINTS:
            scores.append(drift_score(reference, current, method))
        end -= stride
    return scores
