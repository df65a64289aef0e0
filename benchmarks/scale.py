"""Scale benchmark: the Day-0 ``kedro run`` and a Day-N inference cycle on 1,000 to 100,000 series, local vs Dask.

The panels are SYNTHETIC, made by resampling real series: series ``i`` is a real M3 series (``--source``,
default M3 yearly from ``../shared/data/m3``) drawn at random with replacement, with its real timestamps and
length, scaled by a random level factor (log-normal) and with Gaussian noise of a fraction of its own
step-to-step spread added, so that every synthetic series has a real length and shape but no two are equal.

Per size and mode (``local``: ``orchestration.per_series.cluster: null``, joblib processes; ``dask``: a local
2-worker Dask cluster, ``cluster: local`` with ``local_n_workers: 2``) it runs, each in a fresh working folder
with its own conf copy, data/ and MLflow store, exactly what an operator runs:

1. Day 0: ``kedro run`` (the default pipeline: data processing, features, backtests and fits of the fast
   families, ``TS_KEDRO_FAMILIES``, model selection, registration, reporting) on the history minus its last
   ``--new-steps`` points per series;
2. Day N: those points dropped into ``data/01_raw/incoming/`` and ``kedro run --pipeline ingestion`` then
   ``kedro run --pipeline inference`` (the champion from the registry, conditioned on the new points,
   forecasts the next horizon). Monitoring (drift) is not part of this cycle.

Measured per run: wall time, CPU seconds of the whole process tree (``getrusage`` of the waited children:
the kedro process, its joblib workers and the Dask nanny/worker processes) per series, and peak RSS of the
largest single process and of the whole tree (sampled twice a second). statsforecast (SeasonalNaive, AutoETS,
AutoTheta, ``n_jobs`` = cores) forecasts the same Day-0 panel in its own process for reference: fits and one
forecast only, no backtest, no selection.

    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 1000 --modes local,dask
    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 10000 --modes local --no-statsforecast

statsforecast runs the peers of the chosen families only (SeasonalNaive, AutoETS, AutoTheta for ``seasonal_naive``,
``ets``, ``theta``), so a ``--families seasonal_naive`` run compares like with like.

Output: ``benchmarks/results/scale_<size>_<mode>.json`` (``..._<families>.json`` for other than the default fast
families; each names the commit it measured and whether src/ or conf/ had uncommitted changes) and a markdown table on stdout for docs/benchmarks.md.
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

from day_n_replay import source_description  # the commit (or snapshot) measured, and uncommitted changes
from matrix import _watch_memory

SOURCES = {  # name -> (file under ../shared/data, panel.freq, panel.horizon): M3's own frequencies and horizons
    "m3_yearly": ("m3/M3_yearly_train_long.csv", "YS", 6),  # dataset fact (M3 yearly horizon)
    "m3_quarterly": ("m3/M3_quarterly_train_long.csv", "QS", 8),  # dataset fact (M3 quarterly horizon)
    "m3_monthly": ("m3/M3_monthly_train_long.csv", "MS", 18),  # dataset fact (M3 monthly horizon)
}
FAST_FAMILIES = "seasonal_naive,ets,theta"
LEVEL_SIGMA = 0.5     # spread of the log level factor: synthetic series span about e^(+-1) of the real level
NOISE_FRACTION = 0.1  # noise sd as a fraction of the real series' step-to-step standard deviation


def synthetic_panel(source: str, n_series: int, seed: int = 0) -> pd.DataFrame:
    """``n_series`` series resampled from the real ``source`` series with a level factor and noise (synthetic)."""
    path, _, _ = SOURCES[source]
    real = pd.read_csv(SHARED / path, parse_dates=["timestamp"], dtype={"series_id": str})
    real = real.sort_values(["series_id", "timestamp"], kind="stable")
    groups = {sid: g for sid, g in real.groupby("series_id", sort=True)}
    ids = list(groups)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=n_series)
    levels = np.exp(rng.normal(0.0, LEVEL_SIGMA, size=n_series))
    frames = []
    for i, (pick, level) in enumerate(zip(picks, levels)):
        group = groups[ids[pick]]
        values = group["value"].to_numpy(float)
        spread = np.std(np.diff(values)) if len(values) > 1 else 0.0
        noisy = level * (values + rng.normal(0.0, NOISE_FRACTION * spread, size=len(values)))
        frames.append(pd.DataFrame({"series_id": f"syn{i:06d}_{ids[pick]}", "timestamp": group["timestamp"].to_numpy(),
                                    "value": noisy}))
    return pd.concat(frames, ignore_index=True)


def split_new_steps(panel: pd.DataFrame, new_steps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Day-0 history, the last ``new_steps`` points of every series: the Day-N drop)."""
    from_end = panel.groupby("series_id").cumcount(ascending=False)
    return panel[from_end >= new_steps].reset_index(drop=True), panel[from_end < new_steps].reset_index(drop=True)


