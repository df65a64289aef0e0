"""Per-series plumbing shared by the local model families: split a panel, map over series, normal quantiles."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import norm
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)


def split_series(panel: pd.DataFrame) -> dict[str, np.ndarray]:
    """Values of each series in time order, keyed by ``series_id`` (first-appearance order kept)."""
    ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    return {sid: group[VALUE].to_numpy(dtype=float) for sid, group in ordered.groupby(SERIES_ID, sort=False)}


def resolve_n_jobs(n_jobs: int, n_tasks: int) -> int:
    """joblib's convention (-1 = all cores), capped by the number of series so no idle worker is started."""
    cores = os.cpu_count() or 1
    wanted = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, min(wanted, n_tasks))


def map_series(
    func: Callable[..., Any], items: Sequence[tuple], n_jobs: int, desc: str
) -> list[Any]:
    """``func(*item)`` for every item, in order, with a tqdm bar; joblib processes when ``n_jobs`` > 1.

    A single worker runs in-process: spawning processes costs more than a handful of small fits.
    """
    workers = resolve_n_jobs(n_jobs, len(items))
    progress: Iterable = tqdm(items, desc=desc, unit="series", leave=False)
    if workers == 1:
        # small per-series matrices gain nothing from threaded BLAS, and on a busy machine it thrashes
        with threadpool_limits(limits=1):
            return [func(*item) for item in progress]
    # loky already limits each worker's BLAS threads so that workers x threads <= cores
    return Parallel(n_jobs=workers, backend="loky")(delayed(func)(*item) for item in progress)


def normal_quantile(level: int) -> float:
    """Two-sided standard normal quantile for a central interval of ``level`` percent."""
    return float(norm.ppf(0.5 + level / 200.0))


def forecast_frame(series_id: str, timestamps: pd.DatetimeIndex, mean: np.ndarray,
                   bounds: dict[int, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One series' forecast in the interface's column layout (``lo-L``/``hi-L`` for each level)."""
    frame = pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: timestamps, "mean": np.asarray(mean, float)})
    for level, (lo, hi) in bounds.items():
        frame[f"lo-{level}"] = np.asarray(lo, float)
        frame[f"hi-{level}"] = np.asarray(hi, float)
    return frame
