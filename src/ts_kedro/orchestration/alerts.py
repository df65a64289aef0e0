"""Alert delivery: every alert goes to an append-only JSONL log and through a Prefect notification block.

The alert rules live in the monitoring pipeline; this module only delivers. Delivery never raises: a failed
webhook is logged and recorded in the JSONL line of the alert, so a monitoring run is not lost to a network error.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ts_kedro.orchestration.config import AlertConfig

logger = logging.getLogger(__name__)

# One writer at a time per process, so concurrent tasks do not interleave half lines.
_LOG_LOCK = threading.Lock()


class AlertError(ValueError):
    """The alert itself is malformed (not a mapping, or empty)."""


def send_alert(alert: dict[str, Any], config: AlertConfig | dict[str, Any], project_path: str | Path | None = None) -> dict[str, Any]:
    """Record an alert in the JSONL log and send it through the configured notification block.

    Args:
        alert: The alert, as produced by the monitoring rules (e.g. `rule`, `severity`, `series_id`,
            `message`, values). Must be JSON-serialisable (other values are written with `str`).
        config: `orchestration.alerts` (an `AlertConfig` or its dict).
        project_path: Root that a relative `log_path` is resolved against (default: working directory).

    Returns:
        The JSONL record written: `created_at`, `alert`, and `delivery` (`status`: sent | failed | skipped,
        `channel`, `error`).
    """
    if not isinstance(alert, dict) or not alert:
        raise AlertError(f"an alert must be a non-empty dict, got {type(alert).__name__}: {alert!r}")
    config = config if isinstance(config, AlertConfig) else AlertConfig.from_dict(config)
    subject = alert_subject(alert)
    body = json.dumps(alert, default=str, sort_keys=True)
    delivery = _deliver(subject, body, config)
    record = {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "subject": subject,
        "alert": json.loads(body),
        "delivery": delivery,
    }
    log_path = Path(config.log_path)
    if not log_path.is_absolute():
        log_path = Path(project_path or Path.cwd()) / log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _LOG_LOCK, open(log_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    return record


def alert_subject(alert: dict[str, Any]) -> str:
    """One-line subject: severity, rule and series when the alert names them."""
    severity = str(alert.get("severity", "warning")).upper()
    rule = alert.get("rule") or alert.get("name") or "alert"
    series = alert.get("series_id")
    return f"[ts_kedro] {severity} {rule}" + (f" ({series})" if series else "")


def load_or_create_block(config: AlertConfig) -> Any:
    """The notification block named `config.notification_block`; created from `webhook_url` if absent.

    A `webhook_url` in the configuration always wins: the saved block is updated to it, so rotating the URL
    in the environment takes effect on the next alert.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = config.notification_block
    if config.webhook_url:
        block = CustomWebhookNotificationBlock(
            name=name,
            url=config.webhook_url,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"},
            timeout=config.timeout_seconds,
        )
        block.save(name, overwrite=True)
        return block
    try:
        return CustomWebhookNotificationBlock.load(name)
    except ValueError as err:
        raise LookupError(
            f"Prefect notification block '{name}' does not exist and orchestration.alerts.webhook_url is not set: "
            "create the block in the Prefect UI (Custom Webhook) or set TS_KEDRO_ALERT_WEBHOOK"
        ) from err


def _deliver(subject: str, body: str, config: AlertConfig) -> dict[str, Any]:
    if not config.notification_block:
        return {"status": "skipped", "channel": None, "error": "no notification block configured"}
    channel = f"prefect-block:{config.notification_block}"
    try:
        block = load_or_create_block(config)
        block.notify(body=body, subject=subject)
    except Exception as err:  # delivery must never take the flow down: record and carry on
        logger.warning("alert '%s' not delivered through %s: %s: %s", subject, channel, type(err).__name__, err)
        return {"status": "failed", "channel": channel, "error": f"{type(err).__name__}: {err}"}
    logger.info("alert '%s' delivered through %s", subject, channel)
    return {"status": "sent", "channel": channel, "error": None}
