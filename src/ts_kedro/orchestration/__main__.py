"""Command line: run one Kedro pipeline, or one cycle, as a Prefect flow run now.

    python -m ts_kedro.orchestration run --pipeline data_processing [--grouping node] [--task-runner thread]
    python -m ts_kedro.orchestration cycle [--retrain]
    python -m ts_kedro.orchestration partitioned --pipeline data_processing|feature_engineering|ingestion|inference [--rows-per-partition N]

partitioned runs the pipeline one chunk of whole series at a time (memory follows the chunk; see
ts_kedro.orchestration.partitioned), in this process, without Prefect.

--retrain refits on this cycle (Day N) whatever drift and orchestration.cycle.retrain.every say.
The last line printed is the flow's JSON summary; the exit status is 1 when the flow run failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("grouping", "task_runner", "crossing_memory_datasets", "dask_address")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _runtime_params(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs parsed as `kedro run --params` parses them: values as YAML, and a dotted key nested
    (`panel.freq=D` -> `{"panel": {"freq": "D"}}`, merged into the `panel` parameters, not a new key
    named "panel.freq" that nothing reads)."""
    from omegaconf import OmegaConf

    dot_list = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--params expects key=value (a dotted key for a nested parameter, e.g. "
                             f"panel.freq=D), got {pair!r}")
        dot_list.append(f"{key.strip()}={value}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(dot_list)) if dot_list else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ts_kedro.orchestration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "cycle"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--project-path", default=None)
        cmd.add_argument("--env", default=None)
        cmd.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE")
        cmd.add_argument("--grouping", choices=["node", "namespace"], default=None)
        cmd.add_argument("--task-runner", choices=["sequential", "thread", "dask"], default=None)
        cmd.add_argument("--crossing-memory-datasets", choices=["persist", "fail"], default=None)
        cmd.add_argument("--dask-address", default=None)
        if name == "run":
            cmd.add_argument("--pipeline", default="__default__")
        else:
            cmd.add_argument("--retrain", action="store_true",
                             help="refit on this cycle whatever drift and orchestration.cycle.retrain.every say")
    part = sub.add_parser("partitioned")
    part.add_argument("--project-path", default=None)
    part.add_argument("--env", default=None)
    part.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE")
    part.add_argument("--pipeline", required=True, choices=["data_processing", "feature_engineering", "ingestion", "inference"],
                      help="ingestion: Day-N batches checked against the history store by query (not partitioned: "
                           "bounded by the batch); follow it with --pipeline inference")
    part.add_argument("--rows-per-partition", type=int, default=None,
                      help="rows per partition (whole series); default orchestration.partitioned.rows_per_partition")
    part.add_argument("--keep-partitions", action="store_true", default=None,
                      help="keep the partition files under orchestration.partitioned.work_dir")
    args = parser.parse_args(argv)
    if args.command == "partitioned":
        from ts_kedro.orchestration.partitioned import run_partitioned

        try:
            summary = run_partitioned(args.pipeline, project_path=args.project_path, env=args.env,
                                      runtime_params=_runtime_params(args.params) or None,
                                      rows_per_partition=args.rows_per_partition, keep_partitions=args.keep_partitions)
        except Exception as err:
            print(json.dumps({"status": "failed", "error": f"{type(err).__name__}: {err}"}))
            return 1
        print(json.dumps({"status": "completed", **summary}, default=str))
        return 0

    from ts_kedro.orchestration.flows import ts_kedro_cycle
    from ts_kedro.orchestration.kedro_prefect import bootstrap_before_flows, run_kedro_pipeline

    overrides = _overrides(args) or None
    params = _runtime_params(args.params) or None
    try:
        bootstrap_before_flows(args.project_path)  # Kedro's logging set up before Prefect's log worker runs
        if args.command == "run":
            summary = run_kedro_pipeline(args.pipeline, project_path=args.project_path, env=args.env,
                                         runtime_params=params, config_overrides=overrides)
        else:
            summary = ts_kedro_cycle(project_path=args.project_path, env=args.env, runtime_params=params,
                                     config_overrides=overrides, force_retrain=args.retrain)
    except Exception as err:  # the flow run is already recorded as Failed in Prefect; report and exit 1
        print(json.dumps({"status": "failed", "error": f"{type(err).__name__}: {err}"}))
        return 1
    print(json.dumps({"status": "completed", **summary}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
