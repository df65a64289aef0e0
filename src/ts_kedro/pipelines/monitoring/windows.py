"""Drift windows: each series cut into a reference window and the recent window, as wide frames for Evidently."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import profile_for_panel
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError

logger = logging.getLogger(__name__)

SEASONAL_DIFF = "seasonal_diff"
SEPARATOR = "|"  # wide drift columns are "<series_id>|<feature>"; series ids never contain it in M4-style data


def build_drift_windows(
    history_primary_panel: pd.DataFrame, monitoring: dict[str, Any], panel: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut each series into a reference window and the recent window, as wide frames for Evidently.

    Monitored columns per series: the target, its seasonal difference (value minus value one season
    earlier: a change of level or seasonal shape shows here even when the marginal spread looks alike),
    and every numeric covariate. Imputed points are left out (they are not observations).

    Args:
        history_primary_panel: regular canonical panel of the whole history.
        monitoring: ``monitoring`` parameters (``reference_window_steps``, ``recent_window_steps``).
        panel: shared ``panel`` parameters (``season_length``).

    Returns:
        ``drift_reference`` and ``drift_current``: one column ``<series_id>|<feature>`` each, rows = steps
        (series shorter than both windows are skipped).
    """
    profile = profile_for_panel(history_primary_panel, panel, monitoring_params=monitoring)
    reference_steps = profile.monitoring["reference_window_steps"]
    recent_steps = profile.monitoring["recent_window_steps"]
    if reference_steps < 2 or recent_steps < 2:
        raise MonitoringConfigError("monitoring.reference_window_steps and recent_window_steps must be >= 2")
    season = profile.season_length
    canonical = {SERIES_ID, TIMESTAMP, VALUE, "is_imputed", "is_anomaly"}
    covariates = [c for c in history_primary_panel.columns
                  if c not in canonical and pd.api.types.is_numeric_dtype(history_primary_panel[c])]
    reference, current = {}, {}
    for series_id, series in history_primary_panel.groupby(SERIES_ID, sort=True):
        series = series.sort_values(TIMESTAMP)
        features = pd.DataFrame({VALUE: series[VALUE].to_numpy(),
                                 SEASONAL_DIFF: series[VALUE].diff(season).to_numpy(),
                                 **{c: series[c].to_numpy() for c in covariates}})
        if "is_imputed" in series:
            features.loc[series["is_imputed"].to_numpy(), VALUE] = np.nan
        if len(features) < reference_steps + recent_steps:
            logger.warning("series %s has %d steps, fewer than reference %d + recent %d: not checked for drift",
                           series_id, len(features), reference_steps, recent_steps)
            continue
        recent = features.iloc[-recent_steps:]
        before = features.iloc[-recent_steps - reference_steps:-recent_steps]
        for feature in features.columns:
            reference[f"{series_id}{SEPARATOR}{feature}"] = before[feature].to_numpy()
            current[f"{series_id}{SEPARATOR}{feature}"] = recent[feature].to_numpy()
    if not reference:
        raise MonitoringConfigError(
            f"no series is longer than reference_window_steps + recent_window_steps = {reference_steps + recent_steps}; "
            "shorten the windows in parameters_monitoring.yml"
        )
    return pd.DataFrame(reference), pd.DataFrame(current)
