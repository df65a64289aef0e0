"""Realized accuracy of a Day-N loop that only updates, against one that refits every cycle, per family.

What: the replay's series of a real panel (``day_n_replay.choose_series`` and its split: Day 0 on the first part,
then ``--cycles`` batches of one horizon each), no injected change, no broken file. Each family is fitted on Day 0
as ``kedro run`` builds it: its ``conf/base/parameters_training.yml`` block and the panel's frequency profile, on
data_processing's own gap filling and anomaly flags with the shipped ``conf/base`` settings, recomputed on the
growing history every cycle as Day N does. Then, every cycle, it is brought to the history's end in three ways:

- ``update``: ``Forecaster.update`` with the history (a flagged run that closes inside the batch is imputed, as
  a fit on the history would; the default since the anomaly-aware update);
- ``update_as_observed``: ``update`` without the history (the batch as observed: serving, and every update
  before that change);
- ``refit``: a new fit on the whole history (parameters re-estimated every cycle);
- with ``--keep-arm``, also ``keep``: the family's block with ``anomalies: keep``, fitted and updated on the
  observed values;
- with ``--growth g`` (repeatable), also ``growth_<g>``: ``update``, except that a cycle refits on the whole history
  once the steps added since the last fit reach ``g`` times the median series length that fit saw (a schedule
  whose refits grow geometrically apart: ``g = 1`` refits whenever the history has doubled).

A family that refuses an update (a value <= 0 for a multiplicative ETS) is refitted on the history instead, as
``SelectedPanelModel.update`` does, and ``refitted_cycles`` counts those cycles.

After each, it forecasts one horizon and scores it against the next batch (MASE, the in-sample seasonal-naive
scale of the history so far; mean over series, then over cycles). Why: the Day-N loop updates and refits only on
drift or on ``retrain.every``; this shows per family what the parameters left as they were cost, or save, on real
data, and what the anomaly-aware update changed. ``cpu_s`` is the CPU time of this process over the whole
loop: the families' joblib workers (ETS, ARIMA, Theta) are not counted, so it is no cost comparison across
families or arms.

    .venv/bin/python benchmarks/update_accuracy.py nn5_daily seasonal_naive,theta,ets,arima --series 12 --cycles 10
    .venv/bin/python benchmarks/update_accuracy.py nn5_daily seasonal_naive,theta --keep-arm   # and anomalies: keep
    .venv/bin/python benchmarks/update_accuracy.py m4_hourly seasonal_naive,theta,arima --series 12 --cycles 12
    .venv/bin/python benchmarks/update_accuracy.py ansett_weekly seasonal_naive,theta,ets,arima --series 30 --cycles 10
    .venv/bin/python benchmarks/update_accuracy.py m4_hourly theta --series 12 --cycles 12 --arms growth --growth 0.5 --growth 1

One JSON line per family on stdout; ``--out`` appends them to a JSONL file.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import day_n_replay as replay  # noqa: E402
from anomaly_treatment_check import SETTINGS  # noqa: E402

from ts_kedro.evaluation.metrics import mase  # noqa: E402
from ts_kedro.forecasters import ForecasterError, build_forecaster  # noqa: E402
from ts_kedro.frequency import profile_for_panel  # noqa: E402
from ts_kedro.pipelines.data_processing.nodes import flag_anomalies, impute_missing  # noqa: E402

CONF = SETTINGS.parent  # conf/base, as anomaly_treatment_check reads it
ARMS = ("update", "update_as_observed", "refit")
KEYS = ["series_id", "timestamp", "value"]


def _prepared(rows: pd.DataFrame, panel_params: dict, settings: dict) -> pd.DataFrame:
    """data_processing's gap filling and anomaly flags on a history (as the Day-N pipeline recomputes them)."""
    rows = rows.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    return flag_anomalies(impute_missing(rows, panel_params, settings), panel_params, settings)


def _mase(forecast: pd.DataFrame, actual: pd.DataFrame, history: pd.DataFrame, m: int) -> float:
    """Mean over series of ``metrics.mase`` on the observed actuals (the raw batch may hold missing days); series
    without a seasonal scale are left out."""
    scores = []
    for series_id, future in actual.dropna(subset=["value"]).groupby("series_id"):
        past = history.loc[history["series_id"] == series_id, "value"].to_numpy(float)
        mean = forecast[forecast["series_id"] == series_id].set_index("timestamp")["mean"]
        score = mase(future["value"], mean.reindex(future["timestamp"]), past, m)
        if np.isfinite(score):
            scores.append(score)
    return float(np.mean(scores))


