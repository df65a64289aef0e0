"""Day N with drift: rebuild features, retrain every family on the grown history, register a challenger.

The Day-0 modelling pipelines with ``primary_panel`` remapped to the Day-N ``history_primary_panel``; the
model_selection pipeline then compares the challenger with the champion on the same recent window and
promotes it only when it wins by the configured margin.
"""
from kedro.pipeline import Pipeline

from ts_kedro.pipelines import feature_engineering, model_selection, reporting, training


def create_pipeline(**kwargs) -> Pipeline:
    modelling = (
        feature_engineering.create_pipeline()
        + training.create_pipeline()
        + model_selection.create_pipeline()
        + reporting.create_pipeline()
    )
    return Pipeline(modelling, inputs={"primary_panel": "history_primary_panel"})
