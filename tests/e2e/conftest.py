"""One Day-0 run of the whole project (all families, real M4 sample) shared by the end-to-end tests.

The run tracks to a real `mlflow server` on loopback (SQLite backend and artifact store in a temp folder),
exactly as an operator's `MLFLOW_TRACKING_URI=http://...` deployment would; the server is stopped after.
"""
from __future__ import annotations

import os
import time

import pytest

from tests.registry.mlflow_servers import tracking_server

from .project_copy import make_project_copy


@pytest.fixture(scope="session")
def mlflow_tracking_server(tmp_path_factory):
    with tracking_server(tmp_path_factory.mktemp("mlflow_server")) as url:
        yield url


@pytest.fixture(scope="session")
def day0_project(tmp_path_factory, mlflow_tracking_server):
    """A project copy with 8 real M4 series after a complete `kedro run` (KedroSession, default pipeline)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = make_project_copy(tmp_path_factory.mktemp("day0") / "project", n_series=8)
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
            patch.delenv(key)
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_server)
        patch.setenv("TS_KEDRO_CONF_SOURCE", str(root / "conf"))
        patch.chdir(root)
        bootstrap_project(root)
        started = time.perf_counter()
        with KedroSession.create(project_path=root) as session:
            session.run()
        elapsed = time.perf_counter() - started
    return {"root": root, "seconds": elapsed, "tracking_uri": mlflow_tracking_server}
