"""Alert delivery: a real loopback HTTP receiver behind a Prefect webhook block (real server), and the JSONL log."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ts_kedro.orchestration.alerts import AlertError, send_alert
from ts_kedro.orchestration.config import AlertConfig

from .conftest import free_port

# Synthetic alert (the rules that produce real ones live in the monitoring pipeline, not here).
DRIFT_ALERT = {"rule": "data_drift", "severity": "critical", "series_id": "H1", "message": "share of drifted columns 0.8"}


@pytest.fixture
def webhook_receiver():
    """An HTTP server on loopback that stores every POST body; stopped after the test."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append({"path": self.path, "json": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def _log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_alert_goes_through_the_webhook_block_and_the_log(tmp_path, webhook_receiver, prefect_api):
    url, received = webhook_receiver
    config = AlertConfig(log_path=str(tmp_path / "alerts.jsonl"), notification_block="probe-alerts", webhook_url=url)

    record = send_alert(DRIFT_ALERT, config)

    assert record["delivery"] == {"status": "sent", "channel": "prefect-block:probe-alerts", "error": None}
    [post] = received
    assert post["path"] == "/alerts"
    assert post["json"]["subject"] == "[ts_kedro] CRITICAL data_drift (H1)"
    assert json.loads(post["json"]["body"]) == DRIFT_ALERT
    [line] = _log_lines(tmp_path / "alerts.jsonl")
    assert line["alert"] == DRIFT_ALERT and line["delivery"]["status"] == "sent"

    # the block now exists on the server: a second alert loads it by name, without the URL in the config
    by_name = AlertConfig(log_path=str(tmp_path / "alerts.jsonl"), notification_block="probe-alerts")
    send_alert({**DRIFT_ALERT, "series_id": "H103"}, by_name)
    assert len(received) == 2 and json.loads(received[1]["json"]["body"])["series_id"] == "H103"
    assert len(_log_lines(tmp_path / "alerts.jsonl")) == 2  # appended, never rewritten


@pytest.mark.slow
def test_undeliverable_alert_is_recorded_not_raised(tmp_path, prefect_api):
    dead_url = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    config = AlertConfig(
        log_path=str(tmp_path / "alerts.jsonl"), notification_block="dead-alerts", webhook_url=dead_url, timeout_seconds=2
    )
    record = send_alert(DRIFT_ALERT, config)
    assert record["delivery"]["status"] == "failed"
    assert "ConnectError" in record["delivery"]["error"]
    [line] = _log_lines(tmp_path / "alerts.jsonl")
    assert line["delivery"]["status"] == "failed" and line["alert"] == DRIFT_ALERT

    missing = AlertConfig(log_path=str(tmp_path / "alerts.jsonl"), notification_block="never-created")
    assert "does not exist" in send_alert(DRIFT_ALERT, missing)["delivery"]["error"]


def test_alert_without_block_is_only_logged(tmp_path):
    record = send_alert(DRIFT_ALERT, {"log_path": "alerts.jsonl", "notification_block": None}, project_path=tmp_path)
    assert record["delivery"]["status"] == "skipped"
    assert _log_lines(tmp_path / "alerts.jsonl")[0]["subject"] == "[ts_kedro] CRITICAL data_drift (H1)"


@pytest.mark.parametrize("bad", [{}, ["data_drift"], None])
def test_malformed_alert_is_refused(tmp_path, bad):
    with pytest.raises(AlertError, match="non-empty dict"):
        send_alert(bad, AlertConfig(log_path=str(tmp_path / "a.jsonl"), notification_block=None))
    assert not (tmp_path / "a.jsonl").exists()
