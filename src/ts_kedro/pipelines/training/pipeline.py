"""Training: one template instantiated per model family with ``namespace=<family>``."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families

from .nodes import backtest_model, describe_frequency_profile, evaluate_model, fit_model

SHARED_INPUTS = {"primary_panel"}
SHARED_PARAMETERS = {"params:panel", "params:backtest"}


def create_template() -> Pipeline:
    return Pipeline(
        [
            Node(
                backtest_model,
                inputs=["primary_panel", "params:model", "params:panel", "params:backtest"],
                outputs=["backtest_forecasts", "backtest_timings"],
                name="backtest_model_node",
            ),
            Node(
                fit_model,
                inputs=["primary_panel", "params:model", "params:panel", "params:backtest", "backtest_forecasts"],
                outputs=["model", "forecasts", "model_stats"],
                name="fit_model_node",
            ),
            Node(
                evaluate_model,
                inputs=["backtest_forecasts", "backtest_timings", "model_stats", "primary_panel", "params:panel"],
                outputs=["backtest_metrics", "metrics"],
                name="evaluate_model_node",
            ),
        ]
    )


def create_family_pipeline(family: str) -> Pipeline:
    return Pipeline(create_template(), namespace=family, inputs=SHARED_INPUTS, parameters=SHARED_PARAMETERS)


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    """All enabled families (``training.families`` in parameters_training.yml, or TS_KEDRO_FAMILIES), and the
    frequency profile they were built from (a report)."""
    profile = Pipeline([
        Node(describe_frequency_profile, inputs=["primary_panel", "params:panel", "params:backtest", "params:monitoring"],
             outputs="frequency_profile", name="describe_frequency_profile_node"),
    ])
    return sum((create_family_pipeline(family) for family in families or enabled_families()), profile)
