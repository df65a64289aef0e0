"""The cycle CLI applies the Kedro project's logging before any Prefect flow runs in the process.

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

from .conftest import REPO_ROOT

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
