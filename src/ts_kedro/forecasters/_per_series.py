"""Per-series plumbing shared by the local model families: split a panel, map over series, normal quantiles.

``map_series`` runs on this machine (joblib ``loky`` processes) unless a Dask client has been made active
with ``use_dask_client`` (``ts_kedro.orchestration.per_series_cluster`` does that from
``orchestration.per_series.cluster`` for every ``kedro run`` and Prefect flow run): then the series go to the
Dask workers in chunks, through joblib's ``dask`` backend.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from scipy.stats import norm
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import series_bounds

logger = logging.getLogger(__name__)


def split_series(panel: pd.DataFrame) -> dict[str, np.ndarray]:
    """Values of each series in time order, keyed by ``series_id`` (first-appearance order kept)."""
    ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    return _split_rows(ordered[SERIES_ID].to_numpy(), ordered[VALUE].to_numpy(dtype=float))


def _split_rows(ids: np.ndarray, rows: np.ndarray) -> dict:
    """``rows`` cut where ``ids`` (grouped) changes, keyed by id: one pass, where a pandas group-by cost
    about 80 us per series (1.6 s of a 20,000-series update)."""
    starts = series_bounds(ids)[:-1]
    return dict(zip(ids[starts], np.split(rows, starts[1:]))) if len(ids) else {}


def split_covariates(panel: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray | None]:
    """Each series' ``columns`` in time order (points x columns), keyed like ``split_series``; None per series
    when ``columns`` is empty (the family reads no covariate)."""
    ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    if not columns:
        return {sid: None for sid in ordered[SERIES_ID].unique()}
    return _split_rows(ordered[SERIES_ID].to_numpy(), ordered[list(columns)].to_numpy(dtype=float))


def resolve_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """joblib's convention (-1 = all cores), capped by the number of series so no idle worker is started."""
    cores = os.cpu_count() or 1
    wanted = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, min(wanted, n_tasks))


class DaskTarget:
    """The Dask client per-series work goes to, and how finely it is cut.

    ``client_source`` is a ``distributed.Client`` or a function that opens one: then the cluster starts at the
    first per-series map that needs it, so a run without local-family work (ingestion, reporting) starts none.
    ``chunks_per_worker``: chunks of series per worker thread. One chunk per thread leaves a thread idle
    behind a slow chunk; many tiny chunks pay the scheduler's per-task overhead (about a millisecond) more
    often than a fit costs. A few per thread balances both.
    """

    def __init__(self, client_source: Any, chunks_per_worker: int = 4):
        self._source = client_source
        self._client = None if callable(client_source) else client_source
        self._lock = threading.Lock()
        self.chunks_per_worker = chunks_per_worker

    @property
    def client(self) -> Any:
        """The client, opened on first use when a function was given."""
        with self._lock:
            if self._client is None:
                self._client = self._source()
            return self._client

    @property
    def opened(self) -> bool:
        return self._client is not None


_DASK_TARGET: DaskTarget | None = None
_DASK_TARGET_LOCK = threading.Lock()


@contextmanager
def use_dask_client(client: Any, chunks_per_worker: int = 4) -> Iterator[DaskTarget]:
    """Send every ``map_series`` of this process to ``client`` (a ``distributed.Client``, or a function that
    opens one on first use) while inside.

    Process-wide, not per thread: the model families of a Prefect flow run in threads of the flow process and
    all of them should use the cluster. The previous target is restored on exit.
    """
    global _DASK_TARGET
    if isinstance(chunks_per_worker, bool) or int(chunks_per_worker) != chunks_per_worker or chunks_per_worker < 1:
        raise ValueError(f"chunks_per_worker must be a positive integer, got {chunks_per_worker!r}")
    target = DaskTarget(client, int(chunks_per_worker))
    with _DASK_TARGET_LOCK:
        previous, _DASK_TARGET = _DASK_TARGET, target
    try:
        yield target
    finally:
        with _DASK_TARGET_LOCK:
            _DASK_TARGET = previous


def active_dask_target() -> DaskTarget | None:
    """The Dask target ``map_series`` uses now, or None for this machine's processes."""
    return _DASK_TARGET


def chunk_items(items: Sequence[tuple], n_chunks: int) -> list[list[tuple]]:
    """``items`` cut into at most ``n_chunks`` consecutive chunks whose sizes differ by at most one."""
    n_chunks = max(1, min(int(n_chunks), len(items)))
    size, extra = divmod(len(items), n_chunks)
    chunks, start = [], 0
    for index in range(n_chunks):
        stop = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:stop]))
        start = stop
    return chunks


