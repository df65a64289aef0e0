"""Alert rules: the facts of a run turned into alerts, one per rule whose ``fact op threshold`` holds.

Used by monitoring (drift, performance, quarantine), inference (latency) and the flow (pipeline failure).
Delivery is not done here: the alert delivery datasets (``ts_kedro.datasets.alert_delivery``) send what the
``*_alert_deliveries`` outputs receive.
"""
from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError

logger = logging.getLogger(__name__)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


def monitoring_facts(drift_summary: dict[str, Any], ingestion_report: dict[str, Any]) -> dict[str, Any]:
    """The numbers alert rules can test, from this run's drift summary and ingestion report."""
    return {"drift_share": drift_summary["drift_share"],
            "performance_ratio": drift_summary["performance_ratio"],
            "quarantined_batches": ingestion_report.get("n_quarantined", 0),
            "drift": drift_summary["drift"]}


def evaluate_alert_rules(facts: dict[str, Any], alert_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn facts into alerts: one per rule whose ``fact <op> threshold`` holds.

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


def alerts_for_delivery(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts again, as the input of an alert delivery dataset, which sends them when it is saved.

    A node of its own (``deliver_alerts_node``) so ``alerts`` keeps its plain JSON copy and the delivery
    shows as a step in kedro-viz and the Prefect flow.
    """
    return alerts
