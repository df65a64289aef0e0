"""Peak memory against panel size: whole-panel ``kedro run`` vs the partition-by-partition run (issue 14, item 2).

The panels are SYNTHETIC, made by resampling real M3 series with a level factor and noise (``scale.py``'s
``synthetic_panel``: real lengths and shapes). Per size, in a fresh project folder (``scale.make_workdir``):

1. ``data_processing`` then ``feature_engineering``: ``kedro run --pipeline <stage>`` (the whole panel in one
   process) and ``python -m ts_kedro.orchestration partitioned --pipeline <stage>`` on the same raw CSV;
2. with ``--day-n``: Day 0 of ``seasonal_naive`` (``kedro run``), the last point of every series dropped into
   ``data/01_raw/incoming/`` and ingested (``kedro run --pipeline ingestion``), then inference measured whole
   (``kedro run --pipeline inference``, after the history's data processing inside ingestion) and partitioned
   (``partitioned --pipeline inference``: the history's data processing and the forecast per partition).

Measured per run (``scale.measured``): wall time, CPU seconds, peak RSS of the largest process and of the tree.
The partitioned outputs are compared with the whole run's (primary panel, feature panel, forecasts equal).

    nice -n 5 .venv/bin/python benchmarks/partitioned_memory.py --sizes 10000,40000 --rows-per-partition 500000

``--ingestion`` measures Day-N ingestion alone: data processing of the panel minus its last two points (the Day-0
``validated_panel``), a first ingestion of the second-to-last point (it seeds the history store), then the last
point ingested three ways from copies of that same state: the shipped ``kedro run --pipeline ingestion`` (checks
against the store's ``HistoryIndex``, then the history's data processing on the whole history), the bounded
``partitioned --pipeline ingestion`` (no whole history, no Day-0 panel loaded), and, with ``--before <folder>``
(a ``git archive`` of an earlier commit's ``src`` and ``conf``), that commit's ``kedro run --pipeline ingestion``.
The three stores must end equal.

``--rerun-inference`` measures the partitioned inference again in the folders of an earlier ``--day-n`` run (after
a change to inference) and compares its forecasts with that run's whole-panel forecasts (the first version).

Output: ``benchmarks/results/partitioned_memory_<source>_<sizes>.json`` and a markdown table on stdout for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from day_n_replay import source_description  # noqa: E402
from scale import SOURCES, make_workdir, measured, split_new_steps, synthetic_panel  # noqa: E402

PYTHON = sys.executable


def _env(workdir: Path, families: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "TS_KEDRO_FAMILIES": families,
            "KEDRO_DISABLE_TELEMETRY": "true"}


def _synthetic_project(workdir: Path, source: str, n_series: int, new_steps: int):
    """A fresh project folder whose raw CSV is the SYNTHETIC panel minus the last ``new_steps`` points per series.

    Returns the Day-0 part, the held-back points, the raw file and the ``kedro run --params`` text.
    """
    _, freq, horizon = SOURCES[source]
    make_workdir(workdir, "local", 2)
    day0, held_back = split_new_steps(synthetic_panel(source, n_series), new_steps)
    raw = workdir / "data" / "01_raw" / "panel.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    day0.to_csv(raw, index=False)
    # relative: the commands run in the folder, and a copy of it (--ingestion) reads its own files
    return day0, held_back, raw, f"raw_panel_path=data/01_raw/panel.csv,panel.freq={freq},panel.horizon={horizon}"


def run_size(n_series: int, source: str, rows_per_partition: int, day_n: bool, workroot: Path) -> dict:
    workdir = workroot / f"partitioned_{source}_{n_series}"
    day0, drop, raw, params = _synthetic_project(workdir, source, n_series, 1)
    env = _env(workdir, "seasonal_naive")
    kedro = [PYTHON, "-m", "kedro", "run", "--params", params]
    parted = [PYTHON, "-m", "ts_kedro.orchestration", "partitioned", "--rows-per-partition", str(rows_per_partition),
              "--params", *params.split(",")]
    result = {"source": source, "n_series": n_series, "rows": int(len(day0)), "raw_mb": round(raw.stat().st_size / 2**20, 1),
              "rows_per_partition": rows_per_partition}
    primary = workdir / "data" / "03_primary" / "primary_panel.parquet"
    result["data_processing_whole"] = measured([*kedro, "--pipeline", "data_processing"], workdir, env, "dp_whole.log")
    whole = pd.read_parquet(primary)
    result["data_processing_partitioned"] = measured([*parted, "--pipeline", "data_processing"], workdir, env,
                                                     "dp_partitioned.log")
    summary = json.loads((workdir / "dp_partitioned.log").read_text().strip().splitlines()[-1])
    result["partitions"] = summary["partitions"]
    result["primary_equal"] = bool(whole.astype({"series_id": str}).equals(
        pd.read_parquet(primary).astype({"series_id": str})))
    del whole
    features = workdir / "data" / "04_feature" / "feature_panel.parquet"
    result["feature_engineering_whole"] = measured([*kedro, "--pipeline", "feature_engineering"], workdir, env,
                                                   "fe_whole.log")
    whole = pd.read_parquet(features)
    result["feature_engineering_partitioned"] = measured([*parted, "--pipeline", "feature_engineering"], workdir,
                                                         env, "fe_partitioned.log")
    result["features_equal"] = bool(whole.astype({"series_id": str}).equals(
        pd.read_parquet(features).astype({"series_id": str})))
    del whole
    if day_n:
        result["day0_seasonal_naive"] = measured(kedro, workdir, env, "day0.log")
        incoming = workdir / "data" / "01_raw" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        drop.to_csv(incoming / "batch_0001.csv", index=False)
        result["ingestion"] = measured([*kedro, "--pipeline", "ingestion"], workdir, env, "ingestion.log")
        result["inference_whole"] = measured([*kedro, "--pipeline", "inference"], workdir, env, "inference_whole.log")
        forecasts = workdir / "data" / "07_model_output" / "champion_forecasts.parquet"
        first = pd.read_parquet(sorted(forecasts.iterdir())[-1] / "champion_forecasts.parquet")
        result["inference_partitioned"] = measured([*parted, "--pipeline", "inference"], workdir, env,
                                                   "inference_partitioned.log")
        second = pd.read_parquet(sorted(forecasts.iterdir())[-1] / "champion_forecasts.parquet")
        result["forecasts_equal"] = bool(first.astype({"series_id": str}).equals(second.astype({"series_id": str})))
    return result


def rerun_inference(n_series: int, source: str, rows_per_partition: int, workroot: Path) -> dict:
    """The partitioned inference again in an earlier ``--day-n`` run's folder; forecasts against its whole run's."""
    _, freq, horizon = SOURCES[source]
    workdir = workroot / f"partitioned_{source}_{n_series}"
    raw = workdir / "data" / "01_raw" / "panel.csv"
    params = f"raw_panel_path={raw},panel.freq={freq},panel.horizon={horizon}"
    command = [PYTHON, "-m", "ts_kedro.orchestration", "partitioned", "--rows-per-partition", str(rows_per_partition),
               "--params", *params.split(","), "--pipeline", "inference"]
    result = {"source": source, "n_series": n_series,
              "inference_partitioned": measured(command, workdir, _env(workdir, "seasonal_naive"),
                                                "inference_partitioned_rerun.log")}
    versions = sorted((workdir / "data" / "07_model_output" / "champion_forecasts.parquet").iterdir())
    whole, again = (pd.read_parquet(v / "champion_forecasts.parquet").astype({"series_id": str})
                    for v in (versions[0], versions[-1]))
    result["forecasts_equal"] = bool(whole.equals(again))
    return result


def run_ingestion(n_series: int, source: str, workroot: Path, before: Path | None) -> dict:
    """Day-N ingestion memory (see the module docstring, ``--ingestion``)."""
    seed_dir = workroot / f"ingestion_{source}_{n_series}"
    day0, drops, _, params = _synthetic_project(seed_dir, source, n_series, 2)
    first, last = split_new_steps(drops, 1)
    env = _env(seed_dir, "seasonal_naive")
    kedro = [PYTHON, "-m", "kedro", "run", "--params", params]
    result = {"source": source, "n_series": n_series, "rows": int(len(day0)), "new_rows": int(len(last))}
    result["data_processing"] = measured([*kedro, "--pipeline", "data_processing"], seed_dir, env, "dp.log")
    incoming = seed_dir / "data" / "01_raw" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    first.to_csv(incoming / "batch_0001.csv", index=False)
    result["seeding_ingestion"] = measured([*kedro, "--pipeline", "ingestion"], seed_dir, env, "seed.log")
    last.to_csv(incoming / "batch_0002.csv", index=False)
    runs = {"shipped": [*kedro, "--pipeline", "ingestion"],
            "bounded": [PYTHON, "-m", "ts_kedro.orchestration", "partitioned", "--pipeline", "ingestion",
                        "--params", *params.split(",")]}
    if before is not None:
        runs["before"] = [*kedro, "--pipeline", "ingestion"]
    stores = {}
    for name, command in runs.items():
        workdir = workroot / f"ingestion_{source}_{n_series}_{name}"
        if workdir.exists():
            shutil.rmtree(workdir)
        shutil.copytree(seed_dir, workdir)
        run_env = _env(workdir, "seasonal_naive")
        if name == "before":
            shutil.rmtree(workdir / "conf" / "base")
            shutil.copytree(before / "conf" / "base", workdir / "conf" / "base")
            run_env["PYTHONPATH"] = str(before / "src")
        result[f"ingestion_{name}"] = measured(command, workdir, run_env, f"ingestion_{name}.log")
        from ts_kedro.datasets.history_store import DuckDBHistoryDataset

        stores[name] = DuckDBHistoryDataset(str(workdir / "data" / "02_intermediate" / "history.duckdb")).load()
    result["stores_equal"] = all(stores["shipped"].equals(frame) for frame in stores.values())
    result["store_rows"] = int(len(stores["shipped"]))
    return result


def markdown(results: list[dict]) -> str:
    lines = ["| series | rows | raw CSV MB | partitions | step | whole: wall s / peak MB | partitioned: wall s / peak MB | equal |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        steps = [("data processing", "data_processing_whole", "data_processing_partitioned", "primary_equal"),
                 ("features", "feature_engineering_whole", "feature_engineering_partitioned", "features_equal"),
                 ("inference (Day N)", "inference_whole", "inference_partitioned", "forecasts_equal")]
        for label, whole, parted, equal in steps:
            if whole in r:
                lines.append(f"| {r['n_series']:,} | {r['rows']:,} | {r['raw_mb']} | {r['partitions']} | {label} | "
                             f"{r[whole]['wall_s']} / {r[whole]['peak_rss_mb_max_process']:,} | "
                             f"{r[parted]['wall_s']} / {r[parted]['peak_rss_mb_max_process']:,} | {r[equal]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,40000")
    parser.add_argument("--source", default="m3_monthly", choices=sorted(SOURCES))
    parser.add_argument("--rows-per-partition", type=int, default=500_000)
    parser.add_argument("--day-n", action="store_true", help="also Day 0 (seasonal naive), ingestion and inference")
    parser.add_argument("--rerun-inference", action="store_true",
                        help="only the partitioned inference again, in the folders of an earlier --day-n run")
    parser.add_argument("--ingestion", action="store_true",
                        help="only Day-N ingestion: shipped vs bounded (and --before) on copies of one seeded store")
    parser.add_argument("--before", default=None,
                        help="folder holding an earlier commit's src/ and conf/ (git archive) for --ingestion")
    parser.add_argument("--workroot", default=str(ROOT / "benchmarks" / "_scale_work"))
    args = parser.parse_args(argv)
    if args.ingestion:
        results = [run_ingestion(int(size), args.source, Path(args.workroot),
                                 Path(args.before).resolve() if args.before else None)
                   for size in args.sizes.split(",")]
        out = ROOT / "benchmarks" / "results" / f"ingestion_memory_{args.source}_{args.sizes.replace(',', '_')}.json"
        out.write_text(json.dumps({"measured": source_description(), "results": results}, indent=2))
        print("| series | history rows | new rows | " + " | ".join(
            f"{name}: wall s / peak MB" for name in ("before", "shipped", "bounded")) + " | stores equal |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            cells = [f"{r[k]['wall_s']} / {r[k]['peak_rss_mb_max_process']:,}" if k in r else "-"
                     for k in ("ingestion_before", "ingestion_shipped", "ingestion_bounded")]
            print(f"| {r['n_series']:,} | {r['store_rows']:,} | {r['new_rows']:,} | " + " | ".join(cells)
                  + f" | {r['stores_equal']} |")
        return
    if args.rerun_inference:
        results = [rerun_inference(int(size), args.source, args.rows_per_partition, Path(args.workroot))
                   for size in args.sizes.split(",")]
        out = ROOT / "benchmarks" / "results" / f"partitioned_inference_rerun_{args.source}_{args.sizes.replace(',', '_')}.json"
        out.write_text(json.dumps({"measured": source_description(), "results": results}, indent=2))
        for r in results:
            print(f"| {r['n_series']:,} | {r['inference_partitioned']['wall_s']} / "
                  f"{r['inference_partitioned']['peak_rss_mb_max_process']:,} | {r['forecasts_equal']} |")
        return
    results = [run_size(int(size), args.source, args.rows_per_partition, args.day_n, Path(args.workroot))
               for size in args.sizes.split(",")]
    out = ROOT / "benchmarks" / "results" / f"partitioned_memory_{args.source}_{args.sizes.replace(',', '_')}.json"
    out.write_text(json.dumps({"measured": source_description(), "results": results}, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
