"""Data drift: Evidently's value-drift tests per series and feature, and on the pooled panel.

Evidently is used here and in its workspace dataset (``ts_kedro.datasets.evidently_workspace``), nowhere else;
``calibration`` scores earlier windows through ``drift_score``, the same Evidently test the report runs.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.pipelines.monitoring.windows import deciding_features, split_column

logger = logging.getLogger(__name__)

DEFAULT_METHOD = "psi"  # the shipped choice (docs/benchmarks.md, "Drift calibration")


def detect_data_drift(
    drift_reference: pd.DataFrame, drift_current: pd.DataFrame, drift_thresholds: dict[str, Any],
    monitoring: dict[str, Any],
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Run Evidently's DataDriftPreset per series (one column per series and feature) and on the pooled panel.

    Each column is tested against its calibrated threshold from ``drift_thresholds`` (the fixed ``threshold``
    where it has none), so Evidently's own report, tests and snapshots say what the verdict acts on. A series
    counts as drifted when its ``series_feature`` (default: the seasonal difference; a list: any of them) drifted;
    every feature's drift is reported.

    Args:
        drift_reference: reference window, one column ``<series_id>|<feature>`` each.
        drift_current: recent window, same columns.
        drift_thresholds: ``calibrate_drift_thresholds``' result.
        monitoring: ``monitoring`` parameters (``data_drift``: method, threshold, series_feature, panel_method,
            panel_threshold).

    Returns:
        ``data_drift`` (per-series and panel results), the per-series report as HTML, and both Evidently
        snapshots as JSON-safe dicts (``drift_snapshots``, for the Evidently workspace).
    """
    settings = monitoring.get("data_drift", {})
    method, threshold, _ = drift_method(settings)
    deciding = deciding_features(settings.get("series_feature"))
    if drift_reference.empty:
        return _not_checked(drift_thresholds, deciding, method, threshold)
    calibrated = {column: entry for column, entry in (drift_thresholds.get("columns") or {}).items()
                  if column in drift_reference.columns}
    series_snapshot = _run_drift_report(drift_reference, drift_current, method, threshold, "series_drift",
                                        {column: entry["threshold"] for column, entry in calibrated.items()})
    columns = _column_results(series_snapshot, drift_reference, drift_current)

    per_series: dict[str, dict[str, Any]] = {}
    for column, result in columns.items():
        series_id, feature = split_column(column)
        entry = calibrated.get(column)
        result["calibration"] = ({"windows": entry["windows"], "source": entry["source"]} if entry
                                 else {"windows": 0, "source": "fixed"})
        per_series.setdefault(series_id, {})[feature] = result
    # a series drifted when any deciding feature it has drifted
    checked = {s: features for s, features in per_series.items() if any(f in features for f in deciding)}
    drifted = sorted(s for s, features in checked.items()
                     if any(features[f]["drifted"] for f in deciding if f in features))
    features = sorted({f for entry in per_series.values() for f in entry})
    feature_share = {f: float(np.mean([entry[f]["drifted"] for entry in per_series.values() if f in entry]))
                     for f in features}

    pooled_reference, pooled_current = _standardise_pooled(drift_reference, drift_current)
    panel_method, panel_threshold = settings.get("panel_method", "wasserstein"), settings.get("panel_threshold", 0.1)
    panel_snapshot = _run_drift_report(pooled_reference, pooled_current, panel_method, panel_threshold, "panel_drift")
    panel_columns = _column_results(panel_snapshot, pooled_reference, pooled_current)

    sources = [entry["calibration"]["source"] for entry in columns.values()]
    data_drift = _drift_result(drift_thresholds, deciding, method, threshold)
    data_drift.update({
        "n_series": len(checked),
        "drifted_series": drifted,
        "drift_share": len(drifted) / len(checked) if checked else 0.0,
        "feature_drift_share": feature_share,
        "panel_level": panel_columns,
        "series": per_series,
        "reference_rows": int(len(drift_reference)),
        "current_rows": int(len(drift_current)),
    })
    data_drift["calibration"]["columns_by_source"] = {s: sources.count(s) for s in sorted(set(sources))}
    logger.info("data drift: %d of %d series drifted (share %.2f)", len(drifted), len(checked),
                data_drift["drift_share"])
    html = series_snapshot.get_html_str(as_iframe=False)
    # JSON-safe (timestamps as ISO strings) so the catalog can persist them between Prefect tasks
    snapshots = json.loads(json.dumps(
        {"series_drift": series_snapshot.dump_dict(), "panel_drift": panel_snapshot.dump_dict()},
        default=lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value),
    ))
    return data_drift, html, snapshots