def run_chunk(func: Callable[..., Any], chunk: Sequence[tuple]) -> list[Any]:
    """``func(*item)`` for each item of one chunk, single-threaded BLAS (one chunk per worker thread)."""
    with threadpool_limits(limits=1):
        return [func(*item) for item in chunk]


def map_series(
    func: Callable[..., Any], items: Sequence[tuple], n_jobs: int, desc: str
) -> list[Any]:
    """``func(*item)`` for every item, in order, with a tqdm bar; joblib processes when ``n_jobs`` > 1.

    A single worker runs in-process: spawning processes costs more than a handful of small fits. With an
    active Dask target (``use_dask_client``) and ``n_jobs`` other than 1, the items go to the cluster's
    workers in chunks instead; ``n_jobs`` = 1 (a family's or user's choice of serial work) stays here.
    """
    items = list(items)
    target = active_dask_target()
    if target is not None and n_jobs != 1 and items:
        return _map_on_dask(func, items, target, desc)
    workers = resolve_n_jobs(n_jobs, len(items))
    progress: Iterable = tqdm(items, desc=desc, unit="series", leave=False)
    if workers == 1:
        # small per-series matrices gain nothing from threaded BLAS, and on a busy machine it thrashes
        with threadpool_limits(limits=1):
            return [func(*item) for item in progress]
    # loky already limits each worker's BLAS threads so that workers x threads <= cores
    return Parallel(n_jobs=workers, backend="loky")(delayed(func)(*item) for item in progress)


def _map_on_dask(func: Callable[..., Any], items: list[tuple], target: DaskTarget, desc: str) -> list[Any]:
    """Chunks of items as Dask tasks through joblib's dask backend (it secedes from a worker thread when called
    inside a Dask task, e.g. a Prefect task on a ``DaskTaskRunner``, so nested waiting cannot deadlock)."""
    threads = sum(target.client.nthreads().values())
    if threads < 1:
        raise RuntimeError(
            f"{desc}: the Dask cluster at {target.client.scheduler.address} has no worker; start workers or set "
            "orchestration.per_series.cluster: null in conf/<env>/orchestration.yml to run on this machine"
        )
    chunks = chunk_items(items, threads * target.chunks_per_worker)
    logger.info("%s: %d series in %d chunk(s) on %d Dask worker thread(s)", desc, len(items), len(chunks), threads)
    with parallel_config(backend="dask", client=target.client):
        # batch_size=1: the chunks are already sized; joblib's auto-batching would merge them again
        parts = Parallel(n_jobs=-1, batch_size=1)(delayed(run_chunk)(func, chunk) for chunk in chunks)
    return [result for part in parts for result in part]


@functools.lru_cache(maxsize=64)
def normal_quantile(level: int) -> float:
    """Two-sided standard normal quantile for a central interval of ``level`` percent (cached: families call it
    per series and level, and scipy's ppf costs about 0.15 ms a call)."""
    return float(norm.ppf(0.5 + level / 200.0))


class SeriesForecast(NamedTuple):
    """One series' forecast as arrays; families collect one per series for ``concat_forecasts``."""

    series_id: str
    timestamps: pd.DatetimeIndex
    mean: np.ndarray
    bounds: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper)


def concat_forecasts(parts: Sequence[SeriesForecast]) -> pd.DataFrame:
    """``parts`` as one frame in the interface's column layout, series in ``parts`` order (``lo-L``/``hi-L``
    for each level, in the first part's level order).

    One frame built from concatenated arrays: a DataFrame per series and a concat over them cost about
    0.7 ms per series (12 s of a seasonal-naive predict over 20,000 series).
    """
    if not parts:
        raise ValueError("no series forecast to assemble")
    lengths = np.fromiter((len(part.timestamps) for part in parts), dtype=np.int64, count=len(parts))
    # dtype inferred from the ids as a per-series frame would (object for strings, shared per series)
    ids = pd.Series([part.series_id for part in parts]).repeat(lengths).to_numpy()
    stamps = np.concatenate([pd.DatetimeIndex(part.timestamps).as_unit("ns").asi8 for part in parts])
    columns = {SERIES_ID: ids, TIMESTAMP: stamps.view("datetime64[ns]"),
               "mean": np.concatenate([np.asarray(part.mean, float) for part in parts])}
    for level in parts[0].bounds:
        for side, name in ((0, "lo"), (1, "hi")):
            columns[f"{name}-{level}"] = np.concatenate([np.asarray(part.bounds[level][side], float) for part in parts])
    return pd.DataFrame(columns)
