"""evaluate_alert_rules with the shipped rules of parameters_monitoring.yml."""
from __future__ import annotations

import pytest

from ts_kedro.pipelines.monitoring.alert_rules import alerts_for_delivery, evaluate_alert_rules
from ts_kedro.pipelines.monitoring.errors import MonitoringConfigError


def test_alert_rules_fire_on_their_thresholds(monitoring_params):
    rules = monitoring_params["alert_rules"]
    alerts = evaluate_alert_rules({"drift_share": 0.75, "performance_ratio": 1.2, "quarantined_batches": 2,
                                   "latency_seconds": None}, rules)
    assert [(a["rule"], a["value"]) for a in alerts] == [("data_drift", 0.75), ("quarantined_batches", 2.0)]
    assert alerts[1]["message"] == "2 incoming batch(es) quarantined: see data/01_raw/quarantine/"
    assert [a["rule"] for a in evaluate_alert_rules({"pipeline_failed": 1, "latency_seconds": 61}, rules)] == \
        ["pipeline_failure", "inference_latency"]
    assert evaluate_alert_rules({"drift_share": 0.5, "quarantined_batches": 0}, rules) == []
    with pytest.raises(MonitoringConfigError, match="malformed"):
        evaluate_alert_rules({"x": 1}, [{"name": "x", "fact": "x", "op": "~", "threshold": 1}])


def test_alerts_for_delivery_passes_the_alerts_on_unchanged(monitoring_params):
    alerts = evaluate_alert_rules({"drift_share": 0.75}, monitoring_params["alert_rules"])
    assert alerts_for_delivery(alerts) == alerts and len(alerts) == 1
