"""Project pipelines: every folder under pipelines/ is discovered; composites name the Day-0 and Day-N steps."""
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DAY0 = ("data_processing", "feature_engineering", "training", "model_selection", "reporting")
MODELLING = ("feature_engineering", "training", "model_selection", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((pipelines[name] for name in DAY0), Pipeline([]))
    # Day N, step 1: take in new batches and check them (the flow reads drift_summary to branch)
    pipelines["day_n"] = pipelines["ingestion"] + pipelines["monitoring"]
    # Day N, drift: retrain every family on the grown history, register a challenger, promote if it wins
    pipelines["retrain"] = Pipeline(
        sum((pipelines[name] for name in MODELLING), Pipeline([])),
        inputs={"primary_panel": "history_primary_panel"},
    )
    return pipelines
