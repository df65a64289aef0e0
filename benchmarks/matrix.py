"""The benchmark matrix: the Day-0 ``kedro run`` itself on real panels, scored on their test parts, beside peers.

One engine: for each dataset the training part is written as a long CSV, the project's Day-0 pipeline runs on
it in a fresh working directory (``kedro run`` with only ``raw_panel_path``, ``panel.freq`` and
``panel.horizon``; every other frequency-dependent value comes from the frequency profile), and the
``forecasts`` it writes are scored on the held-out test part. statsforecast's SeasonalNaive, AutoETS,
AutoARIMA (``approximation=True`` where the season is 24 or longer), AutoTheta and the mean of AutoETS and
AutoARIMA (the classic M3 combination) run on the same series and cores in the same run.

    .venv/bin/python benchmarks/matrix.py --datasets m3_yearly,m3_quarterly --every 4
    .venv/bin/python benchmarks/matrix.py --quick          # a few series of every dataset, minutes

Scores: sMAPE, MASE (m = the profile's season length, 1 where a series is shorter), OWA against Naive2, MSIS
and coverage of the 80 / 95 % intervals, each a mean over series (M4 aggregation); wall time and peak RSS of
the Kedro run (process and children) and of each peer. Output: ``benchmarks/results/<dataset>.json`` and a
markdown table on stdout for ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

from selection_replay import score  # noqa: E402  (the same scoring for ours and the peers)

from ts_kedro.frequency import derive_profile  # noqa: E402

LEVELS = [80, 95]


def _m3(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda part: pd.read_csv(SHARED / "m3" / f"M3_{name}_{part}_long.csv", parse_dates=["timestamp"],  # noqa: E731
                                    dtype={"series_id": str})
    return read("train"), read("test")


def _m4_hourly() -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda part: pd.read_csv(SHARED / "m4_hourly" / f"Hourly-{part}-long.csv", parse_dates=["timestamp"],  # noqa: E731
                                    dtype={"series_id": str})
    return read("train"), read("test")


# name -> (loader, panel.freq, panel.horizon)
DATASETS = {
    "m3_yearly": (lambda: _m3("yearly"), "YS", 6),
    "m3_quarterly": (lambda: _m3("quarterly"), "QS", 8),
    "m3_monthly": (lambda: _m3("monthly"), "MS", 18),
    "m4_hourly": (_m4_hourly, "h", 48),
}


def subset(train: pd.DataFrame, test: pd.DataFrame, every: int, limit: int | None):
    ids = list(dict.fromkeys(train["series_id"]))[::every]
    if limit:
        ids = ids[:limit]
    keep = set(ids)
    return train[train["series_id"].isin(keep)], test[test["series_id"].isin(keep)]


def run_kedro(workdir: Path, train: pd.DataFrame, freq: str, horizon: int, families: str | None) -> dict:
    """The Day-0 pipeline in ``workdir`` (its own conf copy, data/ and MLflow store); its forecasts and costs."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", workdir / "conf")
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    raw = workdir / "train.csv"
    train.to_csv(raw, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
           "TS_KEDRO_CONF_SOURCE": str(workdir / "conf"), "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    if families:
        env["TS_KEDRO_FAMILIES"] = families
    command = [str(Path(sys.executable).parent / "kedro"), "run", "--params",
               f"raw_panel_path={raw},panel.freq={freq},panel.horizon={horizon}"]
    started = time.perf_counter()
    with open(workdir / "run.log", "w") as log:
        process = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if process.returncode:
        raise RuntimeError(f"kedro run failed (exit {process.returncode}): see {workdir / 'run.log'}")
    versions = sorted((workdir / "data" / "07_model_output" / "forecasts.csv").iterdir())
    forecasts = pd.read_csv(versions[-1] / "forecasts.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    selection = json.loads((workdir / "data" / "08_reporting" / "model_selection.json").read_text())
    return {"forecasts": forecasts, "wall_s": wall, "peak_rss_mb_max_child": peak_mb,
            "choice_counts": selection["choice_counts"], "overall_model": selection["overall_model"],
            "ensemble_members": selection["ensemble_members"]}


def run_peers(train: pd.DataFrame, horizon: int, freq: str, season: int) -> dict[str, tuple[pd.DataFrame, float]]:
    """statsforecast peers on the same series; each a (forecasts in our columns, wall seconds) pair."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    frame = train.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    models = {"sf_seasonal_naive": SeasonalNaive(season_length=season, alias="sf_seasonal_naive"),
              "sf_autoets": AutoETS(season_length=season, alias="sf_autoets"),
              "sf_autoarima": AutoARIMA(season_length=season, approximation=season >= 24, alias="sf_autoarima"),
              "sf_autotheta": AutoTheta(season_length=season, alias="sf_autotheta")}
    results = {}
    for name, model in models.items():
        started = time.perf_counter()
        out = StatsForecast(models=[model], freq=freq, n_jobs=-1).forecast(df=frame, h=horizon, level=LEVELS)
        wall = time.perf_counter() - started
        out = out.reset_index() if "unique_id" not in out.columns else out
        renamed = {"unique_id": "series_id", "ds": "timestamp", name: "mean",
                   **{f"{name}-{side}-{lv}": f"{side}-{lv}" for lv in LEVELS for side in ("lo", "hi")}}
        results[name] = (out.rename(columns=renamed)[["series_id", "timestamp", "mean",
                                                      *[f"{s}-{lv}" for lv in LEVELS for s in ("lo", "hi")]]], wall)
    ets, arima = results["sf_autoets"][0], results["sf_autoarima"][0]
    combo = ets.copy()
    for column in ["mean", *[f"{s}-{lv}" for lv in LEVELS for s in ("lo", "hi")]]:
        combo[column] = (ets[column].to_numpy() + arima[column].to_numpy()) / 2
    results["sf_mean_ets_arima"] = (combo, results["sf_autoets"][1] + results["sf_autoarima"][1])
    return results


def benchmark(name: str, every: int, limit: int | None, families: str | None, workroot: Path) -> dict:
    loader, freq, horizon = DATASETS[name]
    train, test = subset(*loader(), every, limit)
    lengths = train.groupby("series_id").size()
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": LEVELS}, lengths)
    season = profile.season_length
    ours = run_kedro(workroot / name, train, freq, horizon, families)
    rows = {"ts_kedro (kedro run)": {**score(ours["forecasts"], test, train, season, LEVELS), "wall_s": ours["wall_s"],
                                     "peak_rss_mb": ours["peak_rss_mb_max_child"]}}
    for peer, (forecast, wall) in run_peers(train, horizon, freq, season).items():
        rows[peer] = {**score(forecast, test, train, season, LEVELS), "wall_s": wall}
    result = {"dataset": name, "freq": freq, "horizon": horizon, "season_length": season, "n_series": int(len(lengths)),
              "every": every, "selection": {k: ours[k] for k in ("choice_counts", "overall_model", "ensemble_members")},
              "scores": rows}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def markdown(result: dict) -> str:
    lines = [f"### {result['dataset']} ({result['n_series']} series, every {result['every']}th; freq "
             f"{result['freq']}, horizon {result['horizon']}, m = {result['season_length']})", "",
             "| model | sMAPE | MASE | OWA | MSIS-95 | cov-80 | cov-95 | wall s |", "|---|---|---|---|---|---|---|---|"]
    for model, s in result["scores"].items():
        lines.append(f"| {model} | {s['smape']:.3f} | {s['mase']:.3f} | {s['owa']:.3f} | {s['msis-95']:.2f} | "
                     f"{s['coverage-80']:.3f} | {s['coverage-95']:.3f} | {s['wall_s']:.0f} |")
    lines += ["", f"Selection: {result['selection']}", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--every", type=int, default=1, help="every n-th series (deterministic subset)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many series per dataset")
    parser.add_argument("--quick", action="store_true", help="12 series per dataset")
    parser.add_argument("--families", default=None, help="TS_KEDRO_FAMILIES for the kedro run (default: shipped)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "benchmarks")
    args = parser.parse_args(argv)
    limit = 12 if args.quick else args.limit
    for name in args.datasets.split(","):
        print(markdown(benchmark(name, args.every, limit, args.families, args.workdir)), flush=True)


if __name__ == "__main__":
    main()
