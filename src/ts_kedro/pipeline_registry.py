"""Project pipelines: every folder under pipelines/ is discovered; the default pipeline is Day 0."""
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DAY0 = ("data_processing", "feature_engineering", "training", "model_selection", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro 1.7 imports only the pipelines a run asks for, so __default__ is built only when all its parts are here.
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in DAY0):
        pipelines["__default__"] = sum((pipelines[name] for name in DAY0), Pipeline([]))
    return pipelines
