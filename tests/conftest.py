"""Shared test fixtures: paths to the real data beside the project and small real panels."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.prefect_server import PREFECT_CLI, base_env, free_port, wait_until_healthy

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_RAW = PROJECT_ROOT / "data" / "01_raw" / "m4_hourly_sample.csv"

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"real data folder {SHARED_DATA} is missing: the project expects ../shared/data beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def m4_sample_panel() -> pd.DataFrame:
    """The shipped default data (24 real M4 Hourly series) as a canonical long panel."""
    panel = pd.read_csv(DEFAULT_RAW, parse_dates=["timestamp"])
    panel["value"] = panel["value"].astype(float)
    return panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def sunspots_panel() -> pd.DataFrame:
    """Yearly sunspot numbers 1700-2008 (real data shipped with statsmodels, read offline) as a one-series panel:
    a history longer than the 292 years a pandas Timedelta holds."""
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    return pd.DataFrame({"series_id": "sunspots",
                         "timestamp": pd.to_datetime(data["YEAR"].astype(int).astype(str) + "-01-01"),
                         "value": data["SUNACTIVITY"].astype(float)})


@pytest.fixture(scope="session")
def small_panel(m4_sample_panel) -> pd.DataFrame:
    """Three real M4 Hourly series, last 336 hours each: small enough for fast model tests."""
    ids = sorted(m4_sample_panel["series_id"].unique())[:3]
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)]
    return panel.groupby("series_id", group_keys=False).tail(336).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch, tmp_path):
    """No test leaks an active MLflow run or MLFLOW_* settings into another (kedro-mlflow's habit)."""
    for key in [k for k in os.environ if k.startswith("MLFLOW_") and k != "MLFLOW_ENABLE_TELEMETRY"]:
        monkeypatch.delenv(key, raising=False)
    yield
    try:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()
    except ImportError:
        pass


def _drop_shadowing_paths() -> bool:
    """Remove ``sys.path`` entries holding a ts_kedro package other than the installed one; True if any."""
    import ts_kedro

    installed = Path(ts_kedro.__file__).resolve().parent
    shadowing = [entry for entry in sys.path
                 if (Path(entry or ".") / "ts_kedro").is_dir() and (Path(entry or ".") / "ts_kedro").resolve() != installed]
    for entry in shadowing:
        sys.path.remove(entry)
    return bool(shadowing)


@pytest.fixture(autouse=True)
def _no_shadowing_ts_kedro():
    """MLflow's pyfunc loader prepends a model's shipped code folder (a partial ts_kedro copy) to ``sys.path``
    for good, also from module-scoped fixtures. Process pools started later in the same pytest process (joblib's
    loky workers inherit ``sys.path``) then import ts_kedro from that copy and fail ("No module named
    ts_kedro.forecasters.ets"). Which test runs after which depends on how pytest-xdist spreads the files, so
    before and after every test such entries are dropped, and loky's reusable workers started with them retired."""
    _clean_sys_path()
    yield
    _clean_sys_path()


def _clean_sys_path() -> None:
    if _drop_shadowing_paths():
        from joblib.externals.loky import reusable_executor

        executor = reusable_executor._executor
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own sqlite database; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_env(home)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [PREFECT_CLI, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(server, api_url, home / "server.log")
        yield {"api_url": api_url, "home": home}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def prefect_api(prefect_server):
    """Point this test process's Prefect client at the test server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server["api_url"]}):
        yield prefect_server["api_url"]
