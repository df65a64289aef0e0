"""A real Prefect server on loopback for tests: helpers shared by every folder (fixtures in tests/conftest.py).

A plain module, not a conftest: a test module that imported the session fixture from another folder's conftest
would register a second fixture and start a second server.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT_CLI = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        DO_NOT_TRACK="1",
        KEDRO_DISABLE_TELEMETRY="true",
        MLFLOW_ENABLE_TELEMETRY="false",
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def wait_until_healthy(server: subprocess.Popen, api_url: str, log_path: Path, timeout: float = 120) -> None:
    """Block until the Prefect server answers ``/health``; fail with the end of its log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited ({server.returncode}): {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)
