"""Kedro's own commands on this project, each in a fresh process (no session registered any resolver first).

Regression: `kedro registry list` and `kedro registry describe training` failed with
`UnsupportedInterpolationType: env` because the families were read through a second config loader
without the project's custom resolvers.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).parent / "kedro"


def _run(*command: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TS_KEDRO_FAMILIES", "KEDRO_ENV")}
    env.update(DO_NOT_TRACK="1", MLFLOW_ENABLE_TELEMETRY="false", KEDRO_DISABLE_TELEMETRY="true")
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, expected",
    [
        (("registry", "list"), ["training", "model_selection", "__default__"]),
        (("registry", "describe", "training"), ["evaluate_model"]),
        (("catalog", "list-patterns"), []),
    ],
)
def test_standard_kedro_commands_work(args, expected):
    done = _run(str(KEDRO), *args)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "UnsupportedInterpolationType" not in output
    for text in expected:
        assert text in done.stdout


def test_pipelines_build_after_bootstrap_without_a_session():
    script = (
        "from pathlib import Path\n"
        "from kedro.framework.startup import bootstrap_project\n"
        f"bootstrap_project(Path({str(PROJECT_ROOT)!r}))\n"
        "from kedro.framework.project import pipelines\n"
        "print(sorted(pipelines))\n"
    )
    done = _run(sys.executable, "-c", script)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "training" in done.stdout


@pytest.mark.parametrize("key, value, message", [
    ("model_selection.ensemble.member_rule", "greedy", "model_selection.ensemble.member_rule must be one of"),
    ("model_selection.ensemble.method", "mean", "model_selection.ensemble.method must be one of"),
    ("model_selection.secondary_floors.peak_rss_mb", "100", "model_selection.secondary_floors takes inference_seconds"),
    ("registry.promote_after", "sometimes", "model_selection.registry.promote_after must be one of"),
    ("backtest.calibration_method", "quantile", "backtest.calibration_method must be one of"),
    ("backtest.per_series_calibration", "sometimes", "backtest.per_series_calibration must be true or false"),
    ("reporting.anomalies.level", "99", "reporting.anomalies.level is 99"),
])
def test_a_bad_selection_parameter_stops_kedro_run_before_any_family_trains(tmp_path, key, value, message):
    """model_selection and the registry read their parameters after every family has trained: ParameterChecksHook checks them
    before the first node, so a typo costs seconds, not a Day 0. Nothing is written under data/."""
    from tests.e2e.project_copy import make_project_copy

    root = make_project_copy(tmp_path / "project", n_series=2)
    before = sorted(p.relative_to(root) for p in (root / "data").rglob("*"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TS_KEDRO_FAMILIES", "KEDRO_ENV") and not k.startswith("MLFLOW_")}
    env.update(DO_NOT_TRACK="1", MLFLOW_ENABLE_TELEMETRY="false", KEDRO_DISABLE_TELEMETRY="true",
               TS_KEDRO_CONF_SOURCE=str(root / "conf"))
    done = subprocess.run([str(KEDRO), "run", "--params", f"{key}={value}"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert message in output and value in output
    assert "Running node" not in output and "Completed node" not in output
    assert sorted(p.relative_to(root) for p in (root / "data").rglob("*")) == before
