"""The cycle CLI applies the Kedro project's logging before any Prefect flow runs in the process, and code inside
flows never applies it (a flow run that Prefect's runner starts in a process of its own is not bootstrapped).

Kedro applies it (``logging.config.dictConfig``) at a process's first ``bootstrap_project``; inside a running flow
that flushed Prefect's API log handler while holding the logging lock its starting worker needed, and a cycle hung
(``kedro_prefect.bootstrap_before_flows``). Checked in a fresh process: the flow is replaced by a probe that
records whether the project was bootstrapped when the flow was entered, and whether the flow's own
``bootstrap_project`` then ran ``dictConfig``.
"""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO_ROOT, SMALL_PACKAGE

PROBE = r"""
import json, logging.config, sys
calls = []
original = logging.config.dictConfig
logging.config.dictConfig = lambda config: (calls.append("dictConfig"), original(config))[1]
import ts_kedro.orchestration.flows as flows
from kedro.framework.project import LOGGING

def probe(project_path=None, **kwargs):
    bootstrapped = "ts_kedro" in (LOGGING.data.get("loggers") or {})
    before = len(calls)
    from kedro.framework.startup import bootstrap_project
    bootstrap_project(project_path or sys.argv[1])  # what the flow's start-up does (flows._configure_tracking)
    print(json.dumps({"bootstrapped": bootstrapped, "dict_config_calls_in_flow": len(calls) - before}))
    return {"day": "probe"}

flows.ts_kedro_cycle = probe
from ts_kedro.orchestration.__main__ import main
sys.exit(main(["cycle", "--project-path", sys.argv[1]]))
"""


def test_the_cycle_cli_bootstraps_the_project_before_the_flow():
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"bootstrapped"')))
    assert seen == {"bootstrapped": True, "dict_config_calls_in_flow": 0}


RUNNER_PROCESS_PROBE = r"""
import json, logging, logging.config, sys
from pathlib import Path
calls = []
original = logging.config.dictConfig
logging.config.dictConfig = lambda config: (calls.append("dictConfig"), original(config))[1]
import ts_kedro.orchestration.flows as flows  # Kedro's import-time logging runs here, before any flow
import kedro.framework.project as kedro_project
before = len(calls)
root = Path(sys.argv[1])
flows._configure_tracking(root, None)  # the cycle flow's start-up, entered without the CLI's bootstrap
parameters = flows._load_dataset(root, None, "parameters")
print(json.dumps({
    "dict_config_calls_in_flow": len(calls) - before,
    "package": kedro_project.PACKAGE_NAME,
    "pipelines": sorted(kedro_project.pipelines),
    "parameters": sorted(parameters),
    "package_log_level": logging.getLogger(kedro_project.PACKAGE_NAME).getEffectiveLevel(),
}))
"""


def test_a_flow_entered_without_the_cli_bootstraps_without_touching_logging(small_kedro_project):
    """What a Prefect runner's flow process (``serve``, a deployment) does: import the flow module, enter the flow.
    The project (not installed: its ``src`` goes on the path) is configured and its logger logs INFO, with no
    ``dictConfig`` after the import; the old ``bootstrap_project`` inside the flow applied it once."""
    done = subprocess.run([sys.executable, "-c", RUNNER_PROCESS_PROBE, str(small_kedro_project)],
                          cwd=small_kedro_project, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"dict_config')))
    assert seen["dict_config_calls_in_flow"] == 0
    assert seen["package"] == SMALL_PACKAGE
    assert "__default__" in seen["pipelines"] and seen["parameters"]
    assert seen["package_log_level"] == 20  # logging.INFO, Kedro's default for the project package
