"""A short horizon through ``kedro run``: two backtest origins against the derived, season-spanning origins.

With ``panel.horizon: 1`` and two origins, selection and interval calibration see two forecast steps per series,
both at the end of the series (on hourly data: the last two hours of one day). The frequency profile now
derives more origins for a short horizon (one season of them, and ``1 / (1 - L)`` scored steps at the lowest
level) and keeps two fits per family, carrying the fitted state to the origins between with
``Forecaster.update`` (``ts_kedro.frequency``, ``backtest.refit_every``). This script runs the Day-0 pipeline on
the training part of real panels with that horizon twice:

- ``two_origins``: ``backtest.n_windows=2,backtest.refit_every=1`` (the behaviour before),
- ``derived``: the defaults,

and scores the selected model's forecast of the first ``horizon`` test steps of each series (the matrix's
datasets, loaders and scoring: ``benchmarks/matrix.py``), beside statsforecast's seasonal naive on the same
cleaned panel. It also reports what the backtest cost (the families' fit and predict seconds, from each run's
``08_reporting/<family>/backtest_timings.json``) and which model was selected.

One test step per series is a noisy score. ``--rolling`` (on by default) also scores what a user with this
horizon gets from Day N: the run's selected panel model (``06_models/panel_model.pkl``) is moved through the
whole test part one step at a time with ``SelectedPanelModel.update`` (nothing re-estimated, as a Day-N cycle
without drift) and forecasts ``horizon`` steps from every origin; the forecasts of the next ``horizon`` steps
are scored (the matrix's test part: 48 origins per M4 Hourly series, 56 NN5, 18 M3 monthly), beside seasonal
naive from the same origins. A missing test value (NN5) is carried forward as the update's input and not scored.

    TQDM_DISABLE=1 .venv/bin/python benchmarks/short_horizon.py --datasets m4_hourly,nn5_daily --every 2 \\
        --workdir data/benchmarks/short_horizon

Output: ``benchmarks/results/short_horizon_<dataset>_h<horizon>.json`` and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matrix import DATASETS, LEVELS, STEP_DATASETS, read_run, run_kedro, run_peers, subset  # noqa: E402
from selection_replay import score  # noqa: E402

ARMS = {"two_origins": "backtest.n_windows=2,backtest.refit_every=1", "derived": ""}


def first_steps(test: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The first ``horizon`` rows of each series' test part (in time order)."""
    test = test.sort_values(["series_id", "timestamp"], kind="stable")
    return test[test.groupby("series_id").cumcount() < horizon].reset_index(drop=True)


def backtest_costs(workdir: Path) -> dict[str, dict]:
    """Per family: backtest fit and predict seconds, and the windows fitted and updated."""
    costs = {}
    for stats in sorted((workdir / "data" / "08_reporting").glob("*/backtest_timings.json")):
        timings = json.loads(stats.read_text())
        costs[stats.parent.name] = {"fit_s": timings["fit_seconds_total"], "predict_s": timings["predict_seconds_total"],
                                    "refit_windows": timings.get("refit_windows"),
                                    "updated_windows": timings.get("updated_windows")}
    return costs


def _selected_model(workdir: Path):
    import pickle

    versions = sorted((workdir / "data" / "06_models" / "panel_model.pkl").iterdir())
    return pickle.loads((versions[-1] / "panel_model.pkl").read_bytes())


