"""One-process scheduler: serve `ts_kedro_cycle` on the configured cron (`python -m ts_kedro.orchestration.serve`)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ts_kedro.orchestration.config import load_orchestration_config
from ts_kedro.orchestration.flows import ts_kedro_cycle
from ts_kedro.orchestration.kedro_prefect import resolve_project_path

logger = logging.getLogger(__name__)


def build_deployment(project_path: str | Path | None = None, env: str | None = None, cron: str | None = None):
    """The served deployment of `ts_kedro_cycle`: name, cron and timezone from orchestration.deployment."""
    from prefect.client.schemas.schedules import CronSchedule

    root = resolve_project_path(project_path)
    deployment = load_orchestration_config(root, env).deployment
    return ts_kedro_cycle.to_deployment(
        name=deployment.name,
        schedules=[CronSchedule(cron=cron or deployment.cron, timezone=deployment.timezone)],
        parameters={"project_path": str(root), "env": env},
        tags=["ts_kedro"],
    )


def main(argv: list[str] | None = None) -> None:
    """Register the deployment (name, cron, timezone from orchestration.deployment) and run it until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project-path", default=None, help="Kedro project root (default: from the working dir)")
    parser.add_argument("--env", default=None, help="Kedro environment")
    parser.add_argument("--cron", default=None, help="override orchestration.deployment.cron")
    args = parser.parse_args(argv)

    from prefect import serve

    deployment = build_deployment(args.project_path, args.env, args.cron)
    logger.info("serving ts_kedro_cycle as '%s' (%s)", deployment.name, deployment.schedules)
    # prefect.serve == flow.serve for one deployment: registers it, then polls for its scheduled runs.
    serve(deployment)


if __name__ == "__main__":
    main()
