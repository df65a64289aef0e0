"""The whole Day-N loop replayed on a real panel: Day 0, then K cycles of real batches with injected changes.

One engine: every cycle is the product's own ``python -m ts_kedro.orchestration cycle`` (the Prefect flow
``ts_kedro_cycle``) in a fresh working directory with a copy of ``conf/`` (like ``benchmarks/matrix.py``), against
a Prefect server this script starts on 127.0.0.1 and stops at the end, with its own MLflow store. The script only
prepares data, drops CSV files into the project's Day-N drop folder ``data/01_raw/incoming/`` and reads what the
cycle wrote (its JSON summary, ``data/07_model_output``, ``data/08_reporting``, the MLflow registry).

The replay, for a panel of ``../shared/data`` (``benchmarks/matrix.py``'s loaders; M4 Hourly, NN5 daily, M3
monthly, ...): each series' last ``--cycles`` x ``--batch-horizons`` horizons are the replay stream, everything
before it is the Day-0 panel. Cycle c (1..K) drops the stream's c-th batch (the real next observations) and runs
one cycle. Injected changes (synthetic, labelled so in the batch file names) start at known cycles and persist
afterwards, on every series: ``level_shift`` (+1 Day-0 standard deviation), ``trend_change`` (a slope adding 0.5
Day-0 standard deviations per horizon), ``variance_change`` (noise doubled: Gaussian noise added on top of the
series' own) and ``seasonal_shape_change`` (the Day-0 seasonal profile moved by half a season). Some cycles also
get a broken file beside the real batch (wrong columns, malformed rows, an unknown series, a re-sent earlier batch
with changed values), which the ingestion must quarantine.

Three arms run the same batches: ``product`` (the shipped configuration: drift decides), ``retrain_every`` (the
cycle's ``--retrain``: a full refit every cycle) and ``never_retrain`` (``monitoring.thresholds`` set out of
reach in the arm's ``conf/local``: the verdict never says drift, ``retrain.every`` and ``retrain.after_growth`` are
null and nothing is forced, so no cycle refits; the champion is only updated with the new data). Per cycle and in total: drift flags,
retrains, promotions and rollbacks (``promotion_history.jsonl``), the realized error (sMAPE, MASE from
``ts_kedro.evaluation.metrics``) of the forecasts each cycle saved against the batch that arrived next, false
retrains (retrains in cycles with no injected change), detection delay, promotions that raised the realized
error (the new champion's forecasts against those of the champion it replaced, forecast by the inference node
``forecast_with_champion`` with that earlier version on the same history), cycle latency and the history store's
size against the raw data. Results: ``benchmarks/results/day_n_replay_<dataset>.json``, a plot under
``docs/images/`` and a markdown block for ``docs/benchmarks.md`` (``--write-docs``).

    nice -n 10 .venv/bin/python benchmarks/day_n_replay.py --dataset m4_hourly --quick      # smoke run, minutes
    nice -n 10 .venv/bin/python benchmarks/day_n_replay.py --dataset m4_hourly --series 12 --cycles 12
    nice -n 10 .venv/bin/python benchmarks/day_n_replay.py --dataset nn5_daily --series 12 --cycles 10 --min-day0-horizons 4
    nice -n 10 .venv/bin/python benchmarks/day_n_replay.py --dataset nn5_daily --cycles 3 --max-length 730 \
        --min-day0-horizons 4 --changes seasonal_shape_change@2 --broken none --arms product --tag only_seasonal
    .venv/bin/python benchmarks/day_n_replay.py --report m4_hourly,nn5_daily --write-docs   # tables and plots again
    .venv/bin/python benchmarks/day_n_replay.py --summary m4_hourly,nn5_daily_only_seasonal   # one line per replay

The storage target is measured by ``benchmarks/history_store_growth.py`` on the whole panel (200 cycles of one
step per series, ``--store-cycles``); the replay itself reports its own store, raw data and ``data/`` + MLflow
sizes per cycle. To run a committed state while others edit the tree, put a snapshot first on PYTHONPATH:
``SNAPSHOT=$(mktemp -d) && git archive --prefix=snap/ HEAD src conf pyproject.toml | tar -x -C "$SNAPSHOT" &&
git rev-parse HEAD > "$SNAPSHOT/snap/COMMIT"`` then ``PYTHONPATH=$SNAPSHOT/snap/src`` (its conf/ is what the arms
copy). The results record such a path as ``$SNAPSHOT/snap`` and a ``--workdir`` outside the project as
``$WORKDIR``: machine paths stay out of the committed records.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matrix import DATASETS as PANELS  # noqa: E402  (loaders, panel.freq and panel.horizon of each dataset)

# orchestration's planned refits (retrain.every, after_growth), by the names the flow tags them with
from ts_kedro.orchestration.config import SCHEDULED_TRIGGERS  # noqa: E402

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CHANGE_KINDS = ("level_shift", "trend_change", "variance_change", "seasonal_shape_change")
BROKEN_KINDS = ("wrong_columns", "malformed_rows", "unknown_series", "overlap_conflict")
# Injection sizes, in units of the series' own Day-0 statistics (not tuned to a dataset or to the targets).
LEVEL_SHIFT_SD = 1.0          # level shift: + this many Day-0 standard deviations
TREND_SD_PER_HORIZON = 0.5    # trend change: the added slope reaches this many standard deviations per horizon
NOISE_FACTOR = 2.0            # variance change: the noise standard deviation is multiplied by this
ARMS = ("product", "retrain_every", "never_retrain")
MODEL_NAME_KEY = "registered_model_name"
DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_SECTION = "## Day-N replay"
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"
STORE_GROWTH_SCRIPT = ROOT / "benchmarks" / "history_store_growth.py"


# -- the panel and the replay plan (pure) --------------------------------------------------------------------

def load_panel(dataset: str) -> tuple[pd.DataFrame, str, int]:
    """The whole real panel of ``dataset`` (training and test parts joined, each series trimmed to its first and
    last observation), its ``panel.freq`` and ``panel.horizon`` (``benchmarks/matrix.py``)."""
    loader, freq, horizon, _ = PANELS[dataset]
    train, test = loader()
    panel = pd.concat([train, test], ignore_index=True)[[SERIES_ID, TIMESTAMP, VALUE]]
    panel = panel.astype({SERIES_ID: str, VALUE: float}).sort_values([SERIES_ID, TIMESTAMP])
    observed = panel[VALUE].notna()
    started = observed.groupby(panel[SERIES_ID]).cummax()
    not_ended = observed[::-1].groupby(panel[SERIES_ID][::-1]).cummax()[::-1]
    return panel[started & not_ended].reset_index(drop=True), freq, int(horizon)


def choose_series(panel: pd.DataFrame, n_series: int, min_length: int, max_length: int | None = None,
                  same_end: bool = False) -> list[str]:
    """``n_series`` ids, every k-th in file order among the series with at least ``min_length`` rows (after
    cutting each to ``max_length``); deterministic. ``same_end``: only the series that end at the most common end
    timestamp among those (one calendar for the whole panel)."""
    lengths = panel.groupby(SERIES_ID, sort=False).size()
    if max_length is not None:
        lengths = lengths.clip(upper=max_length)
    eligible = list(lengths.index[lengths >= min_length])
    if same_end and eligible:
        cut = panel if max_length is None else panel[panel.groupby(SERIES_ID).cumcount() < max_length]
        ends = cut[cut[SERIES_ID].isin(eligible)].groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        eligible = [s for s in eligible if ends[s] == ends.mode().iloc[0]]
    if not eligible:
        raise ValueError(f"no series has {min_length} rows (longest: {int(lengths.max())}): fewer cycles or a "
                         "smaller batch")
    every = max(1, len(eligible) // max(1, n_series))
    return eligible[::every][:n_series]


def split_replay(panel: pd.DataFrame, series: list[str], cycles: int, batch_steps: int,
                 max_length: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Day-0 panel and replay stream: each series' last ``cycles * batch_steps`` rows (of its first
    ``max_length``) are the stream, with column ``cycle`` (1..cycles) saying which batch brings them."""
    part = panel[panel[SERIES_ID].isin(series)].sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True)
    if max_length is not None:
        part = part[part.groupby(SERIES_ID).cumcount() < max_length].reset_index(drop=True)
    from_end = part.groupby(SERIES_ID).cumcount(ascending=False).to_numpy()
    held = cycles * batch_steps
    stream = part[from_end < held].copy()
    stream["cycle"] = (held - 1 - from_end[from_end < held]) // batch_steps + 1
    return part[from_end >= held].reset_index(drop=True), stream.reset_index(drop=True)


