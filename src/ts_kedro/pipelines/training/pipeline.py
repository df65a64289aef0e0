"""Training: one template instantiated per model family with ``namespace=<family>``."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families, project_parameters

from .nodes import backtest_model, describe_frequency_profile, evaluate_model, fit_model

SHARED_INPUTS = {"primary_panel"}
SHARED_PARAMETERS = {"params:panel", "params:backtest"}
#: families that learn from feature_engineering's origin-horizon rows (``<family>_model_input``) instead of
#: building their inputs from the panel in every fit
FEATURE_FAMILIES = {"lightgbm"}


def model_input_name(family: str) -> str:
    """The catalog name of the rows feature_engineering writes for a feature-based family."""
    return f"{family}_model_input"


def uses_covariates(family: str) -> bool:
    """Whether the family's class (``<family>.model.class`` in the parameters) has ``supports_covariates``: then
    its namespace reads the covariate declaration and the horizon's plan of the known-in-advance ones.

    Importing a family's class is cheap: torch, prophet and lightgbm are imported when a model is built.
    """
    from ts_kedro.forecasters import get_forecaster_class

    spec = (project_parameters().get(family) or {}).get("model") or {}
    return bool(spec.get("class")) and get_forecaster_class(spec["class"]).supports_covariates


def create_template(with_model_input: bool = False, with_covariates: bool = False) -> Pipeline:
    """The per-family template; ``with_model_input``: the backtest and the fit also read ``model_input``;
    ``with_covariates``: both read the covariate declaration (``params:data_processing``) and the fit the horizon's
    known-in-advance covariates (``future_covariates``)."""
    extra = {"model_input": "model_input"} if with_model_input else {}
    declared = {"data_processing_params": "params:data_processing"} if with_covariates else {}
    plan = {"future_covariates": "future_covariates"} if with_covariates else {}
    return Pipeline(
        [
            Node(
                backtest_model,
                inputs={"panel": "primary_panel", "model_spec": "params:model", "panel_params": "params:panel",
                        "backtest_params": "params:backtest", **extra, **declared},
                outputs=["backtest_forecasts", "backtest_timings"],
                name="backtest_model_node",
            ),
            Node(
                fit_model,
                inputs={"panel": "primary_panel", "model_spec": "params:model", "panel_params": "params:panel",
                        "backtest_params": "params:backtest", "backtest_forecasts": "backtest_forecasts",
                        **extra, **plan, **declared},
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


def create_family_pipeline(family: str, with_covariates: bool | None = None) -> Pipeline:
    """The family's namespace; ``with_covariates`` None: as its class says (``uses_covariates``)."""
    with_covariates = uses_covariates(family) if with_covariates is None else with_covariates
    with_model_input = family in FEATURE_FAMILIES
    inputs = {"primary_panel": "primary_panel"}
    if with_model_input:
        inputs["model_input"] = model_input_name(family)
    if with_covariates:
        inputs["future_covariates"] = "future_covariates_horizon"
    parameters = SHARED_PARAMETERS | ({"params:data_processing"} if with_covariates else set())
    return Pipeline(create_template(with_model_input, with_covariates), namespace=family, inputs=inputs,
                    parameters=parameters)


def future_covariates_node(panel: str = "primary_panel", output: str = "future_covariates_horizon") -> Node:
    """data_processing's check of the user's ``future_covariates`` against ``panel``'s series ends: the rows of the
    horizon the covariate families forecast from (empty when no covariate is declared known in advance)."""
    from ts_kedro.pipelines.data_processing.nodes import select_future_covariates

    return Node(select_future_covariates, ["future_covariates", panel, "params:data_processing", "params:panel"],
                output, name=f"select_{output}_node")


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    """All enabled families (``training.families`` in parameters_training.yml, or TS_KEDRO_FAMILIES), and the
    frequency profile they were built from (a report); with a family that uses covariates, the horizon's known
    covariates."""
    families = families or enabled_families()
    nodes = [Node(describe_frequency_profile, inputs=["primary_panel", "params:panel", "params:backtest",
                                                      "params:monitoring"],
                  outputs="frequency_profile", name="describe_frequency_profile_node")]
    covariate_families = {family for family in families if uses_covariates(family)}
    if covariate_families:
        nodes.append(future_covariates_node())
    return sum((create_family_pipeline(family, family in covariate_families) for family in families),
               Pipeline(nodes))