def _median_length(history: pd.DataFrame) -> float:
    return float(history.groupby("series_id").size().median())


def run(dataset: str, families: list[str], n_series: int, cycles: int, keep_arm: bool = False,
        growth: list[float] | None = None, arms: list[str] | None = None) -> list[dict]:
    panel, freq, horizon = replay.load_panel(dataset)
    series = replay.choose_series(panel, n_series, (cycles + 4) * horizon)
    part = panel[panel["series_id"].isin(series)].sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    from_end = part.groupby("series_id").cumcount(ascending=False).to_numpy()
    held = cycles * horizon
    panel_params = {"freq": freq, "horizon": horizon}
    settings = yaml.safe_load(SETTINGS.read_text())["data_processing"]
    histories = [_prepared(part[from_end >= held - c * horizon], panel_params, settings) for c in range(cycles)]
    profile = profile_for_panel(histories[0], panel_params, {"n_windows": 2})
    m = profile.season_length
    chosen = list(arms or ARMS) + (["keep"] if keep_arm else [])
    chosen = [a for a in chosen if a != "growth"] + [f"growth_{g:g}" for g in (growth or [])]
    results = []
    for family in families:
        shipped = yaml.safe_load((CONF / "parameters_training.yml").read_text())[family]["model"]  # as kedro run
        row = {"dataset": dataset, "family": family, "n_series": len(series), "cycles": cycles - 1,
               "horizon": horizon, "season_length": m}
        for arm in chosen:
            spec = {**shipped, "anomalies": "keep"} if arm == "keep" else shipped
            share = float(arm.split("_", 1)[1]) if arm.startswith("growth_") else None
            started = time.process_time()
            model = build_forecaster(spec, freq=freq, season_length=m,
                                     profile_defaults=profile.forecaster_defaults()).fit(histories[0])
            scores, imputed, refitted, counted = [], 0, 0, 0
            fitted_length, refit_cycles = _median_length(histories[0]), []
            for c in range(1, cycles):
                history, before = histories[c], histories[c - 1]
                due = share is not None and _median_length(history) - fitted_length >= share * fitted_length
                if due:
                    refit_cycles.append(c)
                    fitted_length = _median_length(history)
                if arm == "refit" or due:
                    model = build_forecaster(spec, freq=freq, season_length=m,
                                             profile_defaults=profile.forecaster_defaults()).fit(history)
                    counted = 0  # a new model counts its imputations from zero
                else:
                    ends = history["series_id"].map(before.groupby("series_id")["timestamp"].max())
                    new = history.loc[history["timestamp"] > ends, KEYS].reset_index(drop=True)
                    try:
                        model.update(new, history=None if arm == "update_as_observed" else history)
                        imputed += getattr(model, "imputed_on_update_", 0) - counted
                    except ForecasterError:  # as SelectedPanelModel.update does: refit what cannot take the points
                        refitted += 1
                        model = build_forecaster(spec, freq=freq, season_length=m,
                                                 profile_defaults=profile.forecaster_defaults()).fit(history)
                    counted = getattr(model, "imputed_on_update_", 0)
                actual = part[(from_end >= held - (c + 1) * horizon) & (from_end < held - c * horizon)]
                scores.append(_mase(model.predict(horizon, []), actual, history, m))
            row[arm] = {"mase": round(float(np.mean(scores)), 4), "per_cycle": [round(s, 3) for s in scores],
                        "cpu_s": round(time.process_time() - started, 1)}
            if arm != "refit":
                row[arm].update(refitted_cycles=refitted)
            if arm not in ("update_as_observed", "refit"):
                row[arm]["imputed_points"] = int(imputed)
            if share is not None:
                row[arm]["scheduled_refits"] = refit_cycles
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(replay.PANELS))
    parser.add_argument("families", help="comma-separated registered families")
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--keep-arm", action="store_true", help="also fit and update with anomalies: keep")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {ARMS} and growth")
    parser.add_argument("--growth", type=float, action="append", default=[],
                        help="also an arm that refits when the history grew by this share of the last fit's length")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON lines to this file")
    args = parser.parse_args()
    rows = run(args.dataset, args.families.split(","), args.series, args.cycles, args.keep_arm, args.growth,
               args.arms.split(","))
    if args.out is not None:
        with args.out.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
