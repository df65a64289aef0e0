#!/usr/bin/env python3
"""The project's two entry commands: `python3 scripts/make.py run` and `python3 scripts/make.py test`.

Each creates `.venv` if missing, installs the project with the pinned versions of `constraints.txt`
(skipped when nothing changed since the last install), then runs the Day-0 `kedro run` on the shipped
default data, or the test suite. Needs only Python 3.11 on the PATH.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".ts_kedro_installed"
INSTALL_INPUTS = ("pyproject.toml", "constraints.txt")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # No network beyond package registries: keep telemetry and usage stats off.
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    return env


def _sh(*cmd: str | Path) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, env=_env(), check=True)


def _fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for name in INSTALL_INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def install() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"ts_kedro is tested on Python 3.11; this is {sys.version.split()[0]}. Run with python3.11.")
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    _sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _sh(PY, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[test]")
    STAMP.write_text(_fingerprint())


def run(extra: list[str]) -> None:
    install()
    _sh(BIN / "kedro", "run", *extra)


def ensure_browser() -> None:
    """The kedro-viz browser test needs Debian's chromium and chromedriver; install them where we may."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=False, env=env)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("warning: chromium/chromedriver not found; install them (Debian: apt-get install chromium "
              "chromium-driver) or the kedro-viz browser test fails", flush=True)


def test(extra: list[str]) -> None:
    install()
    ensure_browser()
    # two pytest-xdist workers (the CI machine has 2 cores): most of the suite's time is single-threaded (imports
    # of every Day-N process, pandas, one-thread LSTM), so two files at a time nearly halve it. A file's tests stay
    # together and in order (--dist loadfile): the SIGKILL tests build on each other.
    _sh(PY, "-m", "pytest", *(extra or ["-n", "2", "--dist", "loadfile", "tests"]))


def main(argv: list[str]) -> None:
    commands = {"install": lambda _: install(), "run": run, "test": test}
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: python3 scripts/make.py {{{'|'.join(commands)}}} [extra args]")
    try:
        commands[argv[0]](argv[1:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
