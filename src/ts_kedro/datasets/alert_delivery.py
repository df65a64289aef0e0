"""Alert delivery as a Kedro dataset: saving a list of alerts sends them; loading returns what was sent.

Why a dataset: sending is a side effect (a webhook POST, a line in the alert log), and nodes stay pure
(``docs/architecture.md``). The node before it only passes the alerts on (``alerts_for_delivery``).

Channels are those of ``ts_kedro.orchestration.alerts.send_alert``, which does the delivery, so the flow's
``pipeline_failed`` alerts and the pipelines' alerts behave alike:

- the Prefect notification block ``notification_block`` (a Custom Webhook block, created or updated from
  ``webhook_url`` when that is set, loaded by name otherwise; null: no block, log only);
- the append-only JSONL log ``log_path`` (one line per alert, with its delivery status).

A failed delivery (receiver down, block missing, HTTP error) is recorded as ``status: failed`` and never
raises: a monitoring run is not lost to a network problem. ``timeout_seconds`` bounds each webhook call.

The record of deliveries is the dataset's data: ``save(alerts)`` writes the ``send_alert`` records of this
save (``created_at``, ``subject``, ``alert``, ``delivery``) as a JSON list to ``filepath``, replacing the
previous one, and ``load()`` returns that list (the JSONL log keeps every run). Catalog entry::

    alert_deliveries:
      type: ts_kedro.datasets.alert_delivery.AlertDeliveryDataset
      filepath: data/08_reporting/alert_deliveries.json
      channels:
        log_path: data/08_reporting/alerts.jsonl
        notification_block: ts-kedro-alerts
        webhook_url: ${env:TS_KEDRO_ALERT_WEBHOOK,null}
        timeout_seconds: 10
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from ts_kedro.orchestration.alerts import send_alert
from ts_kedro.orchestration.config import AlertConfig

CHANNEL_KEYS = tuple(f.name for f in fields(AlertConfig))


class AlertDeliveryDataset(AbstractDataset[list[dict[str, Any]], list[dict[str, Any]]]):
    """``save(alerts)`` delivers each alert through ``channels``; ``load()`` returns the last save's records.

    Args:
        filepath: JSON file holding the delivery records of the last save.
        channels: ``log_path``, ``notification_block``, ``webhook_url``, ``timeout_seconds`` (keys of
            ``orchestration.alerts``; a misspelt key is refused). Relative paths are relative to the working
            directory, the project root under ``kedro run`` and the Prefect flow.
        metadata: free-form (kedro-viz layer).
    """

    def __init__(self, filepath: str, channels: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):
        channels = dict(channels or {})
        unknown = sorted(set(channels) - set(CHANNEL_KEYS))
        if unknown:
            raise DatasetError(f"{type(self).__name__} ({filepath}): unknown channel key(s) {unknown}; "
                               f"allowed: {list(CHANNEL_KEYS)}")
        self._filepath = Path(filepath)
        self._channels = AlertConfig(**channels)
        self.metadata = metadata

    def save(self, data: list[dict[str, Any]]) -> None:
        if not isinstance(data, list):
            raise DatasetError(f"{type(self).__name__} saves a list of alerts, got {type(data).__name__}")
        malformed = [alert for alert in data if not isinstance(alert, dict) or not alert]
        if malformed:  # refused before anything is sent, so a bad list never half-delivers
            raise DatasetError(f"{type(self).__name__}: every alert must be a non-empty dict, got {malformed!r}")
        records = [send_alert(alert, self._channels) for alert in data]
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(records, indent=2, default=str), encoding="utf-8")

    def load(self) -> list[dict[str, Any]]:
        if not self._filepath.exists():
            raise DatasetError(f"no alert delivery recorded yet at {self._filepath}")
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        # the webhook URL is a secret (it comes from the environment): say only whether it is set
        return {"filepath": str(self._filepath), "log_path": self._channels.log_path,
                "notification_block": self._channels.notification_block,
                "webhook_url": "<set>" if self._channels.webhook_url else None,
                "timeout_seconds": self._channels.timeout_seconds}
