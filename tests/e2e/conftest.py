"""One Day-0 run of the whole project (all families, real M4 sample) shared by the end-to-end tests."""
from __future__ import annotations

import os
import time

import pytest

from .project_copy import make_project_copy


@pytest.fixture(scope="session")
def day0_project(tmp_path_factory):
    """A project copy with 8 real M4 series after a complete `kedro run` (KedroSession, default pipeline)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = make_project_copy(tmp_path_factory.mktemp("day0") / "project", n_series=8)
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
            patch.delenv(key)
        patch.setenv("TS_KEDRO_CONF_SOURCE", str(root / "conf"))
        patch.chdir(root)
        bootstrap_project(root)
        started = time.perf_counter()
        with KedroSession.create(project_path=root) as session:
            session.run()
            run_id = session.session_id if hasattr(session, "session_id") else None
        elapsed = time.perf_counter() - started
    return {"root": root, "seconds": elapsed, "kedro_run_id": run_id}
