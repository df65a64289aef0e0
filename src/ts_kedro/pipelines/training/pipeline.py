"""Training: one template instantiated per model family with ``namespace=<family>``."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families

from .nodes import backtest_model, describe_frequency_profile, evaluate_model, fit_model

SHARED_INPUTS = {"primary_panel"}
SHARED_PARAMETERS = {"params:panel", "params:backtest"}
#: families that learn from feature_engineering's origin-horizon rows (``<family>_model_input``) instead of
#: building their inputs from the panel in every fit
FEATURE_FAMILIES = {"lightgbm"}


def model_input_name(family: str) -> str:
    """The catalog name of the rows feature_engineering writes for a feature-based family."""
    return f"{family}_model_input"


def create_template(with_model_input: bool = False) -> Pipeline:
    """The per-family template; ``with_model_input``: the backtest and the fit also read ``model_input``, and
    the fit the horizon's known-in-advance covariates (``future_covariates``)."""
    extra = ["model_input"] if with_model_input else []
    fit_extra = [*extra, "future_covariates"] if with_model_input else []
    return Pipeline(
        [
            Node(
                backtest_model,
                inputs=["primary_panel", "params:model", "params:panel", "params:backtest", *extra],
                outputs=["backtest_forecasts", "backtest_timings"],
                name="backtest_model_node",
            ),
            Node(
                fit_model,
                inputs=["primary_panel", "params:model", "params:panel", "params:backtest", "backtest_forecasts",
                        *fit_extra],
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
    if family in FEATURE_FAMILIES:
        return Pipeline(create_template(with_model_input=True), namespace=family,
                        inputs={"primary_panel": "primary_panel", "model_input": model_input_name(family),
                                "future_covariates": "future_covariates_horizon"},
                        parameters=SHARED_PARAMETERS)
    return Pipeline(create_template(), namespace=family, inputs=SHARED_INPUTS, parameters=SHARED_PARAMETERS)


def future_covariates_node(panel: str = "primary_panel", output: str = "future_covariates_horizon") -> Node:
    """data_processing's check of the user's ``future_covariates`` against ``panel``'s series ends: the rows of the
    horizon the feature families forecast from (empty when no covariate is declared known in advance)."""
    from ts_kedro.pipelines.data_processing.nodes import select_future_covariates

    return Node(select_future_covariates, ["future_covariates", panel, "params:data_processing", "params:panel"],
                output, name=f"select_{output}_node")


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    """All enabled families (``training.families`` in parameters_training.yml, or TS_KEDRO_FAMILIES), and the
    frequency profile they were built from (a report); with a feature family, the horizon's known covariates."""
    families = families or enabled_families()
    nodes = [Node(describe_frequency_profile, inputs=["primary_panel", "params:panel", "params:backtest",
                                                      "params:monitoring"],
                  outputs="frequency_profile", name="describe_frequency_profile_node")]
    if FEATURE_FAMILIES & set(families):
        nodes.append(future_covariates_node())
    return sum((create_family_pipeline(family) for family in families), Pipeline(nodes))
