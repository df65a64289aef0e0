"""Replay model_selection with other settings on a finished Day-0 run and score each on the held-out test part.

One engine: the families' backtests and future forecasts come from a real ``kedro run`` (e.g. one dataset of
``benchmarks/matrix.py``); this script only calls model_selection's own nodes (``build_candidate_backtests``,
``score_candidates``, ``select_models``) with each setting, routes every series to its chosen family (or the
median of the chosen ensemble members, exactly as ``SelectedPanelModel`` does) and scores the result on the
test part with the M4 measures. Nothing is refitted, so a grid of selection rules costs seconds; the best rule
becomes ``conf/base/parameters_model_selection.yml`` and the numbers go to ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/selection_replay.py --run-dir <kedro run dir> --test <test long csv>
    .venv/bin/python benchmarks/selection_replay.py --run-dir data/benchmarks/m3_yearly \
        --test data/benchmarks/m3_yearly/test.csv --grid preference     # ensemble.preference ties/always/none
    .venv/bin/python benchmarks/selection_replay.py --run-dir data/benchmarks/carparts \
        --test data/benchmarks/carparts/test.csv --ensembles all arima,intermittent,lstm
    .venv/bin/python benchmarks/selection_replay.py --run-dir data/benchmarks/m4_hourly \
        --test data/benchmarks/m4_hourly/test.csv --grid preference --without lightgbm   # as without the family
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ts_kedro.evaluation import metrics
from ts_kedro.forecasters import interval_columns
from ts_kedro.pipelines.model_selection import nodes

ROOT = Path(__file__).resolve().parents[1]


def load_run(run_dir: Path, without: tuple[str, ...] = ()) -> dict:
    """The run's primary panel, frequency profile, every family's backtests, future forecasts and stats.

    ``without``: families left out, as if ``training.families`` had not listed them (model_selection then
    sees exactly what a run without them would have given it: the families are fitted independently)."""
    data = run_dir / "data"
    profile = json.loads((data / "08_reporting" / "frequency_profile.json").read_text())
    families = sorted(p.name for p in (data / "07_model_output").iterdir()
                      if (p / "backtest_forecasts.parquet").exists())
    unknown = sorted(set(without) - set(families))
    if unknown:
        raise SystemExit(f"--without {','.join(without)}: {unknown} not trained in this run; trained: {families}")
    families = [f for f in families if f not in without]
    return {
        "panel": pd.read_parquet(data / "03_primary" / "primary_panel.parquet"),
        "profile": profile,
        "backtests": {f: pd.read_parquet(data / "07_model_output" / f / "backtest_forecasts.parquet") for f in families},
        "forecasts": {f: pd.read_parquet(data / "07_model_output" / f / "forecasts.parquet") for f in families},
        "stats": {f: json.loads((data / "08_reporting" / f / "model_stats.json").read_text()) for f in families},
    }


def route(run: dict, selection: dict, levels: list[int], combine: str = "median") -> pd.DataFrame:
    """The panel's future forecasts under ``selection``: each series' family, or the median of the members (or,
    with ``combine="mean"``, their mean: what ``ensemble_members.py`` compares, not what the product serves)."""
    values = ["mean", *interval_columns(levels)]
    frames = []
    for series_id, model in selection["choice"].items():
        members = selection["ensemble_members"] if model == nodes.ENSEMBLE else [model]
        parts = [run["forecasts"][m].loc[lambda f: f["series_id"] == series_id, ["series_id", "timestamp", *values]]
                 for m in members]
        frame = parts[0] if len(parts) == 1 else (
            getattr(pd.concat(parts).groupby(["series_id", "timestamp"], as_index=False)[values], combine)())
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def score(forecasts: pd.DataFrame, test: pd.DataFrame, panel: pd.DataFrame, m: int, levels: list[int]) -> dict:
    """M4-style means over series: sMAPE, MASE (m), OWA against Naive2, and interval coverage / MSIS."""
    joined = test.merge(forecasts, on=["series_id", "timestamp"], how="inner")
    insamples = {key: group.to_numpy(float) for key, group in panel.groupby("series_id", sort=False)["value"]}
    rows = []
    for series_id, rows_ in joined.groupby("series_id", sort=False):
        insample = insamples[series_id]
        y, yhat = rows_["value"].to_numpy(float), rows_["mean"].to_numpy(float)
        m_eff = m if len(insample) > m else 1
        naive2 = metrics.naive2(insample, len(y), m_eff)
        if not np.isfinite(naive2).all():  # seasonal indices undefined (e.g. a season of zeros): plain naive
            naive2 = np.full(len(y), insample[-1])
        observed = ~np.isnan(y)  # a missing actual (NN5, ILINet) scores nothing; positions keep their step
        if not observed.any():
            continue
        rows_, y, yhat, naive2 = rows_[observed], y[observed], yhat[observed], naive2[observed]
        row = {"series_id": series_id, "smape": metrics.smape(y, yhat), "mase": metrics.mase(y, yhat, insample, m_eff),
               "smape_naive2": metrics.smape(y, naive2), "mase_naive2": metrics.mase(y, naive2, insample, m_eff)}
        for level in levels:
            lo, hi = rows_[f"lo-{level}"].to_numpy(float), rows_[f"hi-{level}"].to_numpy(float)
            row[f"coverage-{level}"] = metrics.coverage(y, lo, hi)
            row[f"msis-{level}"] = metrics.msis(y, lo, hi, insample, m_eff, alpha=1 - level / 100)
        rows.append(row)
    table = pd.DataFrame(rows)
    means = table.drop(columns="series_id").mean(numeric_only=True)
    result = {k: float(v) for k, v in means.items()}
    result["owa"] = metrics.owa(result["smape"], result["mase"], result["smape_naive2"], result["mase_naive2"])
    result["n_series"] = int(len(table))
    result["n_series_without_mase"] = int(table["mase"].isna().sum())  # no seasonal variation in training
    return result


def _shipped() -> dict:
    """The shipped ``model_selection`` parameters (conf/base)."""
    return yaml.safe_load((ROOT / "conf" / "base" / "parameters_model_selection.yml").read_text())["model_selection"]


def settings_grid(base: dict) -> dict[str, dict]:
    """Named model_selection settings to compare: the shipped one and its main alternatives."""
    grid = {"shipped": base}
    for preference in ("ties", "always", "none"):  # who wins a tie between the ensemble and a single family
        setting = copy.deepcopy(base)
        setting["ensemble"] = {**setting["ensemble"], "preference": preference}
        grid[f"shipped, ensemble.preference={preference}"] = setting
    for metric, per_series, margin, top_k in itertools.product(
            ("owa", "smape", "mase"), (True, False), (0.0, 0.1, 0.25), (None, 2, 3)):
        if not per_series and margin:
            continue
        setting = copy.deepcopy(base)
        setting.update(primary_metric=metric, per_series=per_series, per_series_margin=margin)
        setting["ensemble"] = {**setting["ensemble"], "top_k": top_k}
        grid[f"{metric} per_series={per_series} margin={margin} top_k={top_k}"] = setting
    return grid


def fixed_ensembles(run: dict, ensembles: list[str]) -> dict[str, dict]:
    """Selections that give every series the median of fixed members (``all``: every family but seasonal
    naive), routed exactly as a chosen ensemble is: what a different ensemble rule would have delivered."""
    families = [f for f in run["forecasts"] if f != "seasonal_naive"]
    series = list(dict.fromkeys(run["panel"]["series_id"]))
    out = {}
    for spec in ensembles:
        members = families if spec == "all" else spec.split(",")
        unknown = sorted(set(members) - set(run["forecasts"]))
        if unknown:
            raise SystemExit(f"--ensembles {spec!r}: {unknown} not trained in this run; trained: {sorted(run['forecasts'])}")
        out[f"median of {','.join(members)}"] = {"choice": {sid: nodes.ENSEMBLE for sid in series},
                                                 "ensemble_members": members}
    return out


def replay(run_dir: Path, test_path: Path, settings: dict[str, dict] | None = None,
           ensembles: list[str] | None = None, without: tuple[str, ...] = ()) -> pd.DataFrame:
    run = load_run(run_dir, without)
    profile = run["profile"]
    levels, m = list(profile["levels"]), int(profile["season_length"])
    panel_params = {k: profile[k] for k in ("freq", "horizon", "levels", "season_length")}
    test = pd.read_csv(test_path, parse_dates=["timestamp"], dtype={"series_id": str})
    test["value"] = test["value"].astype(float)
    results = {}
    families = {f: score(run["forecasts"][f], test, run["panel"], m, levels) for f in run["forecasts"]}
    for name, result in families.items():
        results[f"family {name}"] = result
    for name, setting in (settings or settings_grid(_shipped())).items():
        candidates = nodes.build_candidate_backtests(setting["ensemble"], panel_params, run["panel"], **run["backtests"])
        scores = nodes.score_candidates(candidates, run["panel"], panel_params)
        selection, _ = nodes.select_models(scores, setting, run["panel"], **run["stats"])
        result = score(route(run, selection, levels), test, run["panel"], m, levels)
        result["mix"] = json.dumps(selection["choice_counts"])
        result["members"] = ",".join(selection["ensemble_members"])
        results[name] = result
    for name, selection in fixed_ensembles(run, ensembles or []).items():
        results[name] = score(route(run, selection, levels), test, run["panel"], m, levels)
    table = pd.DataFrame(results).T
    return table.sort_values("owa")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="working directory of a finished kedro run")
    parser.add_argument("--test", type=Path, required=True, help="long CSV series_id,timestamp,value of the test part")
    parser.add_argument("--out", type=Path, help="write the table as CSV here")
    parser.add_argument("--ensembles", nargs="*", default=[], metavar="MEMBERS",
                        help="also score fixed median ensembles, e.g. all arima,intermittent,lstm")
    parser.add_argument("--grid", choices=("full", "preference"), default="full",
                        help="preference: only the shipped setting with each ensemble.preference (seconds)")
    parser.add_argument("--without", default="", metavar="FAMILIES",
                        help="replay as if these families (comma-separated) had not been trained, e.g. lightgbm")
    args = parser.parse_args(argv)
    without = tuple(f for f in args.without.split(",") if f)
    grid = settings_grid(_shipped())
    if args.grid == "preference":
        grid = {name: setting for name, setting in grid.items() if name.startswith("shipped")}
    table = replay(args.run_dir, args.test, settings=grid, ensembles=args.ensembles, without=without)
    columns = ["owa", "smape", "mase", "coverage-80", "coverage-95", "msis-95", "mix", "members"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table[[c for c in columns if c in table]].to_string(float_format=lambda v: f"{v:.3f}"))
    if args.out:
        table.to_csv(args.out)


if __name__ == "__main__":
    main()