def make_workdir(workdir: Path, mode: str, dask_workers: int) -> None:
    """A fresh project folder: conf copy (no conf/local of this checkout) and, for ``dask``, the cluster setting."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"))
    (workdir / "conf" / "local").mkdir()
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "src").mkdir()  # the project is installed; Kedro only checks that a source folder exists
    per_series = {"cluster": "local", "local_n_workers": dask_workers} if mode == "dask" else {"cluster": None}
    (workdir / "conf" / "local" / "orchestration.yml").write_text(
        yaml.safe_dump({"orchestration": {"per_series": per_series}})
    )


def measured(command: list[str], workdir: Path, env: dict[str, str], log_name: str) -> dict:
    """Run ``command``; wall time, CPU seconds of its whole (waited) process tree, peak RSS (MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(workdir / log_name, "w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak_one, peak_tree = _watch_memory(process)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed (exit {process.returncode}): see {workdir / log_name}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mb_max_process": round(peak_one),
            "peak_rss_mb_tree": round(peak_tree)}


def run_cycle(workdir: Path, day0: pd.DataFrame, drop: pd.DataFrame, freq: str, horizon: int, families: str) -> dict:
    """Day 0 then the Day-N ingestion + inference, in ``workdir``."""
    raw = workdir / "train.csv"
    day0.to_csv(raw, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "TS_KEDRO_FAMILIES": families,
           "TS_KEDRO_CONF_SOURCE": str(workdir / "conf"), "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    kedro = str(Path(sys.executable).parent / "kedro")
    params = ["--params", f"raw_panel_path={raw},panel.freq={freq},panel.horizon={horizon}"]
    result = {"day0": measured([kedro, "run", *params], workdir, env, "day0.log")}
    incoming = workdir / "data" / "01_raw" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    drop.to_csv(incoming / "day1.csv", index=False)
    ingestion = measured([kedro, "run", "--pipeline", "ingestion", *params], workdir, env, "ingestion.log")
    inference = measured([kedro, "run", "--pipeline", "inference", *params], workdir, env, "inference.log")
    result["day_n"] = {
        "wall_s": round(ingestion["wall_s"] + inference["wall_s"], 1),
        "cpu_s": round(ingestion["cpu_s"] + inference["cpu_s"], 1),
        "peak_rss_mb_max_process": max(ingestion["peak_rss_mb_max_process"], inference["peak_rss_mb_max_process"]),
        "peak_rss_mb_tree": max(ingestion["peak_rss_mb_tree"], inference["peak_rss_mb_tree"]),
        "ingestion": ingestion, "inference": inference,
    }
    versions = sorted((workdir / "data" / "07_model_output" / "champion_forecasts.parquet").iterdir())
    champion = pd.read_parquet(versions[-1] / "champion_forecasts.parquet")
    result["day_n"]["forecast_series"] = int(champion["series_id"].nunique())
    return result


def statsforecast_child(panel_csv: str, freq: str, horizon: int, season: int, families: str = FAST_FAMILIES) -> None:
    """(In its own process) statsforecast's peers of ``families`` on the Day-0 panel: fit + one forecast."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    panel = pd.read_csv(panel_csv, parse_dates=["timestamp"], dtype={"series_id": str})
    panel = panel.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    peers = {"seasonal_naive": SeasonalNaive, "ets": AutoETS, "theta": AutoTheta}
    models = [peers[name](season_length=season) for name in families.split(",") if name in peers]
    StatsForecast(models=models, freq=freq, n_jobs=-1).forecast(df=panel, h=horizon, level=[80, 95])


def run_statsforecast(workdir: Path, freq: str, horizon: int, season: int, families: str) -> dict:
    command = [sys.executable, __file__, "--statsforecast-child", str(workdir / "train.csv"), freq, str(horizon),
               str(season), families]
    return measured(command, workdir, {**os.environ}, "statsforecast.log")


def markdown(results: list[dict]) -> str:
    head = ("| series | mode | Day 0 wall s | Day 0 CPU s/series | Day 0 peak RSS MB (largest process / tree) | "
            "Day N wall s | Day N CPU s/series | Day N peak RSS MB (largest / tree) | statsforecast wall s | "
            "statsforecast CPU s/series |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        n, d0, dn, sf = r["n_series"], r["day0"], r["day_n"], r.get("statsforecast")
        lines.append(
            f"| {n:,} | {r['mode']} | {d0['wall_s']:.0f} | {d0['cpu_s'] / n:.3f} | "
            f"{d0['peak_rss_mb_max_process']} / {d0['peak_rss_mb_tree']} | {dn['wall_s']:.0f} | "
            f"{dn['cpu_s'] / n:.3f} | {dn['peak_rss_mb_max_process']} / {dn['peak_rss_mb_tree']} | "
            + (f"{sf['wall_s']:.0f} | {sf['cpu_s'] / n:.3f} |" if sf else "- | - |")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--statsforecast-child":
        statsforecast_child(argv[1], argv[2], int(argv[3]), int(argv[4]), *argv[5:6])
        return
    from ts_kedro.frequency import season_length_for

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated series counts, e.g. 1000,10000")
    parser.add_argument("--modes", default="local,dask", help="local and/or dask (a local 2-worker cluster)")
    parser.add_argument("--source", default="m3_yearly", choices=sorted(SOURCES))
    parser.add_argument("--families", default=FAST_FAMILIES)
    parser.add_argument("--new-steps", type=int, default=1, help="Day-N points per series")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--no-statsforecast", action="store_true")
    parser.add_argument("--workroot", default=str(ROOT / "benchmarks" / "_scale_work"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _, freq, horizon = SOURCES[args.source]
    season = season_length_for(freq)
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n_series in (int(s) for s in args.sizes.split(",")):
        panel = synthetic_panel(args.source, n_series, args.seed)
        day0, drop = split_new_steps(panel, args.new_steps)
        statsforecast_done = args.no_statsforecast
        for mode in args.modes.split(","):
            workdir = Path(args.workroot) / f"{n_series}_{mode}"
            make_workdir(workdir, mode, args.dask_workers)
            print(f"{n_series} series ({args.source}, synthetic), {mode}: Day 0 + Day N ...", flush=True)
            result = {"n_series": n_series, "mode": mode, "source": args.source, "synthetic": True,
                      "families": args.families, "freq": freq, "horizon": horizon, "new_steps": args.new_steps,
                      "points": len(day0), "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0],
                      **run_cycle(workdir, day0, drop, freq, horizon, args.families)}
            if not statsforecast_done:
                result["statsforecast"] = run_statsforecast(workdir, freq, horizon, season, args.families)
                statsforecast_done = True
            result["load_avg_at_end"] = os.getloadavg()[0]
            result["source"] = source_description()
            suffix = "" if args.families == FAST_FAMILIES else "_" + args.families.replace(",", "+")
            (results_dir / f"scale_{n_series}_{mode}{suffix}.json").write_text(json.dumps(result, indent=2))
            print(json.dumps(result), flush=True)
            results.append(result)
    print(markdown(results))


if __name__ == "__main__":
    main()
