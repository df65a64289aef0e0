"""Rolling-origin backtesting of any Forecaster on the canonical long panel, and its M4-style scoring.

Memory is measured as the peak resident set size (RSS) of this process plus its children, sampled by a
background thread during fit and predict. ``tracemalloc`` would be wrong here: it only sees allocations
made through Python's allocator, so torch tensors (LSTM) and the CmdStan child process (Prophet) would be
invisible. The sampling interval (``MEMORY_SAMPLE_SECONDS``) means a spike shorter than it can be missed,
and RSS includes memory the allocator keeps after freeing, so the figure is an honest upper-level
estimate, not an exact byte count.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import psutil

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, Forecaster, interval_columns

logger = logging.getLogger(__name__)

MEMORY_SAMPLE_SECONDS = 0.05
_MB = 1024.0 * 1024.0


class BacktestError(ValueError):
    """A backtest that cannot run as asked: series too short, bad window settings, misaligned forecasts."""


class PeakMemorySampler:
    """Context manager recording the peak RSS (MB) of this process and its children while active."""

    def __init__(self, interval: float = MEMORY_SAMPLE_SECONDS):
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start_mb = self.peak_mb = 0.0

    def _rss_mb(self) -> float:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a child that exited between listing and reading
                pass
        return total / _MB

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> "PeakMemorySampler":
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._run, name="peak-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def window_cutoff_positions(lengths: pd.Series, horizon: int, n_windows: int, step: int) -> pd.DataFrame:
    """Number of training points per series (rows) and window (columns): len − horizon − (n_windows−1−w)·step."""
    offsets = (n_windows - 1 - np.arange(n_windows)) * step
    positions = lengths.to_numpy()[:, None] - horizon - offsets[None, :]
    return pd.DataFrame(positions, index=lengths.index, columns=range(n_windows))


def series_windows(lengths: pd.Series, horizon: int, n_windows: int, step: int, min_train: int) -> pd.DataFrame:
    """Which backtest windows each series can afford: True where its training part holds ``min_train`` points.

    Window ``n_windows - 1`` always ends at each series' end, so a series with ``min_train + horizon`` points
    gets at least that window; longer series get the older windows too. A series with no True is not scored.
    """
    return window_cutoff_positions(lengths, horizon, n_windows, step) >= int(min_train)


def _check_settings(horizon: int, n_windows: int, step: int, refit_every: int = 1) -> None:
    for name, value in (("horizon", horizon), ("n_windows", n_windows), ("step", step), ("refit_every", refit_every)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise BacktestError(f"backtest {name} must be a positive integer, got {value!r}")


def rolling_origin_backtest(
    forecaster_factory: Callable[[], Forecaster],
    panel: pd.DataFrame,
    horizon: int,
    n_windows: int,
    step: int,
    levels: Sequence[int] = (),
    min_train: int | None = None,
    refit_every: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """Fit a forecaster on the data up to each cutoff (or update the previous one) and forecast ``horizon`` steps.

    Window ``w`` is fitted afresh when ``w % refit_every == 0``; the windows between take the previous window's
    fitted model and move it over the points between the two cutoffs with ``Forecaster.update`` (parameters
    kept, state advanced), as a Day-N cycle serves the champion and as statsforecast's ``cross_validation(refit=k)``
    does. A window is fitted afresh all the same when the family implements no ``update``, when a series enters
    the backtest at that window (its length affords no earlier one), or when ``update`` refuses the points
    (``ForecasterError``, e.g. a value <= 0 on a log-scale model); ``timings["refit_windows"]`` lists the fitted
    windows.

    Args:
        forecaster_factory: returns a new, unfitted Forecaster each call.
        panel: canonical long panel (``series_id, timestamp, value``; extra columns, the covariates, are passed
            to the model; a model with ``supports_covariates`` forecasts a window from the recorded values of its
            ``known_covariates`` after the window's cutoff, as if they had been the plan).
        horizon: steps forecast per window.
        n_windows: most origins per series; window 0 is the oldest, the last one ends at each series' end.
        step: points between consecutive origins.
        levels: interval levels in percent.
        min_train: least training points of a scored origin (``series_windows``); None: the forecaster's
            ``min_length`` (the strict, pre-fallback rule: every series must afford every window).
        refit_every: fit afresh every this many windows (1: every window) and update in between.

    Returns:
        Forecasts ``series_id, timestamp, cutoff, window, mean, lo-L, hi-L, ..., actual, served_by, fallback``
        (``cutoff`` is the last training timestamp; ``served_by`` the forecaster that really forecast that
        series in that window, ``fallback`` true where that was the family's fallback) and timings: fit/predict seconds per window,
        totals, peak memory, ``refit_windows`` (the fitted ones; the others were updated),
        ``series_refitted_in_updates`` (window -> the series refitted alone inside an update) and
        ``unscored_series`` (too short for any window).
    """
    _check_settings(horizon, n_windows, step, refit_every)
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in panel.columns]
    if missing:
        raise BacktestError(f"panel lacks columns {missing}; expected the canonical long panel")
    levels = sorted(int(level) for level in levels)
    panel = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    lengths = panel.groupby(SERIES_ID, sort=True)[VALUE].size()
    cutoffs = window_cutoff_positions(lengths, horizon, n_windows, step)
    strict = min_train is None
    min_train = max(int(forecaster_factory().min_length if strict else min_train), 1)
    usable = series_windows(lengths, horizon, n_windows, step, min_train)
    if strict and not usable[0].all():
        too_short = usable.index[~usable[0]]
        need = min_train + horizon + (n_windows - 1) * step
        named = ", ".join(f"{sid!r} ({lengths[sid]})" for sid in too_short[:10])
        raise BacktestError(
            f"{len(too_short)} series too short for {n_windows} windows of horizon {horizon} and step {step}: "
            f"{named}{' ...' if len(too_short) > 10 else ''}; each needs at least {need} observations. "
            "Reduce n_windows/step or quarantine these series."
        )
    unscored = usable.index[~usable.any(axis=1)].tolist()
    if len(unscored) == len(usable):
        longest = int(lengths.max())
        affordable = (f"the longest affords a horizon of at most {longest - min_train}" if longest > min_train
                      else f"none is longer than the {min_train} training points a window needs")
        logger.warning(
            "backtest: no series affords one window of horizon %d with %d training points (longest series: %d "
            "points; %s): nothing is scored, every series is forecast unvalidated; shorten panel.horizon or "
            "backtest.min_train to validate, or wait for more history", horizon, min_train, longest, affordable)
    position = panel.groupby(SERIES_ID, sort=False).cumcount().to_numpy()
    actuals = panel[[SERIES_ID, TIMESTAMP, VALUE]].rename(columns={VALUE: "actual"})
    frames, fit_seconds, predict_seconds, refit_windows, refitted_series = [], [], [], [], {}
    forecaster, fitted_through = None, None
    with PeakMemorySampler() as memory:
        for window in range(n_windows):
            in_window = usable.index[usable[window]]
            if not len(in_window):
                continue
            series_train = panel[SERIES_ID].map(cutoffs[window].where(usable[window])).to_numpy()
            train = panel[position < np.nan_to_num(series_train, nan=-1)]
            cutoff_time = train.groupby(SERIES_ID, sort=False)[TIMESTAMP].max().rename("cutoff")
            started = time.perf_counter()
            if not _carried_forward(forecaster, window, refit_every, in_window, fitted_through, panel, position,
                                    series_train, train):
                forecaster = forecaster_factory()
                forecaster.fit(train)
                refit_windows.append(window)
            elif getattr(forecaster, "refitted_on_update_", None):
                refitted_series[window] = sorted(map(str, forecaster.refitted_on_update_))
            fitted_through = series_train
            if forecaster.supports_covariates and forecaster.known_covariates:
                # covariates known in advance: the window's planned values are the panel's recorded ones
                forecaster.set_future_covariates(panel.loc[position >= np.nan_to_num(series_train, nan=np.inf),
                                                           [SERIES_ID, TIMESTAMP, *forecaster.known_covariates]])
            fitted = time.perf_counter()
            forecast = forecaster.predict(horizon, levels)
            predicted = time.perf_counter()
            fit_seconds.append(fitted - started)
            predict_seconds.append(predicted - fitted)
            forecast = forecast.merge(cutoff_time, left_on=SERIES_ID, right_index=True, how="left")
            forecast["window"] = window
            served_by = getattr(forecaster, "served_by_", {})
            forecast["served_by"] = forecast[SERIES_ID].map(served_by).fillna(forecaster.name)
            forecast["fallback"] = forecast["served_by"] != forecaster.name
            frames.append(forecast)
            logger.info(
                "backtest window %d/%d: %d series, fit %.2fs, predict %.2fs",
                window + 1, n_windows, len(in_window), fit_seconds[-1], predict_seconds[-1],
            )
    if unscored and len(unscored) < len(usable):  # (all of them: said above)
        logger.warning("backtest: %d series too short for one window of horizon %d with %d training points "
                       "(not scored; forecast by the fallback and flagged): %s", len(unscored), horizon, min_train,
                       ", ".join(map(repr, unscored[:5])) + (" ..." if len(unscored) > 5 else ""))
    columns = [SERIES_ID, TIMESTAMP, "cutoff", "window", "mean", *interval_columns(levels), "actual", "served_by",
               "fallback"]
    if not frames:  # no series affords a window: an empty backtest of the same columns (selection serves unvalidated)
        frames = [pd.DataFrame({SERIES_ID: pd.Series(dtype=panel[SERIES_ID].dtype),
                                TIMESTAMP: pd.Series(dtype=panel[TIMESTAMP].dtype),
                                "cutoff": pd.Series(dtype=panel[TIMESTAMP].dtype), "window": pd.Series(dtype=int),
                                **{c: pd.Series(dtype=float) for c in ["mean", *interval_columns(levels)]},
                                "served_by": pd.Series(dtype=object), "fallback": pd.Series(dtype=bool)})]
    forecasts = pd.concat(frames, ignore_index=True)
    result = forecasts.merge(actuals, on=[SERIES_ID, TIMESTAMP], how="left", validate="many_to_one")
    unmatched = result["actual"].isna()
    if unmatched.any():
        row = result[unmatched].iloc[0]
        raise BacktestError(
            f"{int(unmatched.sum())} forecast rows have no actual in the panel (first: series {row[SERIES_ID]!r} at "
            f"{row[TIMESTAMP]}, window {row['window']}); the forecaster's freq must match the panel's grid"
        )
    timings = {
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "fit_seconds_total": float(sum(fit_seconds)),
        "predict_seconds_total": float(sum(predict_seconds)),
        "peak_rss_mb": memory.peak_mb,
        "peak_rss_delta_mb": memory.delta_mb,
        "memory_method": f"psutil RSS of process + children, sampled every {MEMORY_SAMPLE_SECONDS}s",
        "min_train": int(min_train),
        "windows_per_series": {int(k): int(v) for k, v in usable.sum(axis=1).value_counts().sort_index().items()},
        "refit_windows": refit_windows,
        "updated_windows": [w for w in range(n_windows) if usable[w].any() and w not in refit_windows],
        # per updated window, the series its family refused to update and refitted alone
        "series_refitted_in_updates": refitted_series,
        "unscored_series": unscored,
    }
    return result[columns].sort_values([SERIES_ID, "window", TIMESTAMP]).reset_index(drop=True), timings


def _carried_forward(forecaster: Forecaster | None, window: int, refit_every: int, in_window: pd.Index,
                     fitted_through: np.ndarray | None, panel: pd.DataFrame, position: np.ndarray,
                     series_train: np.ndarray, train: pd.DataFrame) -> bool:
    """Update the previous window's model to this window's cutoffs; False where the window must be fitted
    afresh (a refit window, no previous model, a family without ``update``, a series new to the backtest, or
    ``update`` refused the points and the refused series cannot be refitted alone). Series whose points a family
    with per-series state refuses are refitted on the training part, the others updated, as Day N does
    (``Forecaster.update_refitting_refused``)."""
    from ts_kedro.forecasters.base import ForecasterError

    if forecaster is None or window % refit_every == 0 or not forecaster.supports_update:
        return False
    if not set(in_window) <= set(forecaster.series_ids_):
        return False
    previous = np.nan_to_num(fitted_through, nan=-1)
    new = panel[(position >= previous) & (position < np.nan_to_num(series_train, nan=-1))]
    try:
        forecaster.update_refitting_refused(new.reset_index(drop=True), history=train.reset_index(drop=True))
    except ForecasterError as exc:
        logger.info("backtest window %d: %s refused the update (%s); fitted afresh", window, forecaster.name, exc)
        return False
    return True


def _lagged_abs_diff_sums(panel: pd.DataFrame, lag: int) -> pd.DataFrame:
    """Running sum and count of |y[t] - y[t-lag]| within each series, at every timestamp."""
    values = panel[VALUE].to_numpy(float)
    series = panel[SERIES_ID].to_numpy()
    same = np.r_[np.zeros(min(lag, len(values)), bool), series[lag:] == series[:-lag]] if lag < len(values) \
        else np.zeros(len(values), bool)
    diffs = np.zeros(len(values))
    if lag < len(values):
        diffs[lag:] = np.abs(values[lag:] - values[:-lag])
    diffs = np.where(same, diffs, 0.0)
    frame = pd.DataFrame({SERIES_ID: series, TIMESTAMP: panel[TIMESTAMP].to_numpy(), "diff": diffs, "valid": same})
    grouped = frame.groupby(SERIES_ID, sort=False)
    frame["diff_sum"] = grouped["diff"].cumsum()
    frame["diff_count"] = grouped["valid"].cumsum()
    return frame


def _training_scales(panel: pd.DataFrame, cutoffs: pd.DataFrame, season_length: int) -> pd.Series:
    """Seasonal-naive in-sample MAE of each (series, cutoff) from the panel values up to that cutoff.

    A training part shorter than one season plus one point has no lag-m difference: its scale falls back to
    the naive (lag 1) MAE, so short series still get a MASE (statsforecast's and GluonTS's convention).
    """
    panel = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    seasonal = _lagged_abs_diff_sums(panel, int(season_length))
    at_cutoff = cutoffs.merge(
        seasonal, left_on=[SERIES_ID, "cutoff"], right_on=[SERIES_ID, TIMESTAMP], how="left", validate="one_to_one"
    )
    if at_cutoff["diff_sum"].isna().any():
        row = at_cutoff[at_cutoff["diff_sum"].isna()].iloc[0]
        raise BacktestError(f"cutoff {row['cutoff']} of series {row[SERIES_ID]!r} is not a timestamp of the panel")
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = at_cutoff["diff_sum"] / at_cutoff["diff_count"].where(at_cutoff["diff_count"] > 0)
    if int(season_length) > 1 and (at_cutoff["diff_count"] == 0).any():
        naive = _lagged_abs_diff_sums(panel, 1)
        naive_at = cutoffs.merge(naive, left_on=[SERIES_ID, "cutoff"], right_on=[SERIES_ID, TIMESTAMP], how="left")
        with np.errstate(invalid="ignore", divide="ignore"):
            naive_scale = naive_at["diff_sum"] / naive_at["diff_count"].where(naive_at["diff_count"] > 0)
        scale = scale.where(at_cutoff["diff_count"] > 0, naive_scale)
    return pd.Series(scale.where(scale > 0).to_numpy(), index=pd.MultiIndex.from_frame(cutoffs[[SERIES_ID, "window"]]))


def step_smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """sMAPE of each step, ``200 |y - f| / (|y| + |f|)`` (0 where both are 0): what ``evaluate_backtest`` averages."""
    error, denominator = np.abs(actual - forecast), np.abs(actual) + np.abs(forecast)
    return np.where(denominator == 0, 0.0, 200.0 * error / np.where(denominator == 0, 1, denominator))


def evaluate_backtest(
    backtest: pd.DataFrame, panel: pd.DataFrame, season_length: int, levels: Sequence[int] = ()
) -> tuple[pd.DataFrame, dict]:
    """Score a backtest per series and window, and aggregate M4-style (mean over series x windows).

    Args:
        backtest: output of ``rolling_origin_backtest``.
        panel: the panel the backtest ran on (MASE/MSIS scales use its values up to each cutoff).
        season_length: seasonal period m of the MASE/MSIS scale.
        levels: interval levels to score (``coverage-L`` in 0..1 and ``msis-L`` with alpha = 1 − L/100).

    Returns:
        Per (series, window) metrics ``rmse, mae, mape, smape, mase, coverage-L, msis-L`` and a dict of their
        means (NaN entries, e.g. MASE of a constant training part, are left out of the mean and counted in
        ``n_undefined``).
    """
    levels = sorted(int(level) for level in levels)
    needed = [SERIES_ID, TIMESTAMP, "cutoff", "window", "mean", "actual", *interval_columns(levels)]
    missing = [c for c in needed if c not in backtest.columns]
    if missing:
        raise BacktestError(f"backtest frame lacks columns {missing}; pass the output of rolling_origin_backtest")
    if backtest[["mean", "actual"]].isna().any().any():
        raise BacktestError("backtest has NaN forecasts or actuals; check the forecaster output")
    y, yhat = backtest["actual"].to_numpy(float), backtest["mean"].to_numpy(float)
    error = y - yhat
    steps = pd.DataFrame(
        {
            SERIES_ID: backtest[SERIES_ID].to_numpy(),
            "window": backtest["window"].to_numpy(),
            "abs_error": np.abs(error),
            "sq_error": error**2,
            "smape": step_smape(y, yhat),
            "ape": np.where(y != 0, 100.0 * np.abs(error) / np.where(y == 0, 1, np.abs(y)), np.nan),
        }
    )
    for level in levels:
        lo, hi = backtest[f"lo-{level}"].to_numpy(float), backtest[f"hi-{level}"].to_numpy(float)
        alpha = 1.0 - level / 100.0
        steps[f"coverage-{level}"] = ((y >= lo) & (y <= hi)).astype(float)
        steps[f"is-{level}"] = (hi - lo) + (2.0 / alpha) * (np.maximum(lo - y, 0) + np.maximum(y - hi, 0))
    grouped = steps.groupby([SERIES_ID, "window"], sort=True)
    per_series = pd.DataFrame(
        {
            "rmse": np.sqrt(grouped["sq_error"].mean()),
            "mae": grouped["abs_error"].mean(),
            "mape": grouped["ape"].mean(),  # pandas skips NaN: zero actuals are left out
            "smape": grouped["smape"].mean(),
        }
    )
    cutoffs = backtest.groupby([SERIES_ID, "window"], sort=True)["cutoff"].first().reset_index()
    scale = _training_scales(panel, cutoffs, int(season_length)).reindex(per_series.index)
    per_series["mase"] = per_series["mae"] / scale
    for level in levels:
        per_series[f"coverage-{level}"] = grouped[f"coverage-{level}"].mean()
        per_series[f"msis-{level}"] = grouped[f"is-{level}"].mean() / scale
    per_series = per_series.reset_index()
    per_series.insert(2, "cutoff", cutoffs["cutoff"].to_numpy())
    metric_columns = [c for c in per_series.columns if c not in (SERIES_ID, "window", "cutoff")]
    aggregate = {column: float(per_series[column].mean()) for column in metric_columns}
    aggregate["n_series"] = int(per_series[SERIES_ID].nunique())
    aggregate["n_windows"] = int(per_series["window"].nunique())
    aggregate["n_undefined"] = {c: int(per_series[c].isna().sum()) for c in metric_columns if per_series[c].isna().any()}
    return per_series, aggregate
