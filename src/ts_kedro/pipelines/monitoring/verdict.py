"""The drift verdict the Day-N flow acts on, and its views for MLflow and the Evidently workspace."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError
from ts_kedro.pipelines.monitoring.windows import SEASONAL_DIFF, deciding_features

DRIFT_REPORT_TRACKING = ("on_drift", "always", "never")


def summarise_drift(data_drift: dict[str, Any], performance_drift: dict[str, Any],
                    monitoring: dict[str, Any]) -> dict[str, Any]:
    """The drift verdict the Day-N flow acts on: ``drift`` is true when any threshold is crossed.

    Data drift: the share of series whose monitored feature drifted beyond the threshold its own history
    calibrated (``detect_data_drift``) exceeds ``thresholds.drift_share``.

    Args:
        data_drift: ``detect_data_drift``'s result.
        performance_drift: ``measure_performance_drift``'s result.
        monitoring: ``monitoring`` parameters (``thresholds``).

    Returns:
        ``drift_summary``: ``{drift, data_drift, performance_drift, windows, reasons, drift_share, drifted_series,
        performance_ratio, thresholds, ...}``.
    """
    thresholds = monitoring["thresholds"]
    reasons = []
    if data_drift["drift_share"] > thresholds["drift_share"]:
        reasons.append(f"data drift: {len(data_drift['drifted_series'])} of {data_drift['n_series']} series drifted "
                       f"in {' or '.join(deciding_features(data_drift.get('series_feature', 'value')))} "
                       f"(share {data_drift['drift_share']:.2f} > {thresholds['drift_share']})")
    ratio = performance_drift.get("ratio") if performance_drift.get("available") else None
    if ratio is not None and ratio > thresholds["performance_ratio"]:
        reasons.append(f"performance drift: realized {performance_drift['metric']} {performance_drift['realized']:.4g} "
                       f"is {ratio:.2f}x the backtest {performance_drift['backtest']:.4g} "
                       f"(> {thresholds['performance_ratio']})")
    intervals = _interval_verdict(performance_drift, thresholds)
    if intervals:
        reasons.append(intervals)
    return {
        "drift": bool(reasons),
        "data_drift": data_drift["drift_share"] > thresholds["drift_share"],
        "performance_drift": (ratio is not None and ratio > thresholds["performance_ratio"]) or bool(intervals),
        "interval_drift": bool(intervals),
        "windows": _windows(data_drift),
        "reasons": reasons,
        "checked_at": datetime.now(timezone.utc).isoformat(),
        "drift_share": data_drift["drift_share"],
        "drifted_series": data_drift["drifted_series"],
        "n_series": data_drift["n_series"],
        "feature_drift_share": data_drift["feature_drift_share"],
        "calibration": data_drift.get("calibration"),
        "panel_level": data_drift["panel_level"],
        "performance_ratio": ratio,
        "performance": {k: v for k, v in performance_drift.items() if k != "per_series"},
        "thresholds": thresholds,
        # why the data drift check did not run (no series long enough for its windows), None when it ran
        "data_drift_not_checked": data_drift.get("not_checked"),
    }


def _interval_verdict(performance_drift: dict[str, Any], thresholds: dict[str, Any]) -> str | None:
    """The reason, when the new actuals left the champion's calibrated intervals significantly too often.

    Per level, the share of points outside the interval is tested, and with ``thresholds.interval_tails`` (default
    true) also the share over its upper and under its lower bound on their own, which finds a change that moves
    the series the same way (``performance.interval_exceedance``). ``thresholds.interval_p_value`` (null: off) is
    the size of all these tests together (Bonferroni: each p-value is multiplied by the number of tests);
    ``thresholds.interval_excess`` is the least excess over the nominal share that counts, so a large panel does
    not flag a miscalibration of a point or two.
    """
    alpha = thresholds.get("interval_p_value")
    if alpha is None or not performance_drift.get("available"):
        return None
    excess = float(thresholds.get("interval_excess") or 0.0)
    tails = thresholds.get("interval_tails", True)
    if not isinstance(tails, bool):
        raise MonitoringConfigError(f"monitoring.thresholds.interval_tails must be true or false, got {tails!r} "
                                    "(conf/*/parameters_monitoring.yml)")
    tests = []
    for level, entry in (performance_drift.get("interval_exceedance") or {}).items():
        tests.append((level, "outside", entry))
        if tails:
            tests += [(level, side, entry[side]) for side in ("above", "below") if side in entry]
    tests = [test for test in tests if test[2].get("p_value") is not None]
    for level, side, entry in sorted(tests, key=lambda test: test[2]["p_value"]):
        p_value = min(1.0, entry["p_value"] * len(tests))
        if p_value < float(alpha) and entry["rate"] >= entry["expected"] + excess:
            where = {"outside": f"left the champion's {level} % interval",
                     "above": f"rose above the champion's {level} % interval",
                     "below": f"fell below the champion's {level} % interval"}[side]
            return (f"performance drift: the new actuals {where} at {entry['rate']:.2f} of points "
                    f"(expected {entry['expected']:.3g}, at least {excess:.2f} more counts; "
                    f"{entry['n_series']} series, one-sided t-test p = {p_value:.2g} < {alpha}, "
                    f"{len(tests)} tests)")
    return None


def _windows(data_drift: dict[str, Any]) -> dict[str, Any]:
    """The verdict's windows in steps, and ``reach_steps``: how many steps after a change the reference window's
    series feature can still hold data from before it (the reference window, plus the seasonal lag when the
    feature is the seasonal difference). The Day-N flow waits that long after a drift refit before data drift
    alone refits again (``flows.persisting_drift``)."""
    geometry = data_drift.get("windows") or {}
    reference = geometry.get("reference_window_steps", data_drift.get("reference_rows"))
    lag = geometry.get("seasonal_lag_steps") if SEASONAL_DIFF in deciding_features(data_drift.get("series_feature")) \
        else 0
    return {"reference_steps": reference, "recent_steps": geometry.get("recent_window_steps",
                                                                        data_drift.get("current_rows")),
            "seasonal_lag_steps": geometry.get("seasonal_lag_steps"),
            "reach_steps": None if reference is None or lag is None else int(reference) + int(lag)}


def drift_summary_for_tracking(drift_summary: dict[str, Any]) -> dict[str, Any]:
    """The verdict again, as the MLflow artifact of this run (the versioned copy stays on disk)."""
    return drift_summary


def drift_report_for_tracking(drift_report: str, drift_summary: dict[str, Any], monitoring: dict[str, Any]) -> str:
    """What this run logs to MLflow as ``monitoring/drift_report.html``: Evidently's report, or a short note.

    Evidently's HTML report carries its 3.5 MB JavaScript bundle plus about 0.1 MB per series, and a Day-N
    cycle writes one every time: logged on every cycle, an hourly schedule adds over 40 GB of MLflow artifacts
    a year for a dozen series (docs/benchmarks.md, Day-N replay finding 7). ``monitoring.tracking.drift_report``
    says when the whole report goes to the run:

    - ``on_drift`` (default): only on cycles whose verdict is drift, the ones a person opens;
    - ``always``: every cycle; ``never``: no cycle.

    Other cycles log a note of a few hundred bytes saying where the full picture is: the verdict with every
    column's score and threshold (``monitoring/drift_summary_latest.json`` of the same run) and the snapshot in
    the Evidently workspace. ``data/08_reporting/drift_report.html`` always holds the latest full report.
    """
    mode = (monitoring.get("tracking") or {}).get("drift_report", "on_drift")
    if mode not in DRIFT_REPORT_TRACKING:
        raise MonitoringConfigError(f"monitoring.tracking.drift_report must be one of {DRIFT_REPORT_TRACKING}, "
                                    f"got {mode!r} (conf/*/parameters_monitoring.yml)")
    drift = bool(drift_summary["drift"])
    if mode == "always" or (mode == "on_drift" and drift):
        return drift_report
    verdict = "drift" if drift else "no drift"
    return ("<!doctype html><meta charset=\"utf-8\"><title>ts_kedro drift report not logged</title>\n"
            f"<p>Verdict of this cycle: <b>{verdict}</b> (drift share {drift_summary.get('drift_share', 0):.2f}, "
            f"checked at {drift_summary.get('checked_at', 'unknown')}). Evidently's full report was not logged "
            f"to this run (<code>monitoring.tracking.drift_report: {mode}</code>).</p>\n"
            "<p>Every column's score and threshold: <code>monitoring/drift_summary_latest.json</code> of this run. "
            "The Evidently snapshots of the cycle: <code>evidently ui --workspace "
            "data/08_reporting/evidently_workspace</code> (tags <code>drift</code> / <code>no_drift</code>).</p>\n")


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


def snapshots_for_workspace(drift_snapshots: dict[str, dict[str, Any]],
                            drift_summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """This run's Evidently snapshots, tagged for the workspace dashboard; the workspace dataset stores them.

    Each snapshot gets two tags: its name (``series_drift`` / ``panel_drift``: the dashboard panels select
    on it) and the verdict (``drift`` / ``no_drift``), so the workspace can be filtered by outcome.

    Args:
        drift_snapshots: ``{name: snapshot dict}`` from ``detect_data_drift``.
        drift_summary: the verdict of this run.

    Returns:
        ``{name: snapshot dict}`` with the tags added (the input is not modified).
    """
    verdict = "drift" if drift_summary["drift"] else "no_drift"
    return {name: {**snapshot, "tags": sorted({*(snapshot.get("tags") or []), name, verdict})}
            for name, snapshot in sorted(drift_snapshots.items())}
