"""Stallion through ``kedro run``: the selected model's MAE with and without the declared covariates.

The whole Day-0 pipeline (every shipped family, backtest, selection, ensembles, calibration) runs twice on the same
Stallion series, in its own project folder each (``benchmarks/matrix.py``'s way): once with no covariate, once with
the covariates declared as ``docs/data_contract.md`` declares them for Stallion (prices, discount and the special-day
dummies ``known_in_advance``; industry volume, soda volume and temperature ``observed``) and the test months' values
of the known ones as the ``future_covariates`` plan. Same configuration otherwise: only the declaration and the plan
differ. The last ``--horizon`` months are the test part; scores as in ``stallion_covariates_families.py`` (mean over
series of MAE, and total absolute error / total volume), of the forecasts ``kedro run`` writes.

    nice -n 10 .venv/bin/python benchmarks/stallion_selected.py --every 7     # 50 of the 350 series
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matrix import run_kedro  # noqa: E402
from stallion_covariates_families import KNOWN, OBSERVED, load  # noqa: E402

from ts_kedro.evaluation.metrics import mae  # noqa: E402
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE  # noqa: E402

VARIANTS = {"no covariates": {}, "declared (docs/data_contract.md)": {
    **{c: "known_in_advance" for c in KNOWN}, **{c: "observed" for c in OBSERVED}}}


def run_variant(workdir: Path, train: pd.DataFrame, test: pd.DataFrame, covariates: dict[str, str],
                horizon: int) -> dict:
    """One ``kedro run`` (``matrix.run_kedro``) in its own folder; its selected forecasts scored on ``test``."""
    def declare(folder: Path) -> None:
        # the one difference between the variants: the declaration in data_processing.source (in the copy's conf)
        conf_file = folder / "conf" / "base" / "parameters_data_processing.yml"
        conf = yaml.safe_load(conf_file.read_text())
        conf["data_processing"]["source"]["covariates"] = covariates or []
        conf_file.write_text(yaml.safe_dump(conf, sort_keys=False))

    known = [c for c, kind in covariates.items() if kind == "known_in_advance"]
    extra = ""
    if known:
        workdir.parent.mkdir(parents=True, exist_ok=True)
        plan = workdir.parent / f"{workdir.name}_future_covariates.csv"
        test[[SERIES_ID, TIMESTAMP, *known]].to_csv(plan, index=False)
        extra = f"future_covariates_path={plan}"
    run = run_kedro(workdir, train[[SERIES_ID, TIMESTAMP, VALUE, *covariates]], "MS", horizon, None, extra, declare)
    selection = json.loads((workdir / "data" / "08_reporting" / "model_selection.json").read_text())
    merged = test.merge(run["forecasts"], on=[SERIES_ID, TIMESTAMP], validate="one_to_one")
    per_series = merged.groupby(SERIES_ID).apply(lambda g: mae(g[VALUE], g["mean"]), include_groups=False)
    return {"mean MAE": float(per_series.mean()),
            "MAE / mean volume": float(np.abs(merged[VALUE] - merged["mean"]).sum() / merged[VALUE].sum()),
            "series scored": int(per_series.size), "overall model": run["overall_model"],
            "choice counts": run["choice_counts"], "ensemble members": run["ensemble_members"],
            f"backtest {selection['primary_metric']} per candidate": selection["overall_scores"],
            "wall s": round(run["wall_s"]),
            "peak RSS MB": round(run["peak_rss_mb_max_child"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--every", type=int, default=1, help="every N-th series (sorted ids); 7 gives 50 of 350")
    parser.add_argument("--workroot", default=str(ROOT / "benchmarks" / "_stallion_work"))
    parser.add_argument("--only", choices=["without", "with"], help="run one variant (results file gets the suffix)")
    args = parser.parse_args()
    panel = load(None)
    keep = sorted(panel[SERIES_ID].unique())[::args.every]
    panel = panel[panel[SERIES_ID].isin(keep)].reset_index(drop=True)
    rank = panel.groupby(SERIES_ID).cumcount(ascending=False)
    train, test = panel[rank >= args.horizon].reset_index(drop=True), panel[rank < args.horizon].reset_index(drop=True)
    results = {}
    for variant, covariates in VARIANTS.items():
        if args.only and args.only != ("with" if covariates else "without"):
            continue
        workdir = Path(args.workroot) / ("with" if covariates else "without")
        results[variant] = run_variant(workdir, train, test, covariates, args.horizon)
        print(variant, json.dumps(results[variant]), flush=True)
    suffix = f"_{args.only}_only" if args.only else ""
    out = ROOT / "benchmarks" / "results" / f"stallion_selected_every{args.every}{suffix}.json"
    out.write_text(json.dumps({"series": len(keep), "horizon": args.horizon, "results": results}, indent=2))
    print(pd.DataFrame(results).T.to_string())


if __name__ == "__main__":
    main()