def default_schedule(cycles: int, kinds: tuple[str, ...], first: float = 0.25, last: float = 0.75,
                     shift: int = 0) -> dict[int, str]:
    """``kinds`` at evenly spaced cycles between ``first`` and ``last`` of the replay (leaving clean cycles
    before the first and after the last), moved by ``shift`` cycles; {cycle: kind}."""
    if not kinds:
        return {}
    spots = np.linspace(first * cycles, last * cycles, len(kinds)) if len(kinds) > 1 else [first * cycles]
    schedule = {}
    for spot, kind in zip(spots, kinds):
        cycle = int(min(max(round(spot) + shift, 1), cycles))
        while cycle in schedule and cycle < cycles:
            cycle += 1
        schedule[cycle] = kind
    return schedule


def parse_schedule(text: str | None, kinds: tuple[str, ...]) -> dict[int, str] | None:
    """``level_shift@3,trend_change@6`` -> {3: "level_shift", 6: "trend_change"}; ``none`` -> {}."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return {}
    schedule = {}
    for item in text.split(","):
        kind, _, cycle = item.strip().partition("@")
        if kind not in kinds or not cycle.isdigit():
            raise ValueError(f"{item!r}: expected <kind>@<cycle> with kind one of {kinds}")
        schedule[int(cycle)] = kind
    return schedule


def series_statistics(day0: pd.DataFrame, season: int) -> dict[str, dict[str, Any]]:
    """Per series, from its Day-0 part: standard deviation, noise standard deviation (of the seasonal
    difference, / sqrt 2), the seasonal profile by phase (phase = position from the series' start mod season)
    and the Day-0 length (the stream's first phase)."""
    stats = {}
    for series_id, group in day0.groupby(SERIES_ID, sort=False):
        values = group[VALUE].to_numpy(float)
        lag = season if season > 1 and len(values) > season else 1
        diff = values[lag:] - values[:-lag]
        profile = np.zeros(max(season, 1))
        if season > 1:
            phases = np.arange(len(values)) % season
            centred = values - np.nanmean(values)
            profile = np.array([np.nanmean(centred[phases == p]) for p in range(season)])
            profile = np.nan_to_num(profile - np.nanmean(profile))
        stats[str(series_id)] = {"sd": float(np.nanstd(values)), "noise_sd": float(np.nanstd(diff) / math.sqrt(2)),
                                 "profile": profile, "length": len(values)}
    return stats


def inject(kind: str, values: np.ndarray, start: int, stats: dict[str, Any], season: int, horizon: int,
           rng: np.random.Generator) -> np.ndarray:
    """``values`` (one series' replay stream) with change ``kind`` from position ``start`` on (persistent).

    ``stats``: the series' ``series_statistics`` entry. Missing values stay missing. A seasonal-shape change
    needs a season (``season`` > 1); without one the values come back unchanged.
    """
    out = np.asarray(values, float).copy()
    after = np.arange(len(out)) >= start
    if kind == "level_shift":
        out[after] += LEVEL_SHIFT_SD * stats["sd"]
    elif kind == "trend_change":
        steps = np.arange(len(out)) - start + 1
        out[after] += TREND_SD_PER_HORIZON * stats["sd"] * steps[after] / horizon
    elif kind == "variance_change":
        extra = stats["noise_sd"] * math.sqrt(NOISE_FACTOR ** 2 - 1)
        out[after] += rng.normal(0.0, extra, int(after.sum()))
    elif kind == "seasonal_shape_change":
        if season > 1:
            phases = (stats["length"] + np.arange(len(out))) % season
            profile = stats["profile"]
            moved = profile[(phases + season // 2) % season] - profile[phases]
            out[after] += moved[after]
    else:
        raise ValueError(f"unknown change {kind!r}; known: {CHANGE_KINDS}")
    return out


def inject_changes(stream: pd.DataFrame, schedule: dict[int, str], stats: dict[str, dict[str, Any]], season: int,
                   horizon: int, seed: int = 0) -> pd.DataFrame:
    """The stream with every scheduled change applied in cycle order (each persists); column ``synthetic``
    marks the rows a change altered."""
    out = stream.sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True).copy()
    out["synthetic"] = False
    rng = np.random.default_rng(seed)
    for cycle, kind in sorted(schedule.items()):
        for series_id, index in out.groupby(SERIES_ID, sort=False).groups.items():
            rows = out.loc[index]
            start = int(np.argmax(rows["cycle"].to_numpy() >= cycle)) if (rows["cycle"] >= cycle).any() else len(rows)
            changed = inject(kind, rows[VALUE].to_numpy(float), start, stats[str(series_id)], season, horizon, rng)
            out.loc[index, VALUE] = changed
            out.loc[index[start:], "synthetic"] = True
    return out


def broken_batch(kind: str, batch: pd.DataFrame, previous: pd.DataFrame | None, stats: dict[str, dict[str, Any]]) -> str:
    """The text of a broken batch file (the ingestion must quarantine it whole), made from a real batch.

    ``wrong_columns``: the real rows under other column names; ``malformed_rows``: unparseable timestamps and
    values; ``unknown_series``: the real rows under an id the history does not know; ``overlap_conflict``:
    ``previous`` (a batch already accepted) re-sent with every value moved by a standard deviation.
    """
    rows = batch[[SERIES_ID, TIMESTAMP, VALUE]].copy()
    if kind == "wrong_columns":
        return _csv(rows.rename(columns={SERIES_ID: "id", TIMESTAMP: "time", VALUE: "reading"}))
    if kind == "malformed_rows":
        text = _csv(rows.head(3))
        first = str(rows[SERIES_ID].iloc[0])
        return text + f"{first},not-a-timestamp,12\n{first},{rows[TIMESTAMP].iloc[0]:{TIME_FORMAT}},n/a\n"
    if kind == "unknown_series":
        rows[SERIES_ID] = rows[SERIES_ID] + "_unknown"
        return _csv(rows)
    if kind == "overlap_conflict":
        if previous is None or previous.empty:
            raise ValueError("overlap_conflict needs an earlier accepted batch")
        moved = previous[[SERIES_ID, TIMESTAMP, VALUE]].copy()
        moved[VALUE] = moved[VALUE] + moved[SERIES_ID].map(lambda s: max(stats[str(s)]["sd"], 1.0))
        return _csv(moved)
    raise ValueError(f"unknown broken batch {kind!r}; known: {BROKEN_KINDS}")


def _csv(frame: pd.DataFrame) -> str:
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime(TIME_FORMAT)
    return frame.to_csv(index=False, float_format="%.10g")


def monitoring_feasibility(day0: pd.DataFrame, stream: pd.DataFrame, freq: str, horizon: int,
                           monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cycle, the monitoring windows the frequency profile gives the grown history and how many series are
    long enough for them (``build_drift_windows`` skips shorter series and fails when none is left). Monitoring
    reads the regular, imputed history, so a series' length is its row count (missing values filled)."""
    from ts_kedro.frequency import derive_profile

    day0_rows = day0.groupby(SERIES_ID).size()
    per_cycle = stream.groupby([SERIES_ID, "cycle"]).size().unstack(fill_value=0).cumsum(axis=1)
    rows = []
    for cycle in per_cycle.columns:
        history_rows = day0_rows + per_cycle[cycle]
        profile = derive_profile({"freq": freq, "horizon": horizon}, history_rows.to_numpy(),
                                 monitoring_params=monitoring)
        need = profile.monitoring["reference_window_steps"] + profile.monitoring["recent_window_steps"]
        rows.append({"cycle": int(cycle), "window_steps": int(need), "periods": profile.seasonal_periods,
                     "series_checked": int((history_rows >= need).sum()), "n_series": len(history_rows)})
    return rows


# -- scoring (pure) ------------------------------------------------------------------------------------------

def realized_error(forecast: pd.DataFrame, actuals: pd.DataFrame, insample: dict[str, np.ndarray],
                   season: int) -> dict[str, Any]:
    """sMAPE and MASE (``ts_kedro.evaluation.metrics``) of ``forecast`` (``series_id, timestamp, mean``) on the
    observed ``actuals`` at the same timestamps; means over series (M4's aggregation). MASE's scale is each
    series' ``insample`` (the history up to the forecast origin) at lag ``season`` (1 where a series is not
    longer than a season); a series without seasonal variation has no MASE and is left out of that mean."""
    from ts_kedro.evaluation import metrics

    if forecast is None or forecast.empty:
        return {"smape": None, "mase": None, "n_series": 0, "n_points": 0}
    joined = actuals.dropna(subset=[VALUE]).merge(forecast[[SERIES_ID, TIMESTAMP, "mean"]], on=[SERIES_ID, TIMESTAMP])
    smapes, mases, points = [], [], 0
    for series_id, rows in joined.groupby(SERIES_ID, sort=True):
        y, yhat = rows[VALUE].to_numpy(float), rows["mean"].to_numpy(float)
        history = insample[str(series_id)]
        m = season if len(history) > season else 1
        smapes.append(float(metrics.smape(y, yhat)))
        value = metrics.mase(y, yhat, history, m)
        if np.isfinite(value):
            mases.append(value)
        points += len(rows)
    return {"smape": float(np.mean(smapes)) if smapes else None, "mase": float(np.mean(mases)) if mases else None,
            "n_series": len(smapes), "n_points": points}


def _mean(values) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def score_arm(rows: list[dict[str, Any]], changes: dict[int, str], batch_steps: int) -> dict[str, Any]:
    """Totals of one arm's per-cycle table.

    ``rows``: one dict per cycle (0 = Day 0) with ``cycle``, ``drift``, ``retrain``, ``promoted``, ``rollbacks``,
    ``mase_next``/``smape_next`` (the realized error of the forecasts this cycle saved, on the next batch),
    ``counterfactual_mase_next`` (those of the champion it replaced, on a promotion), ``latency_s``,
    ``monitoring_window_steps`` (reference + recent window of this cycle's drift check), ``store_bytes`` and
    ``raw_bytes``; a cycle whose flow run failed has ``failed`` (the error) and decides nothing: it is left out
    of the counts and the latency. ``changes``: {cycle: kind} of the injected changes.

    Returns:
        Counts (drift flags, retrains, promotions, rollbacks), false retrains (retrains in cycles that neither bring
        an injected change nor first flag one, split into those while an earlier change is still inside the
        monitoring windows and the others), detection delay per change (cycles from the change to the first drift
        flag before the next change; None: never flagged), promotions that raised the realized error, mean
        realized errors, latency and the storage ratio at the end.
    """
    failed = [r["cycle"] for r in rows if r.get("failed")]
    day_n = [r for r in rows if r["cycle"] >= 1 and not r.get("failed")]
    change_cycles = sorted(changes)
    by_cycle = {r["cycle"]: r for r in day_n}
    delays = {}
    for i, cycle in enumerate(change_cycles):
        end = change_cycles[i + 1] if i + 1 < len(change_cycles) else max(by_cycle, default=cycle) + 1
        flagged = [c for c in range(cycle, end) if by_cycle.get(c, {}).get("drift")]
        # flagged in the cycle before too: the verdict was already "drift" (an earlier change), not caused by this one
        delays[cycle] = {"kind": changes[cycle], "delay": (flagged[0] - cycle) if flagged else None,
                         "flagged_the_cycle_before": bool(by_cycle.get(cycle - 1, {}).get("drift"))}
    # a change's own cycle and the cycle that first flags it are where a retrain is called for
    called_for = set(changes) | {c + d["delay"] for c, d in delays.items() if d["delay"] is not None}
    false_retrains, echo_retrains, scheduled = [], [], []
    for r in day_n:
        if not r.get("retrain") or r["cycle"] in called_for:
            continue
        triggers = set(r.get("retrain_triggers") or [])
        if triggers and triggers <= SCHEDULED_TRIGGERS:  # planned refits (retrain.every, after_growth): no alarm
            scheduled.append(r["cycle"])
            continue
        earlier = [c for c in change_cycles if c < r["cycle"]]
        window = r.get("monitoring_window_steps")
        # the drift windows (the last `window` steps) still hold data from before the latest change
        in_window = bool(earlier) and window is not None and (r["cycle"] - earlier[-1] + 1) * batch_steps < window
        (echo_retrains if in_window else false_retrains).append(r["cycle"])
    raised = []
    for r in rows:
        if r.get("promoted") and r.get("cycle", 0) >= 1:
            new, old = r.get("mase_next"), r.get("counterfactual_mase_next")
            if new is not None and old is not None:
                raised.append({"cycle": r["cycle"], "mase_new": new, "mase_old": old, "raised": bool(new > old),
                               "smape_new": r.get("smape_next"), "smape_old": r.get("counterfactual_smape_next")})
    no_change = [r for r in day_n if r["cycle"] not in called_for]
    retrain_latency = [r["latency_s"] for r in day_n if r.get("retrain")]
    plain_latency = [r["latency_s"] for r in day_n if not r.get("retrain")]
    last = rows[-1] if rows else {}
    stored = [r for r in day_n if r.get("store_bytes")]
    span = (stored[-1]["cycle"] - stored[0]["cycle"]) if len(stored) > 1 else 0
    return {
        "cycles": len(day_n) + len(failed),
        "failed_cycles": failed,
        "drift_flags": sum(bool(r.get("drift")) for r in day_n),
        "retrains": sum(bool(r.get("retrain")) for r in day_n),
        "promotions": sum(bool(r.get("promoted")) for r in day_n),
        "rollbacks": sum(int(r.get("rollbacks") or 0) for r in day_n),
        "cycles_without_change": len(no_change),  # cycles that neither bring a change nor first flag one
        "false_retrains": false_retrains + echo_retrains,
        "false_retrains_in_change_window": echo_retrains,
        "false_retrains_elsewhere": false_retrains,
        "false_retrain_share": (len(false_retrains) + len(echo_retrains)) / len(no_change) if no_change else None,
        "scheduled_retrains": scheduled,  # in cycles without a change, triggered only by the schedule or growth
        "detection": delays,
        "promotion_checks": raised,
        "promotions_raising_error": [p["cycle"] for p in raised if p["raised"]],
        "mase": _mean(r.get("mase_next") for r in rows),
        "smape": _mean(r.get("smape_next") for r in rows),
        "latency_s_mean": _mean(r.get("latency_s") for r in day_n),
        "latency_s_day0": next((r["latency_s"] for r in rows if r["cycle"] == 0), None),
        "latency_s_retrain_mean": _mean(retrain_latency),
        "latency_s_no_retrain_mean": _mean(plain_latency),
        "store_bytes": last.get("store_bytes"),
        "raw_bytes": last.get("raw_bytes"),
        "store_over_raw": (last["store_bytes"] / last["raw_bytes"]
                           if last.get("store_bytes") and last.get("raw_bytes") else None),
        # per cycle after the first Day-N cycle (which creates the store with the Day-0 panel)
        "store_growth_per_cycle": (stored[-1]["store_bytes"] - stored[0]["store_bytes"]) / span if span else None,
        "raw_growth_per_cycle": (stored[-1]["raw_bytes"] - stored[0]["raw_bytes"]) / span if span else None,
        "project_bytes": last.get("project_bytes"),
        "project_growth_per_cycle": ((last["project_bytes"] - rows[0]["project_bytes"]) / len(day_n)
                                     if day_n and last.get("project_bytes") and rows[0].get("project_bytes") else None),
    }


def targets(totals: dict[str, dict[str, Any]], store: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's five targets, each met or not, from ``score_arm`` of the three arms and ``store`` (the
    ``measure_store_growth`` result: ``store_over_raw`` after ``cycles`` cycles on ``n_series`` series)."""
    store_200 = (store or {}).get("store_over_raw")
    product, every = totals["product"], totals["retrain_every"]
    delays = [d["delay"] for d in product["detection"].values()]
    flagged = all(d is not None and d <= 1 for d in delays)
    share = product["false_retrain_share"]
    ratios = {m: (product[m] / every[m] - 1) if product[m] is not None and every[m] else None for m in ("mase", "smape")}
    rows = [
        {"target": "every injected change flagged within 1 cycle",
         "measured": ", ".join(f"{d['kind']}@{c}: {'missed' if d['delay'] is None else d['delay']}"
                               + (" (drift already flagged the cycle before)" if d.get("flagged_the_cycle_before")
                                  else "")
                               for c, d in product["detection"].items()) or "no change injected",
         "met": bool(delays) and flagged},
        {"target": "at most 5% of cycles without an injected change trigger a retrain",
         "measured": (f"{len(product['false_retrains'])} of {product['cycles_without_change']} "
                      f"({share:.0%}; {len(product['false_retrains_in_change_window'])} while an earlier change was "
                      "still in the monitoring windows)"
                      + (f"; besides, {len(product.get('scheduled_retrains', []))} scheduled refit(s) (retrain.every "
                         "or after_growth, not counted)" if product.get("scheduled_retrains") else ""))
                     if share is not None else "no such cycle",
         "met": share is not None and share <= 0.05},
        {"target": "no promotion raises realized error over the following horizon",
         "measured": (f"{len(product['promotions_raising_error'])} of {len(product['promotion_checks'])} scored "
                      f"promotions raised MASE" + (f" (cycles {product['promotions_raising_error']})"
                                                    if product["promotions_raising_error"] else "")),
         "met": not product["promotions_raising_error"]},
        {"target": "realized error no worse than retrain-every-cycle by more than 2%",
         "measured": ", ".join(f"{m.upper() if m == 'mase' else 'sMAPE'} {r:+.1%}" for m, r in ratios.items()
                               if r is not None),
         "met": all(r is not None and r <= 0.02 for r in ratios.values())},
        {"target": "storage after 200 cycles under 3x the raw data size",
         "measured": ((f"{store_200:.2f} after {store['cycles']} cycles of one step on all {store['n_series']} "
                       f"series (store {_mb(store['store_bytes'])}, raw CSV {_mb(store['raw_bytes'])}; "
                       "history_store_growth.py); " if store_200 is not None else "200 cycles not measured; ")
                      + f"here after {product['cycles']} cycles: store {_mb(product['store_bytes'])} / raw "
                      f"{_mb(product['raw_bytes'])} = {_fmt(product['store_over_raw'], 2)}, growth "
                      f"{_mb(product['store_growth_per_cycle'])} per cycle for {_mb(product['raw_growth_per_cycle'])} "
                      "of new raw data"),
         "met": store_200 is not None and store_200 < 3 and store.get("cycles", 0) >= 200},
    ]
    return rows


# -- the arms: working directories, the Prefect server, the cycles -----------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "TS_KEDRO_"))}
    env.update(DO_NOT_TRACK="1", KEDRO_DISABLE_TELEMETRY="true", MLFLOW_ENABLE_TELEMETRY="false",
               PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    return env


@contextmanager
def prefect_server(home: Path, timeout: float = 180) -> Iterator[str]:
    """``prefect server start`` on a free loopback port with its own SQLite database; stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _clean_env(home)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited ({server.returncode}): see {home / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s: see {home / 'server.log'}")
            time.sleep(0.5)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def project_source() -> Path:
    """The project whose ``ts_kedro`` this process imports: its conf/ and pyproject.toml go into every arm, so a
    snapshot put first on PYTHONPATH (``git archive HEAD src conf pyproject.toml``) is run whole."""
    import ts_kedro

    return Path(ts_kedro.__file__).resolve().parents[2]


def source_description() -> dict[str, Any]:
    """Where the code under test came from: the path, and the commit when it is this repository's tree."""
    source = project_source()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    if (source / "COMMIT").exists():  # written beside a snapshot: `git rev-parse HEAD > <snapshot>/COMMIT`
        return {"ts_kedro_from": _portable(source), "snapshot_of_commit": (source / "COMMIT").read_text().strip(),
                "snapshot": True}
    changed = subprocess.run(["git", "status", "--porcelain", "--", "src", "conf"], cwd=ROOT, capture_output=True,
                             text=True, check=False).stdout.strip()
    return {"ts_kedro_from": _portable(source), "repository_head": commit,
            "snapshot": source != ROOT, "uncommitted_changes_in_src_or_conf": bool(changed) and source == ROOT}


def _portable(path: Path) -> str:
    """``path`` as the committed records write it: relative inside the project, ``$SNAPSHOT/snap`` for a
    snapshot's root (see the module docstring), else ``$WORKDIR`` (a working folder outside the project)."""
    path = Path(path).resolve()
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT)) or "."
    return "$SNAPSHOT/snap" if (path / "COMMIT").exists() else "$WORKDIR"


def _portable_argv(argv: list[str]) -> list[str]:
    """The command line with the ``--workdir`` value made portable (``_portable``)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--workdir" and i + 1 < len(out):
            out[i + 1] = _portable(Path(out[i + 1]))
        elif arg.startswith("--workdir="):
            out[i] = "--workdir=" + _portable(Path(arg.split("=", 1)[1]))
    return out


def base_monitoring() -> dict[str, Any]:
    path = project_source() / "conf" / "base" / "parameters_monitoring.yml"
    return yaml.safe_load(path.read_text())["monitoring"]


def prepare_arm(root: Path, arm: str, day0: pd.DataFrame) -> Path:
    """A working directory for one arm: conf/ (without conf/local), pyproject.toml, the Day-0 CSV, an empty drop
    folder. ``never_retrain`` gets conf/local/parameters.yml with the base monitoring block whose
    thresholds no verdict can exceed (Kedro merges env files per top-level key, so the whole block is carried),
    and conf/local/orchestration.yml with ``retrain.every`` and ``retrain.after_growth`` null (before 2026-12-07
    the growth rule, shipped since, still refitted that arm once it was due)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copytree(project_source() / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(project_source() / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()  # the package is the installed ts_kedro; Kedro only checks that src/ exists
    (root / "data" / "01_raw" / "incoming").mkdir(parents=True)
    (root / "data" / "01_raw" / "day0.csv").write_text(_csv(day0[[SERIES_ID, TIMESTAMP, VALUE]]))
    if arm == "never_retrain":
        monitoring = base_monitoring()
        monitoring["thresholds"] = {**monitoring["thresholds"], "drift_share": 1.0, "performance_ratio": float("inf"),
                                    "interval_p_value": None}
        (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump({"monitoring": monitoring}))
        # nor the growth rule: the whole orchestration block (Kedro's loader replaces a top-level key per env)
        orchestration = yaml.safe_load((project_source() / "conf" / "base" / "orchestration.yml").read_text())
        orchestration["orchestration"]["cycle"]["retrain"].update(every=None, after_growth=None)
        (root / "conf" / "local" / "orchestration.yml").write_text(yaml.safe_dump(orchestration))
    return root


def run_cycle(root: Path, arm: str, api_url: str, prefect_home: Path, freq: str, horizon: int, families: str | None,
              log: Path, timeout: float) -> tuple[dict[str, Any], float]:
    """One ``python -m ts_kedro.orchestration cycle`` in ``root``; its JSON summary (``status`` ``failed`` with
    the ``error`` when the flow run failed) and wall seconds."""
    env = _clean_env(prefect_home)
    env.update(PREFECT_API_URL=api_url, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               TS_KEDRO_CONF_SOURCE=str(root / "conf"))
    if families:
        env["TS_KEDRO_FAMILIES"] = families
    # runtime params as nested mappings: this CLI passes `panel.freq=...` through as a literal dotted key
    command = [sys.executable, "-m", "ts_kedro.orchestration", "cycle", "--params",
               f"raw_panel_path={root / 'data' / '01_raw' / 'day0.csv'}",
               f"panel={{freq: {freq}, horizon: {horizon}}}"]
    if arm == "retrain_every":
        command.append("--retrain")
    started = time.perf_counter()
    with open(log, "a") as handle:
        result = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=handle, text=True,
                                timeout=timeout, check=False)  # a failed cycle is read from its summary
        handle.write(result.stdout)
    wall = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"status": "failed", "error": "no summary printed"}
    if result.returncode and summary.get("status") == "completed":
        summary = {"status": "failed", "error": f"exit status {result.returncode}"}
    return summary, wall


def _newest_version_file(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    return next(iter(sorted(versions[-1].iterdir())), None) if versions else None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def cycle_outputs(root: Path, day: str, decisions_before: int) -> dict[str, Any]:
    """What the cycle wrote: its forecasts (Day 0: ``forecasts``; Day N: the newest ``champion_forecasts``), the
    ingestion report, the drift check's window sizes, the new registry decisions and the store size."""
    data = root / "data"
    if day == "day_0":
        forecast_file = _newest_version_file(data / "07_model_output" / "forecasts.csv")
        forecast = pd.read_csv(forecast_file, parse_dates=[TIMESTAMP], dtype={SERIES_ID: str})
    else:
        forecast_file = _newest_version_file(data / "07_model_output" / "champion_forecasts.parquet")
        forecast = pd.read_parquet(forecast_file)
        forecast[SERIES_ID] = forecast[SERIES_ID].astype(str)
    history_path = data / "08_reporting" / "promotion_history.jsonl"
    decisions = [json.loads(line) for line in history_path.read_text().splitlines()] if history_path.exists() else []
    data_drift = _read_json(data / "08_reporting" / "data_drift.json") if day == "day_n" else None
    store = data / "02_intermediate" / "history.duckdb"
    store_bytes = sum(p.stat().st_size for p in store.parent.glob("history.duckdb*")) if store.exists() else None
    return {"forecast": forecast, "decisions": decisions[decisions_before:], "n_decisions": len(decisions),
            "ingestion": _read_json(data / "08_reporting" / "ingestion_report.json") if day == "day_n" else None,
            "inference": _read_json(data / "08_reporting" / "inference_summary.json") if day == "day_n" else None,
            "drift_summary": _read_json(data / "08_reporting" / "drift_summary_latest.json") if day == "day_n" else None,
            "monitoring_window_steps": (data_drift["reference_rows"] + data_drift["current_rows"]) if data_drift else None,
            "store_bytes": store_bytes}


def counterfactual_forecast(root: Path, version: int, freq: str, horizon: int) -> pd.DataFrame:
    """The forecasts the champion ``version`` (the one a promotion replaced) makes on this cycle's history: the
    inference node ``forecast_with_champion`` with the arm's parameters and that registry version."""
    from ts_kedro.config import project_parameters
    from ts_kedro.pipelines.inference import nodes as inference_nodes
    from ts_kedro.registry import registry

    params = project_parameters(conf_source=str(root / "conf"), env="local")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    inference = {**params["inference"], "tracking_uri": uri}
    panel = {**params["panel"], "freq": freq, "horizon": horizon}
    history = pd.read_parquet(root / "data" / "03_primary" / "history_primary_panel.parquet")
    standing_in = inference_nodes.load_champion_model
    inference_nodes.load_champion_model = lambda name, tracking_uri=None: registry.load_panel_model(name, version, uri)
    try:
        forecasts, _ = inference_nodes.forecast_with_champion(history, inference, panel)
    finally:
        inference_nodes.load_champion_model = standing_in
    forecasts[SERIES_ID] = forecasts[SERIES_ID].astype(str)
    return forecasts


def measure_store_growth(dataset: str, cycles: int, work: Path) -> dict[str, Any]:
    """``benchmarks/history_store_growth.py`` on the whole panel of ``dataset`` (every series; Day 0 = each series
    minus its last ``cycles`` points, then ``cycles`` appends of one point per series): its table row, parsed."""
    panel, _, _ = load_panel(dataset)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"{dataset}_long.csv"
    panel.to_csv(data, index=False)
    result = subprocess.run([sys.executable, str(STORE_GROWTH_SCRIPT), "--data", str(data), "--cycles", str(cycles),
                             "--parquet-every", str(cycles)], capture_output=True, text=True, check=True)
    row = [line for line in result.stdout.splitlines() if line.startswith("|") and "MB" in line][-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    mb = lambda cell: float(cell.split()[0]) * 2 ** 20  # noqa: E731
    return {"cycles": cycles, "n_series": int(panel[SERIES_ID].nunique()), "store_day0_bytes": mb(cells[0]),
            "store_bytes": mb(cells[1]), "raw_bytes": mb(cells[2]), "store_over_raw": float(cells[3]),
            "mean_append_s": float(cells[5]), "command": f"history_store_growth.py --data <{dataset} long CSV> "
            f"--cycles {cycles}"}


def _insample(day0: pd.DataFrame, stream: pd.DataFrame, through_cycle: int) -> dict[str, np.ndarray]:
    """Each series' values as fed up to and including batch ``through_cycle`` (gaps linearly interpolated, as the
    product's default imputation does): the MASE scale of a forecast made after that cycle."""
    fed = pd.concat([day0[[SERIES_ID, TIMESTAMP, VALUE]],
                     stream.loc[stream["cycle"] <= through_cycle, [SERIES_ID, TIMESTAMP, VALUE]]])
    fed = fed.sort_values([SERIES_ID, TIMESTAMP])
    return {str(s): g[VALUE].interpolate(limit_direction="both").to_numpy(float) for s, g in fed.groupby(SERIES_ID)}


def prepare_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The replay's data: series, Day-0 panel, the stream with its injected changes, the broken files' cycles."""
    from ts_kedro.frequency import derive_profile

    panel, freq, horizon = load_panel(args.dataset)
    batch_steps = max(1, round(args.batch_horizons * horizon))
    needed = args.min_day0_horizons * horizon + args.cycles * batch_steps
    series = choose_series(panel, args.series, needed, args.max_length, args.same_end)
    day0, stream = split_replay(panel, series, args.cycles, batch_steps, args.max_length)
    profile = derive_profile({"freq": freq, "horizon": horizon}, day0.groupby(SERIES_ID)[VALUE].count().to_numpy())
    season = profile.season_length
    changes = parse_schedule(args.changes, CHANGE_KINDS)
    changes = default_schedule(args.cycles, CHANGE_KINDS) if changes is None else changes
    if season <= 1:
        changes = {c: k for c, k in changes.items() if k != "seasonal_shape_change"}
    broken = parse_schedule(args.broken, BROKEN_KINDS)
    broken = default_schedule(args.cycles, BROKEN_KINDS, shift=-1) if broken is None else broken
    broken = {c: k for c, k in broken.items() if not (k == "overlap_conflict" and c < 2)}
    feasibility = monitoring_feasibility(day0, stream, freq, horizon, base_monitoring())
    for blocked in (f for f in feasibility if f["series_checked"] == 0):
        print(f"warning: cycle {blocked['cycle']} is expected to fail in monitoring: the frequency profile of the "
              f"grown history keeps the periods {blocked['periods']}, so the drift windows need "
              f"{blocked['window_steps']} steps and no series has them (MonitoringConfigError); --max-length stops the "
              "replay before the history covers the next period twice", flush=True)
    stats = series_statistics(day0, season)
    stream = inject_changes(stream, changes, stats, season, horizon, seed=args.seed)
    return {"freq": freq, "horizon": horizon, "season": season, "batch_steps": batch_steps, "series": series,
            "day0": day0, "stream": stream, "changes": changes, "broken": broken, "stats": stats,
            "feasibility": feasibility, "batches": {c: stream[stream["cycle"] == c] for c in range(1, args.cycles + 1)}}


def _folder_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


COUNTERFACTUAL_LOCK = threading.Lock()  # forecast_with_champion's model loader is swapped for one call at a time


def run_arm(arm: str, root: Path, plan: dict[str, Any], args: argparse.Namespace, api_url: str,
            prefect_home: Path) -> list[dict[str, Any]]:
    """Day 0 and the K cycles of one arm; one row per cycle."""
    freq, horizon, season, batches = plan["freq"], plan["horizon"], plan["season"], plan["batches"]
    changes, broken = plan["changes"], plan["broken"]
    raw_bytes = (root / "data" / "01_raw" / "day0.csv").stat().st_size
    decisions, rows = 0, []
    for cycle in range(args.cycles + 1):
        files = []
        if cycle:
            batch = batches[cycle]
            name = (f"batch_{cycle:03d}_synthetic_changes.csv" if batch["synthetic"].any()
                    else f"batch_{cycle:03d}_real.csv")
            files.append((name, _csv(batch[[SERIES_ID, TIMESTAMP, VALUE]]), False))
            if cycle in broken:
                text = broken_batch(broken[cycle], batch, batches.get(cycle - 1), plan["stats"])
                files.append((f"batch_{cycle:03d}_{broken[cycle]}_broken.csv", text, True))
            for file_name, text, _ in files:
                (root / "data" / "01_raw" / "incoming" / file_name).write_text(text)
        summary, wall = run_cycle(root, arm, api_url, prefect_home, freq, horizon, args.families,
                                  root.parent / f"{arm}.log", args.cycle_timeout)
        if summary.get("status") != "completed":
            # a failed cycle is a result: recorded, and the loop goes on with the next batch, as a schedule would
            if cycle == 0:
                raise RuntimeError(f"{arm}: Day 0 failed ({summary.get('error')}); see {root.parent / f'{arm}.log'}")
            archived = {p.name for p in (root / "data" / "01_raw" / "archive").rglob("*.csv")}
            raw_bytes += sum(len(text.encode()) for n, text, is_broken in files if not is_broken and n in archived)
            rows.append({"cycle": cycle, "day": "day_n", "failed": summary.get("error"), "latency_s": wall,
                         "injected": changes.get(cycle), "broken": broken.get(cycle), "drift": None, "retrain": None,
                         "promoted": None, "rollbacks": 0, "mase_next": None, "smape_next": None,
                         "real_batch_accepted": any(n in archived for n, _, is_broken in files if not is_broken),
                         "store_bytes": cycle_outputs(root, "day_n", decisions)["store_bytes"], "raw_bytes": raw_bytes,
                         "project_bytes": _folder_bytes(root / "data", root / "mlruns", root / "mlflow.db")})
            print(f"  cycle {cycle:>2} {arm:<13} {wall:6.1f} s  FAILED: {str(summary.get('error'))[:200]}", flush=True)
            continue
        out = cycle_outputs(root, summary["day"], decisions)
        decisions = out["n_decisions"]
        report = out["ingestion"] or {}
        statuses = {b["batch"]: b["status"] for b in report.get("batches", [])}
        accepted = [n for n, _, is_broken in files if not is_broken and statuses.get(Path(n).stem) == "accepted"]
        raw_bytes += sum(len(text.encode()) for n, text, _ in files if n in accepted)
        promoted = [d for d in out["decisions"] if d["event"] == "promotion" and d["promoted"]]
        inference = out["inference"] or {}
        row = {
            "cycle": cycle, "day": summary["day"], "latency_s": wall,
            "inference_latency_s": inference.get("latency_seconds"),
            "injected": changes.get(cycle), "broken": broken.get(cycle) if cycle else None,
            "quarantined": sorted(b for b, s in statuses.items() if s == "quarantined"),
            "broken_quarantined": (statuses.get(f"batch_{cycle:03d}_{broken[cycle]}_broken") == "quarantined"
                                   if cycle in broken else None),
            "real_batch_accepted": bool(accepted) if cycle else None,
            "drift": summary.get("drift") if cycle else None,
            "drift_reasons": summary.get("drift_reasons", []),
            "drift_share": (out["drift_summary"] or {}).get("drift_share"),
            "performance_ratio": (out["drift_summary"] or {}).get("performance_ratio"),
            "retrain": bool((summary.get("retrain") or {}).get("retrain")) if cycle else None,
            "retrain_triggers": (summary.get("retrain") or {}).get("triggers", []),
            "promoted": bool(promoted) if cycle else None,
            "decisions": [{k: d.get(k) for k in ("event", "promoted", "champion_version_before",
                                                "champion_version_after", "challenger_version", "reason")}
                          for d in out["decisions"]],
            "rollbacks": sum(d["event"] == "rollback" for d in out["decisions"]),
            "conditioning": inference.get("conditioning"),
            "refitted_families": inference.get("refitted_families"),
            "refitted_series": inference.get("refitted_series"),
            "monitoring_window_steps": out["monitoring_window_steps"],
            "store_bytes": out["store_bytes"], "raw_bytes": raw_bytes,
            "project_bytes": _folder_bytes(root / "data", root / "mlruns", root / "mlflow.db"),
        }
        if cycle < args.cycles:
            insample = _insample(plan["day0"], plan["stream"], cycle)
            error = realized_error(out["forecast"], batches[cycle + 1], insample, season)
            row.update(mase_next=error["mase"], smape_next=error["smape"], points_next=error["n_points"])
            if cycle and promoted and promoted[0]["champion_version_before"] is not None:
                with COUNTERFACTUAL_LOCK:
                    old = counterfactual_forecast(root, int(promoted[0]["champion_version_before"]), freq, horizon)
                counter = realized_error(old, batches[cycle + 1], insample, season)
                row.update(counterfactual_mase_next=counter["mase"], counterfactual_smape_next=counter["smape"])
        rows.append(row)
        mase_next = row.get("mase_next")
        print(f"  cycle {cycle:>2} {arm:<13} {wall:6.1f} s  drift={row['drift']} retrain={row['retrain']} "
              f"promoted={row['promoted']} quarantined={len(row['quarantined'])} "
              f"MASE next={'-' if mase_next is None else f'{mase_next:.3f}'}", flush=True)
    return rows


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare the data, run Day 0 and the K cycles of every arm (one thread per arm), score, save the JSON."""
    plan = prepare_plan(args)
    no_changes = not plan["changes"] and (args.changes or "").strip().lower() == "none"
    tag = (args.dataset + ("_same_end" if args.same_end else "") + ("_no_changes" if no_changes else "")
           + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else ""))
    work = (args.workdir / f"day_n_replay_{tag}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset}: {len(plan['series'])} series, Day 0 {len(plan['day0'])} rows, {args.cycles} cycles of "
          f"{plan['batch_steps']} steps (horizon {plan['horizon']}, m = {plan['season']}); changes {plan['changes']}; "
          f"broken files {plan['broken']}; work in {work}", flush=True)
    roots = {arm: prepare_arm(work / arm, arm, plan["day0"]) for arm in args.arms}
    started = time.perf_counter()
    with prefect_server(work / "prefect") as api_url:
        with ThreadPoolExecutor(max_workers=len(args.arms) if args.parallel_arms else 1) as pool:
            futures = {arm: pool.submit(run_arm, arm, roots[arm], plan, args, api_url, work / "prefect")
                       for arm in args.arms}
            rows = {arm: future.result() for arm, future in futures.items()}
    totals = {arm: score_arm(rows[arm], plan["changes"], plan["batch_steps"]) for arm in args.arms}
    result = {
        "dataset": args.dataset, "tag": tag, "freq": plan["freq"], "horizon": plan["horizon"],
        "season_length": plan["season"], "series": plan["series"], "n_series": len(plan["series"]),
        "same_end": args.same_end, "cycles": args.cycles, "batch_steps": plan["batch_steps"],
        "day0_rows": len(plan["day0"]),
        "day0_steps_per_series": {k: float(v) for k, v in plan["day0"].groupby(SERIES_ID).size().describe().items()},
        "max_length": args.max_length, "families": args.families or "shipped",
        "changes": {str(c): k for c, k in sorted(plan["changes"].items())},
        "broken": {str(c): k for c, k in sorted(plan["broken"].items())},
        "injection": {"level_shift_sd": LEVEL_SHIFT_SD, "trend_sd_per_horizon": TREND_SD_PER_HORIZON,
                      "noise_factor": NOISE_FACTOR, "seed": args.seed},
        "monitoring_feasibility": plan["feasibility"], "parallel_arms": args.parallel_arms,
        "source": source_description(),
        "command": " ".join([*([f"PYTHONPATH={_portable(project_source())}/src"] if project_source() != ROOT else []),
                             *([f"nice -n {os.nice(0)}"] if os.nice(0) > 0 else []),  # the niceness it ran at
                             ".venv/bin/python benchmarks/day_n_replay.py", *_portable_argv(args.argv)]),
        "wall_s": time.perf_counter() - started, "date": time.strftime("%Y-%m-%d"),
        "store_200_cycles": measure_store_growth(args.dataset, args.store_cycles, work) if args.store_cycles else None,
        "rows": rows, "totals": totals,
    }
    if set(ARMS) <= set(args.arms):
        result["targets"] = targets(totals, result["store_200_cycles"])
    folder = work if args.quick else RESULTS  # a smoke run's results stay in its working folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"day_n_replay_{tag}.json"
    path.write_text(json.dumps(result, indent=2, default=_json_default))
    print(f"results: {path}", flush=True)
    return result


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- report: table, plot, docs ------------------------------------------------------------------------------

def _mb(value) -> str:
    return "–" if value is None else f"{value / 2 ** 20:.2f} MB"


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def plot(result: dict[str, Any], path: Path) -> None:
    """Three panels over the cycles: per arm, the drift flags, retrains and promotions; the realized MASE of each
    arm on each cycle's batch (log scale); the cycle wall time per arm. Injected changes are dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["rows"])
    figure, (events, error_axis, latency_axis) = plt.subplots(
        3, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [0.22 * len(arms) + 0.3, 2, 1]})
    colours = {arm: f"C{i}" for i, arm in enumerate(arms)}
    marks = (("drift", "v", "drift flagged", -0.22), ("retrain", "s", "retrained", 0.0), ("promoted", "*", "promoted", 0.22),
             ("failed", "x", "cycle failed", 0.0))
    for y, arm in enumerate(arms):
        rows = result["rows"][arm]
        scored = [r for r in rows if r.get("mase_next") is not None]
        error_axis.plot([r["cycle"] + 1 for r in scored], [r["mase_next"] for r in scored], marker="o",
                        color=colours[arm], label=arm, alpha=0.8, linewidth=2.5 - y * 0.7)
        latency_axis.plot([r["cycle"] for r in rows], [r["latency_s"] for r in rows], marker=".", color=colours[arm],
                          label=arm)
        for key, marker, label, offset in marks:
            cycles = [r["cycle"] + offset for r in rows if r.get(key)]
            events.scatter(cycles, [y] * len(cycles), marker=marker, color=colours[arm], s=36,
                           label=label if y == 0 else None)
    events.set_yticks(range(len(arms)), arms, fontsize=8)
    events.set_ylim(-0.6, len(arms) - 0.4)
    events.invert_yaxis()
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="black", label=label) for _, m, label, _ in marks]
    events.legend(handles=handles, fontsize=7, ncol=3, loc="upper left", bbox_to_anchor=(0, 1.45), frameon=False)
    for cycle, kind in result["changes"].items():
        for axis in (events, error_axis, latency_axis):
            axis.axvline(int(cycle), color="grey", linestyle="--", linewidth=0.8)
        error_axis.annotate(kind.replace("_change", "").replace("_", " "), (int(cycle), 1.0),
                            xycoords=("data", "axes fraction"), xytext=(2, -10), textcoords="offset points",
                            fontsize=7, color="dimgrey")
    error_axis.set_yscale("log")
    error_axis.set_ylabel("realized MASE on the batch")
    error_axis.legend(fontsize=7, loc="upper right")
    events.set_title(f"Day-N replay, {result['dataset']}: {result['n_series']} series, {result['cycles']} cycles of "
                     f"{result['batch_steps']} steps; dashed: injected (synthetic) changes", fontsize=10, pad=18)
    latency_axis.set_ylabel("cycle wall s")
    latency_axis.set_xlabel("cycle (0 = Day 0); MASE at cycle c: the forecasts saved by cycle c-1, on batch c")
    latency_axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(result: dict[str, Any], image: str) -> str:
    """Per-cycle table, totals per arm and the targets of one finished replay."""
    rows = {arm: {r["cycle"]: r for r in rs} for arm, rs in result["rows"].items()}
    arms = list(result["rows"])
    cycles = sorted(rows[arms[0]])
    lines = [(f"### {result.get('tag', result['dataset'])}: {result['n_series']} series, {result['cycles']} cycles of "
              f"{result['batch_steps']} "
             f"steps (horizon {result['horizon']}, m = {result['season_length']}), families {result['families']}"), "",
             f"Command ({result['date']}): `{result['command']}` ({result['wall_s'] / 60:.0f} min wall for all arms).",
             "", f"![Day-N replay, {result.get('tag', result['dataset'])}]({image})", "",
             ("Per cycle (product arm unless named; MASE / sMAPE: the forecasts live when the cycle's batch arrived, "
             "i.e. saved by the cycle before, scored on that batch):"), "",
             "| cycle | injected (synthetic) | broken file | quarantined | drift | retrain | promoted | "
             + " | ".join(f"MASE {a}" for a in arms) + " | sMAPE product | wall s " + " / ".join(arms) + " | store / raw |",
             "|" + "---|" * (8 + len(arms) + 2)]
    for cycle in cycles:
        p = rows["product"][cycle] if "product" in rows else rows[arms[0]][cycle]
        errors = [_fmt(rows[a].get(cycle - 1, {}).get("mase_next")) for a in arms]
        store = (p["store_bytes"] / p["raw_bytes"]) if p.get("store_bytes") and p.get("raw_bytes") else None
        broken = p.get("broken") or ""
        quarantine = ("yes" if p.get("broken_quarantined") else "NO") if broken else ""
        if p.get("failed"):
            quarantine = f"cycle failed: {p['failed'].split(':')[0]}"
        lines.append(f"| {cycle} | {p.get('injected') or ''} | {broken} | {quarantine} | {_fmt(p.get('drift'))} | "
                     f"{_fmt(p.get('retrain'))} | {_fmt(p.get('promoted'))} | " + " | ".join(errors) + " | "
                     f"{_fmt(rows['product'].get(cycle - 1, {}).get('smape_next') if 'product' in rows else None, 2)} | "
                     + " / ".join(f"{rows[a][cycle]['latency_s']:.0f}" for a in arms) + f" | {_fmt(store, 2)} |")
    lines += ["", "Totals (MASE, sMAPE: means over the scored cycles; latency: mean Day-N cycle wall time):", "",
              ("| arm | MASE | sMAPE | failed cycles | drift flags | retrains | promotions | rollbacks | "
              "retrains without a change | "
              "Day 0 s | cycle s (no retrain / retrain) | history store / raw at the end | data/ + MLflow at the end "
              "(per cycle) |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        t = result["totals"][arm]
        lines.append(f"| {arm} | {_fmt(t['mase'])} | {_fmt(t['smape'], 2)} | {len(t.get('failed_cycles', []))} | "
                     f"{t['drift_flags']} | {t['retrains']} | "
                     f"{t['promotions']} | {t['rollbacks']} | {len(t['false_retrains'])} of {t['cycles_without_change']} | "
                     f"{_fmt(t['latency_s_day0'], 0)} | {_fmt(t['latency_s_no_retrain_mean'], 0)} / "
                     f"{_fmt(t['latency_s_retrain_mean'], 0)} | {_fmt(t['store_over_raw'], 2)} | "
                     f"{_mb(t['project_bytes'])} (+{_mb(t['project_growth_per_cycle'])}) |")
    product = result["totals"].get("product")
    if product and product["promotion_checks"]:
        lines += ["", ("Promotions (product arm), realized error on the next batch: new champion vs the champion it "
                  "replaced (its forecasts from the inference node on the same history):"), "",
                  "| cycle | MASE new | MASE replaced | sMAPE new | sMAPE replaced | raised |", "|---|---|---|---|---|---|"]
        for p in product["promotion_checks"]:
            lines.append(f"| {p['cycle']} | {_fmt(p['mase_new'])} | {_fmt(p['mase_old'])} | {_fmt(p['smape_new'], 2)} | "
                         f"{_fmt(p['smape_old'], 2)} | {_fmt(p['raised'])} |")
    if result.get("targets"):
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else 'not met'} |")
    return "\n".join(lines + [""])


def summary_table(tags: list[str]) -> str:
    """One line per finished replay (the product arm's decisions; the realized MASE of every arm that ran): the
    code it ran, changes and their detection delay, drift flags, retrains, promotions, failed cycles."""
    lines = [("| replay | code | cycles | changes (cycle: detection delay in cycles) | drift flags | retrains | retrains "
              "without a change | promotions | failed cycles | MASE product / retrain_every / never_retrain |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for tag in tags:
        result = json.loads((RESULTS / f"day_n_replay_{tag}.json").read_text())
        changes = {int(c): k for c, k in result["changes"].items()}
        totals = {arm: score_arm(rows, changes, result["batch_steps"]) for arm, rows in result["rows"].items()}
        t = totals["product"]
        detection = ", ".join(f"{d['kind']}@{c}: {'missed' if d['delay'] is None else d['delay']}"
                              for c, d in t["detection"].items()) or "none"
        source = result.get("source", {})
        code = (source.get("snapshot_of_commit") or source.get("repository_head") or "?")[:7]
        errors = " / ".join(_fmt(totals[arm]["mase"]) if arm in totals else "–" for arm in ARMS)
        lines.append(f"| `{tag}` | {code} | {t['cycles']} | {detection} | {t['drift_flags']} | {t['retrains']} | "
                     f"{len(t['false_retrains'])} of {t['cycles_without_change']} | {t['promotions']} | "
                     f"{len(t['failed_cycles'])} | {errors} |")
    return "\n".join(lines + [""])


def write_docs(blocks: dict[str, str]) -> None:
    """Replace (or add) each dataset's generated block inside the "Day-N replay" section of docs/benchmarks.md;
    text outside the markers is left as it is."""
    text = DOCS.read_text()
    if DOCS_SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{DOCS_SECTION}\n"
    for dataset, block in blocks.items():
        begin, end = f"<!-- day_n_replay:{dataset} begin -->", f"<!-- day_n_replay:{dataset} end -->"
        wrapped = f"{begin}\n{block}{end}"
        if begin in text:
            head, rest = text.split(begin, 1)
            text = head + wrapped + rest.split(end, 1)[1]
        else:
            start = text.index(DOCS_SECTION)
            following = text.find("\n## ", start + len(DOCS_SECTION))
            cut = len(text) if following == -1 else following
            text = text[:cut].rstrip("\n") + f"\n\n{wrapped}\n" + text[cut:]
    DOCS.write_text(text)


def report(tags: list[str], write: bool) -> None:
    """Plot and markdown of finished replays (``benchmarks/results/day_n_replay_<tag>.json``)."""
    blocks = {}
    for tag in tags:
        path = RESULTS / f"day_n_replay_{tag}.json"
        result = json.loads(path.read_text())
        # the totals are a pure function of the per-cycle rows: scored again with this version of the scoring
        changes = {int(c): k for c, k in result["changes"].items()}
        result["totals"] = {arm: score_arm(rows, changes, result["batch_steps"]) for arm, rows in result["rows"].items()}
        if set(ARMS) <= set(result["rows"]):
            result["targets"] = targets(result["totals"], result.get("store_200_cycles"))
        path.write_text(json.dumps(result, indent=2, default=_json_default))
        image = IMAGES / f"day_n_replay_{tag}.png"
        plot(result, image)
        blocks[tag] = markdown(result, f"images/{image.name}")
        print(blocks[tag])
    if write:
        write_docs(blocks)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="m4_hourly", choices=sorted(PANELS))
    parser.add_argument("--series", type=int, default=12, help="series, every k-th among those long enough")
    parser.add_argument("--cycles", type=int, default=12, help="Day-N cycles after Day 0")
    parser.add_argument("--batch-horizons", type=float, default=1.0, help="batch size in horizons")
    parser.add_argument("--min-day0-horizons", type=int, default=6, help="Day-0 rows a series needs, in horizons")
    parser.add_argument("--max-length", type=int, default=None, help="use only each series' first N rows")
    parser.add_argument("--families", default="seasonal_naive,theta",
                        help="TS_KEDRO_FAMILIES ('' = shipped); ETS with an hourly season costs ~10 s per series fit here")
    parser.add_argument("--changes", default=None, help="e.g. level_shift@3,trend_change@5 or none "
                        "(default: the four kinds spread over the middle half of the cycles)")
    parser.add_argument("--broken", default=None, help="e.g. wrong_columns@2,unknown_series@4 or none "
                        "(default: the four kinds, one cycle before each change)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store-cycles", type=int, default=200, help="cycles of benchmarks/history_store_growth.py "
                        "on the whole panel for the storage target (0: skip)")
    parser.add_argument("--storage-only", default=None, help="only measure the storage of these finished replays "
                        "(tags) and score them again")
    parser.add_argument("--cycle-timeout", type=float, default=1800)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "benchmarks")
    parser.add_argument("--tag", default=None, help="suffix of the results' name (day_n_replay_<dataset>_<tag>)")
    parser.add_argument("--same-end", action="store_true", help="only series ending at the most common end timestamp")
    parser.add_argument("--sequential-arms", dest="parallel_arms", action="store_false",
                        help="run the arms one after the other (default: one thread per arm, cycles in parallel)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 series, 2 cycles (a level shift and two "
                        "broken files), seasonal_naive,theta; results stay in the working folder")
    parser.add_argument("--report", default=None, help="only rebuild tables and plots of these finished replays "
                        "(tags: m4_hourly, nn5_daily, m4_hourly_same_end, ...)")
    parser.add_argument("--summary", default=None, help="only print one line per finished replay (product arm)")
    parser.add_argument("--summary-block", default="summary", help="docs block the --summary table goes to")
    parser.add_argument("--write-docs", action="store_true", help="write the blocks into docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.storage_only:
        for tag in args.storage_only.split(","):
            path = RESULTS / f"day_n_replay_{tag}.json"
            result = json.loads(path.read_text())
            result["store_200_cycles"] = measure_store_growth(result["dataset"], args.store_cycles,
                                                              (args.workdir / f"day_n_replay_{tag}").resolve())
            path.write_text(json.dumps(result, indent=2, default=_json_default))
            print(tag, result["store_200_cycles"])
        report(args.storage_only.split(","), args.write_docs)
        return
    if args.summary:
        table = summary_table(args.summary.split(","))
        print(table)
        if args.write_docs:
            write_docs({args.summary_block: table})
        return
    if args.report:
        report(args.report.split(","), args.write_docs)
        return
    if args.quick:
        args.series, args.cycles, args.families = 3, 2, "seasonal_naive,theta"
        args.changes = args.changes or "level_shift@1"
        args.broken = args.broken or "wrong_columns@1,overlap_conflict@2"
    args.families = args.families or None
    args.arms = args.arms.split(",")
    result = replay(args)
    folder = (args.workdir / f"day_n_replay_{result['tag']}").resolve() if args.quick else IMAGES
    image = folder / f"day_n_replay_{result['tag']}.png"
    plot(result, image)
    block = markdown(result, f"images/{image.name}")
    print(block)
    if args.write_docs and not args.quick:
        write_docs({result["tag"]: block})


if __name__ == "__main__":
    main()
