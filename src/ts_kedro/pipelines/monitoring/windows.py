"""Drift windows: each series' monitored features, cut into a reference window and the recent window for Evidently."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import FrequencyProfile, profile_for_panel
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError

logger = logging.getLogger(__name__)

SEASONAL_DIFF = "seasonal_diff"
SHORT_DIFF = "short_diff"  # the difference at one season (one step without a season): the series' noise
SEPARATOR = "|"  # wide drift columns are "<series_id>|<feature>"; split at the last one (split_column)
MIN_POINTS = 2  # the fewest finite values a window needs for a drift test
_CANONICAL = {SERIES_ID, TIMESTAMP, VALUE, "is_imputed", "is_anomaly"}


def split_column(column: str) -> tuple[str, str]:
    """``(series_id, feature)`` of a drift column ``<series_id>|<feature>``, split at the last separator: a
    user's series id may hold '|' (composite keys such as 'store|item'); feature names never do
    (``series_features`` writes a covariate's '|' as '/')."""
    series_id, feature = column.rsplit(SEPARATOR, 1)
    return series_id, feature


def deciding_features(series_feature: str | list[str] | None) -> list[str]:
    """``data_drift.series_feature`` as a list: the features whose drift makes a series drift (any of them);
    default the seasonal difference."""
    series_feature = series_feature or SEASONAL_DIFF
    return [series_feature] if isinstance(series_feature, str) else [str(f) for f in series_feature]


def drift_profile(history_primary_panel: pd.DataFrame, monitoring: dict[str, Any],
                  panel: dict[str, Any]) -> FrequencyProfile:
    """The frequency profile of the history, with the monitoring windows checked."""
    profile = profile_for_panel(history_primary_panel, panel, monitoring_params=monitoring)
    if profile.monitoring["reference_window_steps"] < 2 or profile.monitoring["recent_window_steps"] < 2:
        raise MonitoringConfigError("monitoring.reference_window_steps and recent_window_steps must be >= 2")
    return profile


def series_features(history_primary_panel: pd.DataFrame,
                    profile: FrequencyProfile) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(series_id, features)`` per series long enough for both windows; rows = steps, oldest first.

    Features: the target, its seasonal difference at ``seasonal_lag_steps`` (value minus the value a whole number
    of seasons earlier, before the recent window: level, trend and seasonal-shape changes show here, and the
    known seasonality, which makes a short recent window look unlike its reference, is removed), its short
    difference at one season (one step without a season; left out where that is the seasonal lag): the spread of
    what one season does not repeat, so a change of the noise's variance shows there undiluted by the level's
    wandering over the longer lag; and every numeric covariate. Imputed points are left out (they are not
    observations).
    """
    reference_steps = profile.monitoring["reference_window_steps"]
    recent_steps = profile.monitoring["recent_window_steps"]
    lag = profile.monitoring["seasonal_lag_steps"]
    short_lag = max(int(profile.season_length), 1)
    covariates = [c for c in history_primary_panel.columns
                  if c not in _CANONICAL and pd.api.types.is_numeric_dtype(history_primary_panel[c])]
    for series_id, series in history_primary_panel.groupby(SERIES_ID, sort=True):
        series = series.sort_values(TIMESTAMP)
        if len(series) < reference_steps + recent_steps:
            logger.warning("series %s has %d steps, fewer than reference %d + recent %d: not checked for drift",
                           series_id, len(series), reference_steps, recent_steps)
            continue
        values = series[VALUE].astype(float)
        if "is_imputed" in series:
            values = values.mask(series["is_imputed"].to_numpy(dtype=bool))
        short = {SHORT_DIFF: values.diff(short_lag).to_numpy()} if short_lag != lag else {}
        yield str(series_id), pd.DataFrame({VALUE: values.to_numpy(), SEASONAL_DIFF: values.diff(lag).to_numpy(),
                                            **short, **{c.replace(SEPARATOR, "/"): series[c].to_numpy(dtype=float)
                                                        for c in covariates}})


def build_drift_windows(
    history_primary_panel: pd.DataFrame, monitoring: dict[str, Any], panel: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut each series' features (``series_features``) into a reference window and the recent window.

    A feature whose window holds fewer than two observed values (a seasonal difference reaching before the start
    of a short series) is left out for that series.

    Args:
        history_primary_panel: regular canonical panel of the whole history.
        monitoring: ``monitoring`` parameters (windows and lag; null = derived by the frequency profile).
        panel: shared ``panel`` parameters.

    Returns:
        ``drift_reference`` and ``drift_current``: one column ``<series_id>|<feature>`` each, rows = steps.
    """
    profile = drift_profile(history_primary_panel, monitoring, panel)
    reference_steps = profile.monitoring["reference_window_steps"]
    recent_steps = profile.monitoring["recent_window_steps"]
    reference, current = {}, {}
    for series_id, features in series_features(history_primary_panel, profile):
        recent = features.iloc[-recent_steps:]
        before = features.iloc[-recent_steps - reference_steps:-recent_steps]
        for feature in features.columns:
            if before[feature].notna().sum() < MIN_POINTS or recent[feature].notna().sum() < MIN_POINTS:
                logger.info("series %s: %s has too few observed values in a drift window, not checked",
                            series_id, feature)
                continue
            reference[f"{series_id}{SEPARATOR}{feature}"] = before[feature].to_numpy()
            current[f"{series_id}{SEPARATOR}{feature}"] = recent[feature].to_numpy()
    if not reference:
        # a young panel (or windows set longer than the history): the cycle goes on to inference without a data
        # drift check, and detect_data_drift says so; stopping here would leave Day N without forecasts
        longest = int(history_primary_panel.groupby(SERIES_ID).size().max()) if len(history_primary_panel) else 0
        logger.warning("data drift not checked: no series is longer than reference_window_steps + "
                       "recent_window_steps = %d (longest: %d steps); it is checked once a series is, or shorten the "
                       "windows in parameters_monitoring.yml", reference_steps + recent_steps, longest)
    return pd.DataFrame(reference), pd.DataFrame(current)
