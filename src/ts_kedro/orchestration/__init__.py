"""Prefect 3 orchestration of the Kedro pipelines: node/namespace tasks, the Day-0/Day-N cycle, alert delivery."""
