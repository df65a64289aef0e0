"""Per-series work on a real Dask cluster: a 2-worker `distributed.LocalCluster` (processes, loopback).

The local families' backtests and fits on the real M3 quarterly sample must give the same forecasts on the
cluster as on this machine's processes, and the task stream must show the chunks running on both workers.
A whole `kedro run` with `orchestration.per_series.cluster: local` must open the cluster through the hook and
produce the same forecasts as the run without it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ts_kedro.evaluation.backtest import rolling_origin_backtest
from ts_kedro.forecasters import build_forecaster
from ts_kedro.frequency import derive_profile
from ts_kedro.forecasters._per_series import active_dask_target, chunk_items, map_series, use_dask_client
from ts_kedro.orchestration.config import OrchestrationConfig, OrchestrationConfigError, PerSeriesConfig
from ts_kedro.orchestration.per_series_cluster import per_series_cluster

distributed = pytest.importorskip("distributed")

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
QUARTERLY = SAMPLES / "m3_quarterly.csv"
FREQ, HORIZON = "QS", 8


@pytest.fixture(scope="module")
def dask_client():
    """Two single-threaded worker processes on 127.0.0.1; closed after the module."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        memory_limit="1GiB",
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=60)
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def quarterly_panel() -> pd.DataFrame:
    return pd.read_csv(QUARTERLY, parse_dates=["timestamp"], dtype={"series_id": str})


def _square(x: int) -> int:
    return x * x


def test_chunks_keep_order_and_cover_every_item():
    items = [(i,) for i in range(10)]
    chunks = chunk_items(items, 4)
    assert [len(c) for c in chunks] == [3, 3, 2, 2]
    assert [item for chunk in chunks for item in chunk] == items
    assert chunk_items(items[:2], 8) == [[(0,)], [(1,)]]


@pytest.mark.parametrize(
    "block, fragment",
    [
        ({"cluster": "somehost:8786"}, "neither 'local' nor a scheduler address"),
        ({"cluster": "local", "chunks_per_worker": 0}, "chunks_per_worker must be a positive integer"),
        ({"cluster": "local", "local_n_workers": 0}, "local_n_workers must be null or >= 1"),
        ({"clusters": "local"}, "unknown key(s) ['clusters'] in orchestration.per_series"),
    ],
)
def test_bad_per_series_settings_name_the_key(block, fragment):
    with pytest.raises(OrchestrationConfigError) as error:
        OrchestrationConfig.from_dict({"per_series": block})
    assert fragment in str(error.value)


def test_shipped_default_is_this_machine():
    from ts_kedro.orchestration.config import load_orchestration_config

    assert load_orchestration_config(Path(__file__).resolve().parents[2], "base").per_series.cluster is None


