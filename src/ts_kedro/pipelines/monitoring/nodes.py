"""Nodes of monitoring: data drift (Evidently), performance drift of the champion, verdict and alert rules.

Evidently is used here and nowhere else in the project.
"""
from __future__ import annotations

import json

import logging
import operator
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.evaluation import metrics as m4

from ts_kedro.frequency import profile_for_panel

logger = logging.getLogger(__name__)

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
SEASONAL_DIFF = "seasonal_diff"
SEPARATOR = "|"  # wide drift columns are "<series_id>|<feature>"; series ids never contain it in M4-style data
REALIZED_METRICS = ("smape", "mase", "mae", "rmse", "mape", "owa")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


class MonitoringConfigError(ValueError):
    """A ``monitoring`` parameter (window, threshold, alert rule) has a value the pipeline cannot use."""


# -- data drift ------------------------------------------------------------------------------------------

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


def _standardise_pooled(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Panel view: every series scaled by its reference mean/std, then pooled by feature."""
    ref_pool: dict[str, list] = {}
    cur_pool: dict[str, list] = {}
    for column in reference.columns:
        feature = column.split(SEPARATOR, 1)[1]
        mean, std = reference[column].mean(), reference[column].std()
        std = std if std and np.isfinite(std) else 1.0
        ref_pool.setdefault(feature, []).append((reference[column] - mean) / std)
        cur_pool.setdefault(feature, []).append((current[column] - mean) / std)
    pooled = [pd.DataFrame({f: pd.concat(v, ignore_index=True) for f, v in pool.items()}) for pool in (ref_pool, cur_pool)]
    return pooled[0], pooled[1]


def _run_drift_report(reference: pd.DataFrame, current: pd.DataFrame, method: str | None, threshold: float | None,
                      name: str):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(reference.columns))
    report = Report([DataDriftPreset(method=method, threshold=threshold)])
    # Evidently's order is current first, then reference
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(reference, data_definition=definition), name=name)


def _is_p_value_test(method: str, reference: pd.Series, current: pd.Series) -> bool:
    """Whether Evidently's test ``method`` scores a p-value (drift when low) or a distance (drift when high)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    try:
        label = get_stattest(reference, current, ColumnType.Numerical, method).display_name
    except Exception:  # noqa: BLE001 - an auto-chosen test is reported by its display label already
        label = method
    return "p_value" in label


def _column_results(snapshot, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{column: {score, method, threshold, drifted}}`` from the ValueDrift results of a snapshot."""
    results = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        column, method, threshold = config["column"], config["method"], float(config["threshold"])
        score = float(metric["value"])
        # same rule as Evidently's tests: p-value <= threshold, or distance >= threshold, means drift
        if _is_p_value_test(method, reference[column], current[column]):
            drifted = score <= threshold
        else:
            drifted = score >= threshold
        results[column] = {"score": score, "method": method, "threshold": threshold, "drifted": bool(drifted)}
    return results


def detect_data_drift(
    drift_reference: pd.DataFrame, drift_current: pd.DataFrame, monitoring: dict[str, Any]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Run Evidently's DataDriftPreset per series (one column per series and feature) and on the pooled panel.

    A series counts as drifted when its target (``value``) drifted; feature drift is reported per feature.

    Returns:
        ``data_drift`` (per-series and panel results), the per-series report as HTML, and both Evidently
        snapshots as dicts (for the workspace).
    """
    settings = monitoring.get("data_drift", {})
    method, threshold = settings.get("method", "ks"), settings.get("threshold", 0.05)
    series_snapshot = _run_drift_report(drift_reference, drift_current, method, threshold, "series_drift")
    columns = _column_results(series_snapshot, drift_reference, drift_current)

    per_series: dict[str, dict[str, Any]] = {}
    for column, result in columns.items():
        series_id, feature = column.split(SEPARATOR, 1)
        per_series.setdefault(series_id, {})[feature] = result
    drifted = sorted(s for s, features in per_series.items() if features.get(VALUE, {}).get("drifted"))
    features = sorted({f for entry in per_series.values() for f in entry})
    feature_share = {f: float(np.mean([entry[f]["drifted"] for entry in per_series.values() if f in entry]))
                     for f in features}

    pooled_reference, pooled_current = _standardise_pooled(drift_reference, drift_current)
    panel_method, panel_threshold = settings.get("panel_method", "wasserstein"), settings.get("panel_threshold", 0.1)
    panel_snapshot = _run_drift_report(pooled_reference, pooled_current, panel_method, panel_threshold, "panel_drift")
    panel_columns = _column_results(panel_snapshot, pooled_reference, pooled_current)

    data_drift = {
        "n_series": len(per_series),
        "drifted_series": drifted,
        "drift_share": len(drifted) / len(per_series),
        "feature_drift_share": feature_share,
        "panel_level": panel_columns,
        "series": per_series,
        "reference_rows": int(len(drift_reference)),
        "current_rows": int(len(drift_current)),
    }
    logger.info("data drift: %d of %d series drifted (share %.2f)", len(drifted), len(per_series),
                data_drift["drift_share"])
    html = series_snapshot.get_html_str(as_iframe=False)
    # JSON-safe (timestamps as ISO strings) so the catalog can persist them between Prefect tasks
    snapshots = json.loads(json.dumps(
        {"series_drift": series_snapshot.dump_dict(), "panel_drift": panel_snapshot.dump_dict()},
        default=lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value),
    ))
    return data_drift, html, snapshots


# -- performance drift -----------------------------------------------------------------------------------

def select_previous_forecasts(champion_forecast_versions: dict[str, Callable]) -> pd.DataFrame:
    """The newest saved champion forecasts (an empty frame before the first inference run)."""
    if not champion_forecast_versions:
        logger.info("no champion_forecasts version saved yet: performance drift cannot be measured")
        return pd.DataFrame(columns=[SERIES_ID, TIMESTAMP, "mean"])
    newest = max(champion_forecast_versions)
    logger.info("checking champion forecasts version %s", newest)
    return champion_forecast_versions[newest]()


def _realized(metric: str, actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, season: int) -> float:
    if metric == "mase":
        return m4.mase(actual, forecast, insample, season)
    return float(getattr(m4, metric)(actual, forecast))


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
    joined = previous_forecasts[[SERIES_ID, TIMESTAMP, "mean"]].merge(
        actuals[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
    season = profile.season_length
    per_series = {}
    for series_id, rows in joined.groupby(SERIES_ID, sort=True):
        if len(rows) < min_points:
            continue
        first = rows[TIMESTAMP].min()
        insample = history_primary_panel.loc[(history_primary_panel[SERIES_ID] == series_id)
                                             & (history_primary_panel[TIMESTAMP] < first), VALUE].to_numpy()
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
    ratio = realized / backtest if backtest > 0 else float("inf")
    logger.info("performance: realized %s %.4g vs backtest %.4g (ratio %.3f) on %d series", metric, realized,
                backtest, ratio, len(per_series))
    return {"available": True, "metric": metric, "realized": realized, "backtest": backtest, "ratio": ratio,
            "n_series": len(per_series), "n_points": int(sum(e["n_points"] for e in per_series.values())),
            "per_series": per_series}


# -- verdict, workspace, alerts --------------------------------------------------------------------------

def summarise_drift(data_drift: dict[str, Any], performance_drift: dict[str, Any],
                    monitoring: dict[str, Any]) -> dict[str, Any]:
    """The drift verdict the Day-N flow acts on: ``drift`` is true when any threshold is crossed.

    Returns:
        ``drift_summary``: ``{drift, reasons, drift_share, drifted_series, performance_ratio, thresholds, ...}``.
    """
    thresholds = monitoring["thresholds"]
    reasons = []
    if data_drift["drift_share"] > thresholds["drift_share"]:
        reasons.append(f"data drift: {len(data_drift['drifted_series'])} of {data_drift['n_series']} series drifted "
                       f"(share {data_drift['drift_share']:.2f} > {thresholds['drift_share']})")
    ratio = performance_drift.get("ratio") if performance_drift.get("available") else None
    if ratio is not None and ratio > thresholds["performance_ratio"]:
        reasons.append(f"performance drift: realized {performance_drift['metric']} {performance_drift['realized']:.4g} "
                       f"is {ratio:.2f}x the backtest {performance_drift['backtest']:.4g} "
                       f"(> {thresholds['performance_ratio']})")
    return {
        "drift": bool(reasons),
        "reasons": reasons,
        "checked_at": datetime.now(timezone.utc).isoformat(),
        "drift_share": data_drift["drift_share"],
        "drifted_series": data_drift["drifted_series"],
        "n_series": data_drift["n_series"],
        "feature_drift_share": data_drift["feature_drift_share"],
        "panel_level": data_drift["panel_level"],
        "performance_ratio": ratio,
        "performance": {k: v for k, v in performance_drift.items() if k != "per_series"},
        "thresholds": thresholds,
    }


def add_to_evidently_workspace(drift_snapshots: dict[str, Any], drift_summary: dict[str, Any],
                               monitoring: dict[str, Any]) -> dict[str, Any]:
    """Add this run's snapshots to the local Evidently workspace (``evidently ui --workspace <path>``).

    The project and its dashboard (drift share over runs, per-feature drift) are created on first use.

    Returns:
        ``{workspace, project_id, snapshot_ids}``.
    """
    from evidently.core.report import Snapshot
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    settings = monitoring["evidently_workspace"]
    workspace = Workspace(settings["path"])
    found = workspace.search_project(settings["project"])
    if found:
        project = found[0]
    else:
        project = workspace.create_project(settings["project"], description="ts_kedro Day-N drift monitoring")
        project.dashboard.add_panel(line_plot_panel(
            title="Share of drifted columns (series x feature)",
            values=[PanelMetric(metric="DriftedColumnsCount", legend="share", tags=["series_drift"])]), tab="Drift")
        project.dashboard.add_panel(line_plot_panel(
            title="Pooled panel drift (share of drifted features)",
            values=[PanelMetric(metric="DriftedColumnsCount", legend="share", tags=["panel_drift"])]), tab="Drift")
    snapshot_ids = {}
    for name, dumped in sorted(drift_snapshots.items()):
        snapshot = Snapshot.load_dict(dumped)
        snapshot._tags = sorted({*snapshot._tags, name, "drift" if drift_summary["drift"] else "no_drift"})
        reference = workspace.add_run(project.id, snapshot, include_data=False, name=name)
        snapshot_ids[name] = str(reference.id)
    logger.info("added %d snapshots to Evidently workspace %s", len(snapshot_ids), settings["path"])
    return {"workspace": settings["path"], "project_id": str(project.id), "snapshot_ids": snapshot_ids}


def monitoring_facts(drift_summary: dict[str, Any], ingestion_report: dict[str, Any]) -> dict[str, Any]:
    """The numbers alert rules can test, from this run's drift summary and ingestion report."""
    return {"drift_share": drift_summary["drift_share"],
            "performance_ratio": drift_summary["performance_ratio"],
            "quarantined_batches": ingestion_report.get("n_quarantined", 0),
            "drift": drift_summary["drift"]}


def evaluate_alert_rules(facts: dict[str, Any], alert_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn facts into alerts: one per rule whose ``fact <op> threshold`` holds.

    Used by monitoring (drift, performance, quarantine), inference (latency) and the flow (pipeline failure).
    A rule whose fact is absent or None is skipped: that fact was not measured in this run.

    Args:
        facts: ``{fact_name: number}``.
        alert_rules: ``[{name, fact, op, threshold, severity, message}]`` from ``monitoring.alert_rules``.

    Returns:
        ``[{rule, severity, fact, value, op, threshold, message, raised_at}]``.
    """
    alerts = []
    for rule in alert_rules:
        missing = {"name", "fact", "op", "threshold"} - set(rule)
        if missing or rule["op"] not in OPERATORS:
            raise MonitoringConfigError(
                f"alert rule {rule!r} is malformed: needs name, fact, op (one of {list(OPERATORS)}) and threshold")
        value = facts.get(rule["fact"])
        if value is None:
            continue
        if OPERATORS[rule["op"]](float(value), float(rule["threshold"])):
            alerts.append({
                "rule": rule["name"], "severity": rule.get("severity", "warning"), "fact": rule["fact"],
                "value": float(value), "op": rule["op"], "threshold": float(rule["threshold"]),
                "message": rule.get("message", f"{rule['fact']} {rule['op']} {rule['threshold']}").format(
                    value=value, threshold=rule["threshold"]),
                "raised_at": datetime.now(timezone.utc).isoformat(),
            })
    for alert in alerts:
        logger.warning("alert %s (%s): %s", alert["rule"], alert["severity"], alert["message"])
    return alerts


def evaluate_monitoring_alerts(drift_summary: dict[str, Any], ingestion_report: dict[str, Any],
                               monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts of this monitoring run (``alerts`` dataset)."""
    return evaluate_alert_rules(monitoring_facts(drift_summary, ingestion_report), monitoring["alert_rules"])


def deliver_alerts(alerts: list[dict[str, Any]], alert_delivery: dict[str, Any]) -> list[dict[str, Any]]:
    """Send every alert through the project's ``send_alert`` (JSONL log + Prefect notification block).

    Returns:
        The delivery records ``send_alert`` wrote.
    """
    from ts_kedro.orchestration.alerts import send_alert

    return [send_alert(alert, alert_delivery) for alert in alerts]


def drift_summary_for_tracking(drift_summary: dict[str, Any]) -> dict[str, Any]:
    """The verdict again, as the MLflow artifact of this run (the versioned copy stays on disk)."""
    return drift_summary


def monitoring_metrics(drift_summary: dict[str, Any], ingestion_report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """This Day-N run's health for MLflow: data quality of the intake, drift, realized error, resource use.

    Returns:
        kedro-mlflow's ``{name: {"value": v, "step": 0}}`` form (unmeasured facts are left out).
    """
    import psutil

    performance = drift_summary.get("performance") or {}
    values = {
        "batches_accepted": ingestion_report.get("n_accepted"),
        "batches_quarantined": ingestion_report.get("n_quarantined"),
        "rows_accepted": ingestion_report.get("rows_accepted"),
        "duplicate_rows_ignored": ingestion_report.get("duplicate_rows_ignored"),
        "drift": float(bool(drift_summary["drift"])),
        "drift_share": drift_summary.get("drift_share"),
        "feature_drift_share": drift_summary.get("feature_drift_share"),
        "performance_ratio": drift_summary.get("performance_ratio"),
        "realized_error": performance.get("realized") if performance.get("available") else None,
        "peak_rss_mb": psutil.Process().memory_info().rss / 2**20,
    }
    return {
        name: {"value": float(value), "step": 0}
        for name, value in values.items()
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    }
