"""Performance drift: realized error of the champion's last forecasts on the actuals that arrived since."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.evaluation import metrics as m4
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import profile_for_panel
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError

logger = logging.getLogger(__name__)

REALIZED_METRICS = ("smape", "mase", "mae", "rmse", "mape", "owa")


def select_previous_forecasts(champion_forecast_versions: dict[str, Callable]) -> pd.DataFrame:
    """The newest saved champion forecasts (an empty frame before the first inference run).

    Args:
        champion_forecast_versions: ``{version/name: load function}`` of every saved ``champion_forecasts``.

    Returns:
        ``previous_champion_forecasts``.
    """
    if not champion_forecast_versions:
        logger.info("no champion_forecasts version saved yet: performance drift cannot be measured")
        return pd.DataFrame(columns=[SERIES_ID, TIMESTAMP, "mean"])
    newest = max(champion_forecast_versions)
    logger.info("checking champion forecasts version %s", newest)
    return champion_forecast_versions[newest]()


def measure_performance_drift(
    previous_forecasts: pd.DataFrame,
    history_primary_panel: pd.DataFrame,
    monitoring: dict[str, Any],
    panel: dict[str, Any],
) -> dict[str, Any]:
    """Realized error of the champion's last forecasts on the actuals that arrived since, vs its backtest error.

    Only observed (not imputed) actuals count. The realized metric is the one the champion was selected
    on (``champion_metric`` column), averaged over series like the backtest score, so the ratio
    ``realized / backtest`` is 1 when the champion does as well as in its backtest.

    Args:
        previous_forecasts: the newest saved champion forecasts (``champion_metric``,
            ``champion_backtest_score`` columns).
        history_primary_panel: the regular history, with the actuals that arrived since.
        monitoring: ``monitoring`` parameters (``performance_drift.min_points_per_series``).
        panel: shared ``panel`` parameters.

    Returns:
        ``{available, metric, realized, backtest, ratio, n_series, n_points, per_series}``; ``available`` is
        False (with a reason) when nothing can be compared yet.
    """
    settings = monitoring.get("performance_drift", {})
    profile = profile_for_panel(history_primary_panel, panel)
    # null: half a horizon of new actuals (an error over fewer points says little)
    min_points = settings.get("min_points_per_series")
    min_points = max(1, profile.horizon // 2) if min_points is None else int(min_points)
    if previous_forecasts.empty:
        return {"available": False, "reason": "no earlier champion forecasts saved yet"}
    for column in ("champion_metric", "champion_backtest_score"):
        if column not in previous_forecasts:
            return {"available": False, "reason": f"saved forecasts lack column {column!r}: rerun inference"}
    metric = str(previous_forecasts["champion_metric"].iloc[0])
    backtest = float(previous_forecasts["champion_backtest_score"].iloc[0])
    if metric not in REALIZED_METRICS:
        raise MonitoringConfigError(f"champion metric {metric!r} cannot be recomputed; known: {list(REALIZED_METRICS)}")
    actuals = history_primary_panel
    if "is_imputed" in actuals:
        actuals = actuals[~actuals["is_imputed"]]
    bounds = [c for c in previous_forecasts.columns if c.startswith(("lo-", "hi-"))]  # for the interval test
    joined = previous_forecasts[[SERIES_ID, TIMESTAMP, "mean", *bounds]].merge(
        actuals[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
    season = profile.season_length
    per_series = {}
    # Each series' rows of the history, found in one pass (a mask over the whole history per series was
    # quadratic in the panel size); row order kept, so the in-sample values are the same.
    history_rows = history_primary_panel.groupby(SERIES_ID, sort=False).indices
    history_times = history_primary_panel[TIMESTAMP].to_numpy()
    history_values = history_primary_panel[VALUE].to_numpy()
    for series_id, rows in joined.groupby(SERIES_ID, sort=True):
        if len(rows) < min_points:
            continue
        first = rows[TIMESTAMP].min()
        mine = history_rows[series_id]
        insample = history_values[mine[history_times[mine] < first.to_datetime64()]]
        actual, forecast = rows[VALUE].to_numpy(), rows["mean"].to_numpy()
        if metric == "owa":
            # OWA against seasonal naive from the same history, as the selection's backtest OWA was computed
            m = season if len(insample) > season else 1
            reference = m4.seasonal_naive_forecast(insample, len(actual), m)
            per_series[str(series_id)] = {
                "n_points": int(len(rows)), "smape": m4.smape(actual, forecast), "mase": m4.mase(actual, forecast, insample, m),
                "smape_reference": m4.smape(actual, reference), "mase_reference": m4.mase(actual, reference, insample, m)}
            continue
        per_series[str(series_id)] = {
            "n_points": int(len(rows)),
            metric: _realized(metric, actual, forecast, insample, season)}
    if not per_series:
        return {"available": False, "metric": metric, "backtest": backtest,
                "reason": f"no series has {min_points}+ new observed actuals for the saved forecasts yet"}
    if metric == "owa":
        means = pd.DataFrame(per_series).T.astype(float).mean()
        realized = float(0.5 * (means["smape"] / means["smape_reference"] + means["mase"] / means["mase_reference"]))
    else:
        realized = float(np.nanmean([entry[metric] for entry in per_series.values()]))
    if not np.isfinite(backtest):
        # a champion no series of whose panel afforded a backtest window has no score to fall short of (the
        # interval test below still applies; retrain.after_growth refits it as the history grows)
        ratio = None
        logger.info("performance: realized %s %.4g on %d series; the champion was not validated (no backtest "
                    "window), so there is no ratio", metric, realized, len(per_series))
    else:
        # a perfect backtest (a constant panel): as good as it when the realized error is 0 too
        ratio = realized / backtest if backtest > 0 else (1.0 if realized == 0 else float("inf"))
        logger.info("performance: realized %s %.4g vs backtest %.4g (ratio %.3f) on %d series", metric, realized,
                    backtest, ratio, len(per_series))
    exceedance = interval_exceedance(joined[joined[SERIES_ID].astype(str).isin(per_series)])
    return {"available": True, "metric": metric, "realized": realized, "backtest": backtest, "ratio": ratio,
            "n_series": len(per_series), "n_points": int(sum(e["n_points"] for e in per_series.values())),
            "interval_exceedance": exceedance, "per_series": per_series}


def interval_exceedance(rows: pd.DataFrame) -> dict[str, Any]:
    """How often the new actuals fell outside the champion's intervals, against what their level allows.

    The intervals are conformally calibrated on the champion's backtest (``evaluation.conformal``), so on data
    like the backtest's an actual leaves the L % interval with probability about ``1 - L/100`` at every step,
    whatever the frequency, scale or family. A change the model has not seen (a level shift, a new trend, more
    noise, a moved seasonal shape) raises that rate for most series at once. The points of one series are
    correlated (one forecast path), so the test is across series: per series the share of its points outside,
    then a one-sided t-test of the mean share against ``1 - L/100`` (series are taken as independent).

    Each tail is also tested on its own (``above``: over ``hi-L``, ``below``: under ``lo-L``, each expected at
    ``(1 - L/100) / 2``). A change that moves many series the same way (a level shift, a new trend: a price
    change, a lost customer, a new competitor) fills one tail and empties the other, so the two-sided rate grows
    by less than the one tail's; the tail test finds such a change on a panel where the two-sided one does not.

    Args:
        rows: ``series_id, value`` (the actual) and the forecast's ``lo-L``/``hi-L`` columns, observed points only.

    Returns:
        ``{"L": {"expected", "rate" (mean over series of the share outside), "n_series", "p_value",
        "above": {"expected", "rate", "p_value"}, "below": {...}}}`` for every level the forecasts carry
        (``p_value`` None with fewer than 2 series).
    """
    levels = sorted(int(c.split("-", 1)[1]) for c in rows.columns if c.startswith("lo-") and f"hi-{c[3:]}" in rows)
    result = {}
    for level in levels:
        above = (rows[VALUE] > rows[f"hi-{level}"]).astype(float)
        below = (rows[VALUE] < rows[f"lo-{level}"]).astype(float)
        expected = 1 - level / 100
        entry = _share_test(np.maximum(above, below), rows[SERIES_ID], expected)  # a point is outside once
        entry["above"] = _share_test(above, rows[SERIES_ID], expected / 2)
        entry["below"] = _share_test(below, rows[SERIES_ID], expected / 2)
        result[str(level)] = entry
    return result


def _share_test(flags: pd.Series, series: pd.Series, expected: float) -> dict[str, Any]:
    """Mean over series of each series' share of flagged points, and the one-sided t-test of it against
    ``expected`` (``p_value`` None with fewer than 2 series)."""
    from scipy import stats

    shares = flags.groupby(series).mean().to_numpy(float)
    p_value = None
    if len(shares) >= 2:
        if np.std(shares) == 0:  # every series the same share: the sign decides
            p_value = 0.0 if shares.mean() > expected else 1.0
        else:
            p_value = float(stats.ttest_1samp(shares, expected, alternative="greater").pvalue)
    return {"expected": expected, "rate": float(shares.mean()) if len(shares) else None,
            "n_series": int(len(shares)), "p_value": p_value}


def _realized(metric: str, actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, season: int) -> float:
    if metric == "mase":
        return m4.mase(actual, forecast, insample, season)
    return float(getattr(m4, metric)(actual, forecast))
