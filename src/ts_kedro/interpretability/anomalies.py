"""Anomalies on history (the data_processing flag) and on newly arrived actuals (outside intervals, residual outliers).

An actual is anomalous when it falls outside the champion's ``level`` prediction interval, or when its residual
(actual - mean) is an outlier among the series' residuals by robust z-score:
``z = 0.6745 * (r - median(r)) / MAD(r)`` (Iglewicz & Hoaglin; |z| > 3.5 is their customary threshold). The MAD is
robust to the very outliers it looks for, unlike the standard deviation.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ts_kedro.interpretability.errors import InterpretabilityError, require_columns

logger = logging.getLogger(__name__)

_MAD_TO_Z = 0.6745  # MAD of a standard normal: makes z comparable to a standard score
_MEAN_AD_TO_Z = 0.7979  # mean absolute deviation of a standard normal, for series whose MAD is 0


def history_anomalies(panel: pd.DataFrame) -> pd.DataFrame:
    """Points of the history flagged by data_processing's anomaly detector (``is_anomaly``).

    Returns:
        ``series_id, timestamp, value, source="history", reason``.
    """
    require_columns(panel, ["series_id", "timestamp", "value", "is_anomaly"], "primary_panel")
    flagged = panel.loc[panel["is_anomaly"].astype(bool), ["series_id", "timestamp", "value"]]
    return flagged.assign(source="history", reason="flagged by the history anomaly detector").reset_index(drop=True)


def robust_z_scores(residuals: pd.Series, groups: pd.Series) -> pd.Series:
    """Robust z-score of each residual within its group (series): 0.6745 (r - median) / MAD.

    A group whose MAD is 0 (more than half the residuals equal) falls back to the mean absolute deviation; a group
    with no spread at all gets z = 0.
    """
    def per_group(r: pd.Series) -> pd.Series:
        centred = r - r.median()
        mad = centred.abs().median()
        if mad > 0:
            return _MAD_TO_Z * centred / mad
        mean_ad = centred.abs().mean()
        return _MEAN_AD_TO_Z * centred / mean_ad if mean_ad > 0 else centred * 0.0

    return residuals.groupby(groups, sort=False, group_keys=False).apply(per_group).reindex(residuals.index)


def join_actuals(forecasts: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """Forecasts with the actual ``value`` that has since arrived (inner join: only points with an actual).

    Use on Day N: ``champion_forecasts`` (made before) joined with the new ``history_primary_panel``.
    """
    require_columns(forecasts, ["series_id", "timestamp", "mean"], "forecasts")
    require_columns(panel, ["series_id", "timestamp", "value"], "panel")
    forecasts = forecasts.assign(timestamp=pd.to_datetime(forecasts["timestamp"]))
    actuals = panel[["series_id", "timestamp", "value"]].rename(columns={"value": "actual"})
    return forecasts.drop(columns=["actual"], errors="ignore").merge(actuals, on=["series_id", "timestamp"])


def actuals_anomalies(forecasts_with_actuals: pd.DataFrame, level: int, z_threshold: float) -> pd.DataFrame:
    """Score every actual against the forecast made for it and flag the anomalous ones.

    Args:
        forecasts_with_actuals: ``series_id, timestamp, mean, lo-<level>, hi-<level>, actual`` (a backtest, or
            :func:`join_actuals` of a forecast and the new data).
        level: interval level in percent whose bounds define "outside the interval".
        z_threshold: residual robust |z| above which a point is an outlier (3.5 is customary).

    Returns:
        Every scored point with ``residual, robust_z, outside_interval, residual_outlier, is_anomaly, reason``.
    """
    lo, hi = f"lo-{int(level)}", f"hi-{int(level)}"
    require_columns(forecasts_with_actuals, ["series_id", "timestamp", "mean", lo, hi, "actual"],
                    "forecasts with actuals")
    if z_threshold <= 0:
        raise InterpretabilityError(f"z_threshold must be positive, got {z_threshold} (parameters_reporting.yml)")
    scored = forecasts_with_actuals.dropna(subset=["actual"]).reset_index(drop=True)
    scored["residual"] = scored["actual"] - scored["mean"]
    scored["robust_z"] = robust_z_scores(scored["residual"], scored["series_id"])
    below, above = scored["actual"] < scored[lo], scored["actual"] > scored[hi]
    scored["outside_interval"] = below | above
    scored["residual_outlier"] = scored["robust_z"].abs() > z_threshold
    scored["is_anomaly"] = scored["outside_interval"] | scored["residual_outlier"]
    reasons = np.select(
        [below & scored["residual_outlier"], above & scored["residual_outlier"], below, above,
         scored["residual_outlier"]],
        [f"below {lo} and residual |z|>{z_threshold:g}", f"above {hi} and residual |z|>{z_threshold:g}",
         f"below {lo}", f"above {hi}", f"residual |z|>{z_threshold:g}"],
        default="",
    )
    scored["reason"] = reasons
    logger.info("actuals anomalies: %d of %d points (%d outside the %d%% interval, %d residual outliers)",
                int(scored["is_anomaly"].sum()), len(scored), int(scored["outside_interval"].sum()), level,
                int(scored["residual_outlier"].sum()))
    return scored
