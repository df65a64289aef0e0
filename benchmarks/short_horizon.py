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

    TQDM_DISABLE=1 .venv/bin/python benchmarks/short_horizon.py --datasets m4_hourly,nn5_daily --every 2 \\
        --workdir data/benchmarks/short_horizon

Output: ``benchmarks/results/short_horizon_<dataset>_h<horizon>.json`` and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matrix import DATASETS, LEVELS, STEP_DATASETS, run_kedro, run_peers, subset  # noqa: E402
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


def run(name: str, every: int, horizon: int, workroot: Path, families: str | None) -> dict:
    loader, freq, _, _ = DATASETS[name]
    if name in STEP_DATASETS:
        raise SystemExit(f"{name}: a step-numbered time column; not supported here")
    train, test = subset(*loader(), every, None)
    test = first_steps(test, horizon)
    result = {"dataset": name, "freq": freq, "horizon": horizon, "every": every,
              "n_series": int(train["series_id"].nunique()), "families": families or "shipped", "arms": {}}
    for arm, params in ARMS.items():
        workdir = workroot / f"{name}_h{horizon}_{arm}"
        print(f"{name} h={horizon} {arm}: kedro run on {result['n_series']} series ...", flush=True)
        ours = run_kedro(workdir, train, freq, horizon, families, extra_params=params)
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
    out = ROOT / "benchmarks" / "results" / f"short_horizon_{name}_h{horizon}.json"
    out.write_text(json.dumps(result, indent=2, default=float))
    return result


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
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="m4_hourly,nn5_daily,m3_monthly")
    parser.add_argument("--every", type=int, default=1, help="every n-th series of each dataset")
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--families", default=None, help="TS_KEDRO_FAMILIES for both arms (default: shipped)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "benchmarks" / "short_horizon")
    parser.add_argument("--table", action="store_true", help="print the table of existing results only")
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if args.table:
        results = [json.loads((ROOT / "benchmarks" / "results" / f"short_horizon_{n}_h{args.horizon}.json").read_text())
                   for n in names]
    else:
        results = [run(n, args.every, args.horizon, args.workdir, args.families) for n in names]
    print(table(results))


if __name__ == "__main__":
    main()
