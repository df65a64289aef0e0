"""The ``ts-kedro`` command: registry operations (status, promote, rollback, history) outside a Kedro run.

    ts-kedro registry status   --name ts_kedro_panel [--tracking-uri URI] [--json]
    ts-kedro registry promote  --name ts_kedro_panel --version 3 [--champion-score S --challenger-score S]
                               [--margin 0.02] [--higher-is-better] [--metric smape] [--history-path PATH]
    ts-kedro registry rollback --name ts_kedro_panel [--history-path PATH]
    ts-kedro registry history  --name ts_kedro_panel [--json]
    ts-kedro registry repair   --name ts_kedro_panel [--history-path PATH]

A decision that a killed process left half done (alias moved, record not yet written) is finished by
the next promote, rollback or repair (see ts_kedro.registry.registry); ``status`` shows it meanwhile.

The tracking URI defaults to ``MLFLOW_TRACKING_URI``, else the project's ``sqlite:///mlflow.db``.
Exit status: 0 on success (also when a challenger is evaluated and not promoted), 1 when the operation
fails (unknown model, nothing to roll back, registry unreachable), 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ts-kedro", description="ts_kedro operations outside `kedro run`.")
    commands = parser.add_subparsers(dest="command", required=True)
    registry = commands.add_parser("registry", help="champion/challenger model registry (MLflow)")
    actions = registry.add_subparsers(dest="action", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--name", required=True, help="registered model name")
        sub.add_argument(
            "--tracking-uri",
            default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
            help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI or %(default)s)",
        )

    def history_path(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--history-path", help="append-only JSONL audit file (default: data/08_reporting/promotion_history.jsonl)"
        )

    status = actions.add_parser("status", help="champion, challenger, latest version and last decision")
    common(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    promote = actions.add_parser("promote", help="promote a version if it beats the champion by the margin")
    common(promote)
    history_path(promote)
    promote.add_argument("--version", type=int, required=True, help="candidate (challenger) version")
    promote.add_argument("--champion-score", type=float, help="champion's score on the recent windows")
    promote.add_argument("--challenger-score", type=float, help="candidate's score on the same windows")
    promote.add_argument("--margin", type=float, default=0.02, help="relative margin to beat (default %(default)s)")
    promote.add_argument("--higher-is-better", action="store_true", help="the score grows with quality")
    promote.add_argument("--metric", help="name of the score, for the history")

    rollback = actions.add_parser("rollback", help="restore the previous champion in one step")
    common(rollback)
    history_path(rollback)

    repair = actions.add_parser("repair", help="finish a decision a killed process left half done")
    common(repair)
    history_path(repair)

    history = actions.add_parser("history", help="every promotion decision and rollback, oldest first")
    common(history)
    history.add_argument("--json", action="store_true", help="one JSON record per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # imported late: `ts-kedro --help` should not pay for importing mlflow
    from mlflow.exceptions import MlflowException

    from ts_kedro.registry import registry

    explicit_history_path = getattr(args, "history_path", None)
    if explicit_history_path is None:
        args.history_path = registry.DEFAULT_HISTORY_PATH
    try:
        if args.action == "status":
            _print_status(registry.registry_status(args.name, args.tracking_uri), as_json=args.json)
        elif args.action == "promote":
            record = registry.promote_if_better(
                args.name, args.version, args.champion_score, args.challenger_score, args.margin,
                higher_is_better=args.higher_is_better, metric=args.metric, history_path=args.history_path,
                tracking_uri=args.tracking_uri,
            )
            print(record["reason"])
        elif args.action == "rollback":
            print(registry.rollback(args.name, history_path=args.history_path, tracking_uri=args.tracking_uri)["reason"])
        elif args.action == "repair":
            # without --history-path the interrupted decision's own file is completed
            repaired = registry.repair_pending(args.name, explicit_history_path, args.tracking_uri)
            print(f"finished half-done decision #{repaired['sequence']}: {repaired['reason']}" if repaired
                  else f"{args.name!r} has no half-done decision")
        elif args.action == "history":
            records = registry.read_history(args.name, args.tracking_uri)
            if not records:
                print(f"no promotion history for {args.name!r}")
            for record in records:
                print(json.dumps(record, sort_keys=True) if args.json
                      else f"#{record['sequence']} {record['time']} {record['event']}: {record['reason']}")
    except (registry.RegistryError, MlflowException) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        print(f"ts-kedro registry {args.action}: {message}", file=sys.stderr)
        return 1
    return 0


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return
    print(f"model {status['name']} at {status['tracking_uri']}: {status['n_versions']} version(s), latest {status['latest_version']}")
    for alias in ("champion", "challenger"):
        entry = status[alias]
        if entry is None:
            print(f"  {alias}: none")
            continue
        summary = ", ".join(f"{k}={v}" for k, v in sorted(entry["tags"].items()))
        print(f"  {alias}: version {entry['version']} (run {entry['run_id']}) {summary}")
    last = status["last_decision"]
    print(f"  last decision: {last['reason'] if last else 'none'}")
    pending = status.get("pending_decision")
    if pending:
        print(f"  HALF-DONE decision #{pending['sequence']} (a process was killed; the next promote, rollback "
              f"or `ts-kedro registry repair` finishes it): {pending['reason']}")


if __name__ == "__main__":
    sys.exit(main())