def _drift_result(drift_thresholds: dict[str, Any], deciding: list[str], method: str,
                  threshold: float) -> dict[str, Any]:
    """The ``data_drift`` result with no series checked: every key, the settings filled in, the findings empty."""
    return {
        "n_series": 0, "drifted_series": [], "drift_share": 0.0,
        "series_feature": deciding[0] if len(deciding) == 1 else deciding,
        "windows": drift_thresholds.get("windows"),
        "feature_drift_share": {},
        "calibration": {"method": method, "quantile": drift_thresholds.get("quantile"), "fixed_threshold": threshold,
                        "columns_by_source": {}},
        "panel_level": {}, "series": {}, "reference_rows": 0, "current_rows": 0,
    }


def _not_checked(drift_thresholds: dict[str, Any], deciding: list[str], method: str,
                 threshold: float) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """No series is long enough for the drift windows (``build_drift_windows``): no drift found, and why."""
    windows = drift_thresholds.get("windows")
    reason = (f"no series is long enough for the drift windows ({windows}): data drift not checked this cycle"
              if windows else "no series is long enough for the drift windows: data drift not checked this cycle")
    data_drift = {**_drift_result(drift_thresholds, deciding, method, threshold), "not_checked": reason}
    logger.warning("data drift: %s", reason)
    html = f"<html><body><h1>Data drift</h1><p>{reason}.</p></body></html>"
    return data_drift, html, {}


def drift_method(settings: dict[str, Any]) -> tuple[str, float, bool]:
    """``(method, fixed threshold, is a p-value)`` of ``monitoring.data_drift``: the threshold defaults to
    Evidently's own default for the method."""
    method = settings.get("method") or DEFAULT_METHOD
    test = _stattest(method)
    threshold = settings.get("threshold")
    return method, float(test.default_threshold if threshold is None else threshold), "p_value" in test.display_name


def drift_score(reference: np.ndarray, current: np.ndarray, method: str) -> float:
    """Evidently's score of ``method`` for one column (the test ValueDrift runs, without its report widgets)."""
    from evidently.legacy.core import ColumnType

    reference, current = pd.Series(reference, dtype=float), pd.Series(current, dtype=float)
    return float(_stattest(method)(reference, current, ColumnType.Numerical, None).drift_score)


def _stattest(method: str):
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    probe = pd.Series(np.arange(30, dtype=float))  # numeric and many-valued: resolves a named test as is
    return get_stattest(probe, probe, ColumnType.Numerical, method)


def _standardise_pooled(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Panel view: every series scaled by its reference mean/std, then pooled by feature."""
    ref_pool: dict[str, list] = {}
    cur_pool: dict[str, list] = {}
    for column in reference.columns:
        feature = split_column(column)[1]
        mean, std = reference[column].mean(), reference[column].std()
        std = std if std and np.isfinite(std) else 1.0
        ref_pool.setdefault(feature, []).append((reference[column] - mean) / std)
        cur_pool.setdefault(feature, []).append((current[column] - mean) / std)
    pooled = [pd.DataFrame({f: pd.concat(v, ignore_index=True) for f, v in pool.items()}) for pool in (ref_pool, cur_pool)]
    return pooled[0], pooled[1]


def _run_drift_report(reference: pd.DataFrame, current: pd.DataFrame, method: str | None, threshold: float | None,
                      name: str, per_column_threshold: dict[str, float] | None = None):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(reference.columns))
    report = Report([DataDriftPreset(method=method, threshold=threshold,
                                     per_column_threshold=per_column_threshold or None)])
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
