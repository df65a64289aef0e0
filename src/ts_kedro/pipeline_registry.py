"""Project pipelines: every folder under pipelines/ is discovered; the default pipeline is Day 0."""
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    day0 = [name for name in ("data_processing", "feature_engineering", "training", "model_selection") if name in pipelines]
    pipelines["__default__"] = sum((pipelines[name] for name in day0), Pipeline([]))
    return pipelines
