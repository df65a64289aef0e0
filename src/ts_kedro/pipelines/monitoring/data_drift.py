"""Data drift: Evidently's value-drift tests per series and feature, and on the pooled panel.

Evidently is used here and in its workspace dataset (``ts_kedro.datasets.evidently_workspace``), nowhere else.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.forecasters.base import VALUE
from ts_kedro.pipelines.monitoring.windows import SEPARATOR

logger = logging.getLogger(__name__)


def detect_data_drift(
    drift_reference: pd.DataFrame, drift_current: pd.DataFrame, monitoring: dict[str, Any]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Run Evidently's DataDriftPreset per series (one column per series and feature) and on the pooled panel.

    A series counts as drifted when its target (``value``) drifted; feature drift is reported per feature.

    Args:
        drift_reference: reference window, one column ``<series_id>|<feature>`` each.
        drift_current: recent window, same columns.
        monitoring: ``monitoring`` parameters (``data_drift``: method, threshold, panel_method, panel_threshold).

    Returns:
        ``data_drift`` (per-series and panel results), the per-series report as HTML, and both Evidently
        snapshots as JSON-safe dicts (``drift_snapshots``, for the Evidently workspace).
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