def _update_inputs(model, full_test: pd.DataFrame, panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test part of the model's series, in order, and the same with every step present (a missing value
    carried forward: the update's input needs every step; it is scored nowhere)."""
    test = full_test[full_test["series_id"].isin(set(model.series_ids))].sort_values(["series_id", "timestamp"])
    filled = test.assign(value=test.groupby("series_id")["value"].ffill())
    filled = filled[filled["value"].notna()]
    if "is_anomaly" in panel:  # the new steps are taken as observed
        filled = filled.assign(is_anomaly=False)
    return test, filled


def refused_series(workdir: Path, full_test: pd.DataFrame, panel: pd.DataFrame) -> list[str]:
    """Series some family of the run's selected model cannot take the test part of by ``update`` (a 0 on a
    log-scale ARIMA or a multiplicative ETS): Day N refits them on the history at every origin here (the whole
    family until the per-series refit, ``benchmarks/refused_updates.py``), so they are left out of the rolling
    score of every arm alike."""
    import re

    from ts_kedro.registry.panel_model import InferenceInputError

    model = _selected_model(workdir)
    _, filled = _update_inputs(model, full_test, panel)
    base = panel[["series_id", "timestamp", "value", *(["is_anomaly"] if "is_anomaly" in panel else [])]]
    history = pd.concat([base, filled], ignore_index=True).sort_values(["series_id", "timestamp"])
    refused: list[str] = []
    for _ in range(len(model.series_ids)):
        try:
            model.update(history, refit_on_failure=False)
            return refused
        except InferenceInputError as exc:
            named = re.findall(r"series '([^']+)'", str(exc))
            if not named:
                raise
            refused += [s for s in named if s not in refused]
            model = model.restricted_to([s for s in model.series_ids if s not in refused])
            history = history[~history["series_id"].isin(refused)]
    return refused


def rolling_scores(workdir: Path, full_test: pd.DataFrame, panel: pd.DataFrame, season: int,
                   horizon: int, freq: str, excluded: list[str]) -> dict:
    """The selected model updated through the test part one step at a time, ``horizon`` steps forecast from
    every origin and scored on the test part; seasonal naive from the same origins. ``excluded``: series left
    out (``refused_series``)."""
    model = _selected_model(workdir)
    model = model.restricted_to([s for s in model.series_ids if s not in set(excluded)])
    panel = panel[panel["series_id"].isin(set(model.series_ids))]
    test, filled = _update_inputs(model, full_test, panel)
    base = panel[["series_id", "timestamp", "value", *(["is_anomaly"] if "is_anomaly" in panel else [])]]
    step = pd.tseries.frequencies.to_offset(freq)
    steps = int(test.groupby("series_id").size().max())
    started, frames, naive = time.perf_counter(), [], []
    position = filled.groupby("series_id").cumcount()
    for k in range(steps - horizon + 1):
        history = pd.concat([base, filled[position < k]], ignore_index=True).sort_values(["series_id", "timestamp"])
        current = model.update(history) if k else model
        forecast = current.predict(horizon=horizon)
        forecast["origin"] = k
        frames.append(forecast)
        # seasonal naive from the same origin: step j repeats the value m - (j mod m) steps before the origin
        tails = history.groupby("series_id", sort=False).tail(season)
        ends = history.groupby("series_id", sort=False)["timestamp"].max()
        for j in range(horizon):
            back = season - (j % season)
            picked = tails[tails.groupby("series_id", sort=False).cumcount(ascending=False) == back - 1]
            naive.append(pd.DataFrame({"series_id": picked["series_id"].to_numpy(), "origin": k,
                                       "timestamp": pd.DatetimeIndex(ends.reindex(picked["series_id"])) + (j + 1) * step,
                                       "mean": picked["value"].to_numpy(float)}))
    seconds = time.perf_counter() - started
    forecasts = pd.concat(frames, ignore_index=True)
    naive_frame = pd.concat(naive, ignore_index=True)
    for level in LEVELS:
        naive_frame[f"lo-{level}"] = naive_frame[f"hi-{level}"] = naive_frame["mean"]
    # every origin's forecasts scored as one long forecast per series: the per-series means run over all origins
    scored = test.merge(forecasts, on=["series_id", "timestamp"])
    scored_naive = test.merge(naive_frame, on=["series_id", "timestamp"])
    keyed = lambda f: f.assign(series_id=f["series_id"].astype(str) + "@" + f["origin"].astype(str))  # noqa: E731
    base_keyed = pd.concat([panel.assign(series_id=panel["series_id"].astype(str) + "@" + str(k))
                            for k in range(steps - horizon + 1)], ignore_index=True)
    ours = score(keyed(scored)[["series_id", "timestamp", "mean", *[c for c in scored if c[:3] in ("lo-", "hi-")]]],
                 keyed(scored)[["series_id", "timestamp", "value"]], base_keyed, season, LEVELS)
    theirs = score(keyed(scored_naive)[["series_id", "timestamp", "mean",
                                        *[c for c in scored_naive if c[:3] in ("lo-", "hi-")]]],
                   keyed(scored_naive)[["series_id", "timestamp", "value"]], base_keyed, season, LEVELS)
    return {"origins": steps - horizon + 1, "seconds": seconds, "excluded": list(excluded),
            "n_series": int(test["series_id"].nunique()), "selected": ours,
            "seasonal_naive": {k: v for k, v in theirs.items() if not k.startswith(("coverage", "msis"))}}


def run(name: str, every: int, horizon: int, workroot: Path, families: str | None, rolling: bool = True,
        reuse: bool = False, only_arm: str | None = None) -> dict:
    loader, freq, _, _ = DATASETS[name]
    if name in STEP_DATASETS:
        raise SystemExit(f"{name}: a step-numbered time column; not supported here")
    train, full_test = subset(*loader(), every, None)
    test = first_steps(full_test, horizon)
    result = {"dataset": name, "freq": freq, "horizon": horizon, "every": every,
              "n_series": int(train["series_id"].nunique()), "families": families or "shipped", "arms": {}}
    for arm, params in ARMS.items():
        workdir = workroot / f"{name}_h{horizon}_{arm}"
        print(f"{name} h={horizon} {arm}: kedro run on {result['n_series']} series ...", flush=True)
        again = not reuse and only_arm in (None, arm)
        ours = run_kedro(workdir, train, freq, horizon, families, extra_params=params) if again else reused(workdir)
        panel, profile = ours["panel"], ours["profile"]
        season = int(profile["season_length"])
        kept = test[test["series_id"].isin(set(panel["series_id"]))]
        result["arms"][arm] = {
            "backtest": profile["backtest"], "season_length": season, "wall_s": ours["wall_s"],
            "overall_model": ours["overall_model"], "choice_counts": ours["choice_counts"],
            "ensemble_members": ours["ensemble_members"], "costs": backtest_costs(workdir),
            "selected": score(ours["forecasts"], kept, panel, season, LEVELS)}
        if arm == "derived":
            naive = run_peers(panel[["series_id", "timestamp", "value"]], horizon, freq, season,
                              list(profile["seasonal_periods"]), only=["seasonal_naive"])["sf_seasonal_naive"][0]
            result["sf_seasonal_naive"] = score(naive, kept, panel, season, LEVELS)
    if rolling:  # the same series in every arm
        runs = {arm: workroot / f"{name}_h{horizon}_{arm}" for arm in ARMS}
        panels = {arm: pd.read_parquet(workdir / "data" / "03_primary" / "primary_panel.parquet")
                  for arm, workdir in runs.items()}
        excluded = sorted({s for arm in ARMS for s in refused_series(runs[arm], full_test, panels[arm])})
        for arm in ARMS:
            season = result["arms"][arm]["season_length"]
            rolled = rolling_scores(runs[arm], full_test, panels[arm], season, horizon, freq, excluded)
            result["arms"][arm]["rolling"] = rolled
            print(f"  {arm} rolling: {rolled['origins']} origins of {rolled['n_series']} series in "
                  f"{rolled['seconds']:.0f} s (left out: {excluded})", flush=True)
    out = ROOT / "benchmarks" / "results" / f"short_horizon_{name}_h{horizon}.json"
    if (reuse or only_arm) and out.exists():  # keep the earlier pass's run costs where a run was not repeated
        earlier = json.loads(out.read_text())
        for arm, values in earlier.get("arms", {}).items():
            if result["arms"].get(arm, {}).get("wall_s") is None:
                result["arms"].setdefault(arm, {})["wall_s"] = values.get("wall_s")
    out.write_text(json.dumps(result, indent=2, default=float))
    return result


def reused(workdir: Path) -> dict:
    """What ``run_kedro`` returns, read back from a finished run (``--reuse``: score again without rerunning)."""
    return {**read_run(workdir), "wall_s": None}


def table(results: list[dict]) -> str:
    lines = ["| dataset (series, h) | arm | origins / fits | selected | MASE | sMAPE | cov 80 | cov 95 | MSIS 95 | "
             "backtest fit + predict s | run wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for arm, a in r["arms"].items():
            s = a["selected"]
            cost = sum(c["fit_s"] + c["predict_s"] for c in a["costs"].values())
            fits = max((len(c["refit_windows"] or []) for c in a["costs"].values()), default=0)
            lines.append(f"| {r['dataset']} ({r['n_series']}, {r['horizon']}) | {arm} | {a['backtest']['n_windows']} / "
                         f"{fits} | {a['overall_model']} | {s['mase']:.3f} | {s['smape']:.2f} | "
                         f"{s['coverage-80']:.3f} | {s['coverage-95']:.3f} | {s['msis-95']:.2f} | {cost:.0f} | "
                         f"{a['wall_s']:.0f} |")
        n = r["sf_seasonal_naive"]
        lines.append(f"| {r['dataset']} | sf seasonal naive | | | {n['mase']:.3f} | {n['smape']:.2f} | "
                     f"{n['coverage-80']:.3f} | {n['coverage-95']:.3f} | {n['msis-95']:.2f} | | |")
    rolling = [(r, arm, a["rolling"]) for r in results for arm, a in r["arms"].items() if "rolling" in a]
    if rolling:
        lines += ["", "Rolling through the test part (the selected model updated one step at a time, Day N's way):", "",
                  "| dataset | arm | origins | MASE | sMAPE | cov 80 | cov 95 | MSIS 80 | MSIS 95 | seasonal naive MASE |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r, arm, g in rolling:
            s = g["selected"]
            lines.append(f"| {r['dataset']} | {arm} | {g['origins']} | {s['mase']:.3f} | {s['smape']:.2f} | "
                         f"{s['coverage-80']:.3f} | {s['coverage-95']:.3f} | {s['msis-80']:.2f} | {s['msis-95']:.2f} | "
                         f"{g['seasonal_naive']['mase']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="m4_hourly,nn5_daily,m3_monthly")
    parser.add_argument("--every", type=int, default=1, help="every n-th series of each dataset")
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--families", default=None, help="TS_KEDRO_FAMILIES for both arms (default: shipped)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "benchmarks" / "short_horizon")
    parser.add_argument("--table", action="store_true", help="print the table of existing results only")
    parser.add_argument("--no-rolling", action="store_true", help="score the first test steps only")
    parser.add_argument("--reuse", action="store_true", help="score the finished runs in --workdir again")
    parser.add_argument("--only-arm", choices=list(ARMS), default=None,
                        help="rerun this arm's kedro run only; the other arm's finished run is scored again")
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if args.table:
        results = [json.loads((ROOT / "benchmarks" / "results" / f"short_horizon_{n}_h{args.horizon}.json").read_text())
                   for n in names]
    else:
        results = [run(n, args.every, args.horizon, args.workdir, args.families, rolling=not args.no_rolling,
                       reuse=args.reuse, only_arm=args.only_arm) for n in names]
    print(table(results))


if __name__ == "__main__":
    main()
