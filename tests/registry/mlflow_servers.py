"""Start and always stop real MLflow server processes (tracking server, model server) for the registry tests."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import stop_process_group


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(DO_NOT_TRACK="1", MLFLOW_ENABLE_TELEMETRY="false", PYTHONUNBUFFERED="1", **extra)
    # `mlflow models serve` execs `uvicorn` by name: the interpreter's bin folder must lead PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@contextlib.contextmanager
def running_server(command: list[str], url: str, log_path: Path, env: dict[str, str], timeout: float = 90.0):
    """Start ``command`` in its own process group, wait until ``url`` answers 200, always kill it after.

    The group is killed (not just the parent) because MLflow's servers start uvicorn worker children.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    pytest.fail(f"{command[:4]} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{url} not healthy after {timeout} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield process
        finally:
            # uvicorn's graceful shutdown waits for idle keep-alive clients: do not wait long for it
            stop_process_group(process, signal.SIGTERM, grace_s=5)


def mlflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", *args]


@contextlib.contextmanager
def tracking_server(home: Path):
    """A real ``mlflow server`` on a free loopback port, SQLite backend and artifact store under ``home``."""
    port = free_port()
    command = mlflow_command(
        "server",
        "--backend-store-uri", f"sqlite:///{home / 'server.db'}",
        "--artifacts-destination", str(home / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    )
    url = f"http://127.0.0.1:{port}"
    with running_server(command, f"{url}/health", home / "server.log", server_env()):
        yield url
