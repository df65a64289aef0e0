"""Stopping the service processes tests start (servers, the cycle scheduler): shared by every folder."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, first: int = signal.SIGTERM, grace_s: float = 10) -> None:
    """Send ``first`` to the process group of ``process`` (started with ``start_new_session=True``), wait up to
    ``grace_s`` seconds, then SIGKILL the group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