def _backtest_and_fit(family: str, panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    profile = derive_profile({"freq": FREQ, "horizon": HORIZON}, panel.groupby("series_id").size())
    spec = {"class": family, "hyperparameters": {}}  # shipped n_jobs (-1): loky here, chunks on the cluster
    factory = lambda: build_forecaster(spec, FREQ, profile_defaults=profile.forecaster_defaults())  # noqa: E731
    backtest, _ = rolling_origin_backtest(factory, panel, HORIZON, n_windows=2, step=HORIZON, levels=[80],
                                          min_train=8)
    model = factory().fit(panel)
    return backtest, model.predict(HORIZON, [80])


@pytest.mark.parametrize("family", ["ets", "arima"])
def test_cluster_results_equal_local_and_run_on_both_workers(family, quarterly_panel, dask_client):
    local_backtest, local_forecast = _backtest_and_fit(family, quarterly_panel)
    with use_dask_client(dask_client), distributed.get_task_stream(dask_client) as stream:
        dask_backtest, dask_forecast = _backtest_and_fit(family, quarterly_panel)
    assert active_dask_target() is None  # restored on exit

    pd.testing.assert_frame_equal(dask_backtest, local_backtest)
    pd.testing.assert_frame_equal(dask_forecast, local_forecast)
    chunk_tasks = [task for task in stream.data if "run_chunk" in str(task["key"])]
    # 2 backtest windows + the final fit, each cut into chunks over both workers
    assert {task["worker"] for task in chunk_tasks} == set(dask_client.nthreads())
    assert len(chunk_tasks) >= 3 * 2


def test_inside_a_dask_worker_the_workers_own_cluster_is_used(dask_client):
    """A Prefect task on a DaskTaskRunner opens `cluster: local` as the cluster it already runs on; the nested
    chunks must not deadlock although each worker has a single thread (joblib secedes)."""

    def in_worker() -> tuple[list[int], str]:
        with per_series_cluster(PerSeriesConfig(cluster="local", chunks_per_worker=2)) as target:
            return map_series(_square, [(i,) for i in range(12)], -1, "probe"), target.client.scheduler.address

    squares, address = dask_client.submit(in_worker, pure=False).result(timeout=120)
    assert squares == [i * i for i in range(12)]
    assert address == dask_client.scheduler.address


def test_n_jobs_one_stays_in_process(dask_client):
    with use_dask_client(dask_client), distributed.get_task_stream(dask_client) as stream:
        assert map_series(_square, [(3,), (4,)], 1, "probe") == [9, 16]
    assert not [task for task in stream.data if "run_chunk" in str(task["key"])]


def _kedro_run(root: Path, cluster: str | None, dispatched: list) -> pd.DataFrame:
    """A Day-0 `kedro run` of the fast local families on the M3 quarterly sample; each per-series map that went
    to Dask appends (description, worker addresses of its chunks) to ``dispatched``."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from ts_kedro.forecasters import _per_series

    original = _per_series._map_on_dask

    def recording(func, items, target, desc):
        with distributed.get_task_stream(target.client) as stream:
            results = original(func, items, target, desc)
        dispatched.append((desc, {task["worker"] for task in stream.data}))
        return results

    (root / "conf" / "local" / "orchestration.yml").write_text(yaml.safe_dump(
        {"orchestration": {"per_series": {"cluster": cluster, "local_n_workers": 2}}}
    ))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_per_series, "_map_on_dask", recording)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.setenv("TS_KEDRO_CONF_SOURCE", str(root / "conf"))
        patch.setenv("TS_KEDRO_FAMILIES", "seasonal_naive,ets,theta")
        patch.chdir(root)
        bootstrap_project(root)
        params = {"raw_panel_path": str(QUARTERLY), "panel": {"freq": FREQ, "horizon": HORIZON}}
        with KedroSession.create(project_path=root, runtime_params=params) as session:
            session.run()
    versions = sorted((root / "data" / "07_model_output" / "forecasts.csv").iterdir())
    return pd.read_csv(versions[-1] / "forecasts.csv", dtype={"series_id": str})


@pytest.fixture(scope="module")
def local_run_forecasts(tmp_path_factory) -> pd.DataFrame:
    """The Day-0 forecasts of the run on this machine's processes (cluster: null), shared by the comparisons."""
    from tests.e2e.project_copy import make_project_copy

    dispatched: list = []
    forecasts = _kedro_run(make_project_copy(tmp_path_factory.mktemp("local") / "project", n_series=1), None,
                           dispatched)
    assert dispatched == []
    return forecasts


def test_kedro_run_with_a_local_cluster_equals_the_local_run(tmp_path, local_run_forecasts):
    from tests.e2e.project_copy import make_project_copy

    dispatched: list = []
    clustered = _kedro_run(make_project_copy(tmp_path / "dask", n_series=1), "local", dispatched)
    assert active_dask_target() is None  # the hook closed the cluster after the run
    descriptions = {desc for desc, _ in dispatched}
    assert {"ets fit", "theta fit"} <= descriptions  # backtest windows and final fits of both families
    assert len(set().union(*(workers for _, workers in dispatched))) == 2  # chunks ran in both worker processes
    pd.testing.assert_frame_equal(clustered, local_run_forecasts)


def test_prefect_flow_with_a_local_cluster_equals_the_local_run(tmp_path, prefect_server, local_run_forecasts):
    """The same Day 0 as a Prefect flow run (thread task runner, families in parallel threads) on a real server:
    the hook fires in the flow process, every family's maps go to the 2 workers, the forecasts are the same."""
    from tests.e2e.project_copy import make_project_copy

    from .conftest import run_cli

    root = make_project_copy(tmp_path / "project", n_series=1)
    (root / "conf" / "local" / "orchestration.yml").write_text(yaml.safe_dump(
        {"orchestration": {"per_series": {"cluster": "local", "local_n_workers": 2}}}
    ))
    logging_config = root / "logging.yml"  # one unwrapped line per record (Kedro's rich handler wraps lines)
    logging_config.write_text(yaml.safe_dump({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
        "loggers": {"ts_kedro": {"level": "INFO"}},
        "root": {"level": "WARNING", "handlers": ["console"]},
    }))
    env = {"TS_KEDRO_CONF_SOURCE": str(root / "conf"), "TS_KEDRO_FAMILIES": "seasonal_naive,ets,theta",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "KEDRO_LOGGING_CONFIG": str(logging_config)}
    code, summary, output = run_cli(
        ["run", "--task-runner", "thread", "--params", f"raw_panel_path={QUARTERLY}",
         f"panel={{freq: {FREQ}, horizon: {HORIZON}}}"],
        prefect_server, cwd=root, timeout=600, extra_env=env,
    )
    assert code == 0, output[-3000:]
    assert summary["status"] == "completed"
    assert "per-series work goes to a local Dask cluster of 2 worker(s)" in output
    for family in ("ets", "theta"):
        assert re.search(rf"{family} fit: \d+ series in \d+ chunk\(s\) on 2 Dask worker thread\(s\)", output)
    versions = sorted((root / "data" / "07_model_output" / "forecasts.csv").iterdir())
    flow_forecasts = pd.read_csv(versions[-1] / "forecasts.csv", dtype={"series_id": str})
    pd.testing.assert_frame_equal(flow_forecasts, local_run_forecasts)


def test_a_lazy_target_starts_its_cluster_at_the_first_map_only():
    config = PerSeriesConfig(cluster="local", local_n_workers=1, chunks_per_worker=1)
    with per_series_cluster(config, lazy=True) as target:
        assert not target.opened  # e.g. an ingestion run: no per-series map, no cluster
        assert map_series(_square, [(2,), (5,)], -1, "probe") == [4, 25]
        assert target.opened and len(target.client.nthreads()) == 1
        client = target.client
    assert active_dask_target() is None and client.status == "closed"
