"""Which families should the median ensemble hold? Rules chosen on the backtest, scored on the test part.

model_selection's ensemble was the median of every family whose backtest MAE beats seasonal naive's
(``ensemble.member_rule: beat_reference``). The alternative is to choose the members on the backtest itself,
as ensemble selection does (Caruana et al., 2004): the forward path of ``nodes.forward_members`` (shipped as
``ensemble.member_rule: forward``), or the exhaustive best subset. This script scores each rule on a finished
``kedro run`` (``benchmarks/matrix.py`` working directory) with model_selection's own nodes (``build_candidate_backtests``, ``score_candidates`` and the
OWA contribution of ``select_models``) and the test part, nothing refitted:

    .venv/bin/python benchmarks/ensemble_members.py --run-dir data/benchmarks/m3_yearly_s30lgb
    .venv/bin/python benchmarks/ensemble_members.py --run-dir data/benchmarks/m3_yearly_s30lgb --without lightgbm
    .venv/bin/python benchmarks/ensemble_members.py --run-dir data/benchmarks/m3_yearly_s30lgb --combine mean

One table per run on stdout: rule, members, backtest OWA, test OWA, sMAPE and MASE. ``--combine mean`` adds the
forward path of the members' *mean* (chosen by the mean's backtest OWA, scored as a mean on the test part): the
combination ``ensemble.method`` could name, measured against the served median (docs/benchmarks.md, "Median or
mean").
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import selection_replay  # noqa: E402

from ts_kedro.pipelines.model_selection import nodes  # noqa: E402

REFERENCE = "seasonal_naive"


def backtest_owa(run: dict, members: tuple[str, ...], panel_params: dict) -> float:
    """The panel's backtest OWA (against seasonal naive) of one family or of the median of ``members``."""
    backtests = {f: run["backtests"][f] for f in (*members, REFERENCE)}
    if len(members) == 1:
        candidates, name = nodes.build_candidate_backtests({"enabled": False}, panel_params, **backtests), members[0]
    else:
        candidates = nodes.build_candidate_backtests(
            {"enabled": True, "members": list(members), "drop_worse_than_reference": False}, panel_params, **backtests)
        candidates, name = candidates[candidates["model"].isin([nodes.ENSEMBLE, REFERENCE])], nodes.ENSEMBLE
    scores = nodes.score_candidates(candidates, run["panel"], panel_params)
    return float(nodes._primary_scores(scores, "owa", REFERENCE)[name].mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="working directory of a finished kedro run")
    parser.add_argument("--test", type=Path, help="test part (default: <run-dir>/test.csv)")
    parser.add_argument("--without", default="", help="families left out, as if not trained (comma-separated)")
    parser.add_argument("--combine", choices=["median", "mean"], default="median",
                        help="mean: also score the forward path of the members' mean (not served)")
    args = parser.parse_args(argv)
    run = selection_replay.load_run(args.run_dir, tuple(f for f in args.without.split(",") if f))
    profile = run["profile"]
    levels, m = list(profile["levels"]), int(profile["season_length"])
    panel_params = {k: profile[k] for k in ("freq", "horizon", "levels", "season_length")}
    test = pd.read_csv(args.test or args.run_dir / "test.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    test["value"] = test["value"].astype(float)
    families = [f for f in run["backtests"] if f != REFERENCE]
    subsets = [frozenset(c) for k in range(1, len(families) + 1) for c in itertools.combinations(families, k)]
    owa = {s: backtest_owa(run, tuple(sorted(s)), panel_params) for s in subsets}
    stacked = nodes.build_candidate_backtests({"enabled": False}, panel_params, **run["backtests"])
    beat_reference = nodes._ensemble_members_for_run(list(run["backtests"]), {"exclude": [REFERENCE]}, stacked)
    forward = nodes.forward_members(stacked, families, REFERENCE, run["panel"], panel_params)
    rules = {
        "beat_reference: every family that beats seasonal naive": frozenset(beat_reference),
        "forward path, best on the backtest (shipped)": frozenset(forward),
        "exhaustive, best on the backtest": min(subsets, key=lambda s: owa[s]),
        "best single family on the backtest": min((s for s in subsets if len(s) == 1), key=lambda s: owa[s]),
    }
    combined = {rule: (members, "median", owa[members]) for rule, members in rules.items()}
    if args.combine == "mean":
        path = nodes.forward_path(stacked, families, REFERENCE, run["panel"], panel_params, combine=np.mean)
        best, best_owa = min(path, key=lambda step: step[1])
        combined["forward path of the mean (not served)"] = (frozenset(best), "mean", best_owa)
    series = list(dict.fromkeys(run["panel"]["series_id"]))
    rows = []
    for rule, (members, combine, owa_backtest) in combined.items():
        chosen = nodes.ENSEMBLE if len(members) > 1 else next(iter(members))
        selection = {"choice": {sid: chosen for sid in series}, "ensemble_members": sorted(members)}
        forecasts = selection_replay.route(run, selection, levels, combine)
        result = selection_replay.score(forecasts, test, run["panel"], m, levels)
        rows.append({"rule": rule, "members": ",".join(sorted(members)), "backtest_owa": owa_backtest,
                     "test_owa": result["owa"], "smape": result["smape"], "mase": result["mase"]})
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(f"{args.run_dir.name}{' without ' + args.without if args.without else ''}")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
