"""feature_engineering pipeline: primary_panel -> feature_panel, series_decomposition, feature_manifest."""
from kedro.pipeline import Node, Pipeline

from .nodes import (
    assemble_feature_panel,
    build_calendar_features,
    build_decomposition_features,
    build_feature_manifest,
    build_lag_features,
    build_rolling_features,
    decompose_series,
    resolve_feature_spec,
)

FEATURE_FRAMES = ["calendar_features", "lag_features", "rolling_features", "decomposition_features"]


def model_input_nodes(families: list[str] | None = None) -> list[Node]:
    """One node per enabled feature-based family: its origin-horizon rows (``<family>_model_input``), which its
    training namespace reads (kedro-viz draws feature_engineering -> training through them)."""
    from ts_kedro.config import enabled_families
    from ts_kedro.pipelines.training.nodes import build_model_input
    from ts_kedro.pipelines.training.pipeline import FEATURE_FAMILIES, model_input_name

    return [
        Node(build_model_input, inputs=["primary_panel", f"params:{family}.model", "params:panel", "params:backtest"],
             outputs=model_input_name(family), name=f"build_{family}_model_input_node")
        for family in (families or enabled_families()) if family in FEATURE_FAMILIES
    ]


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            *model_input_nodes(families),
            Node(
                resolve_feature_spec,
                inputs=["primary_panel", "params:panel", "params:feature_engineering"],
                outputs="feature_spec",
                name="resolve_feature_spec_node",
            ),
            Node(
                build_calendar_features,
                inputs=["primary_panel", "feature_spec"],
                outputs="calendar_features",
                name="build_calendar_features_node",
            ),
            Node(
                build_lag_features,
                inputs=["primary_panel", "feature_spec"],
                outputs="lag_features",
                name="build_lag_features_node",
            ),
            Node(
                build_rolling_features,
                inputs=["primary_panel", "feature_spec"],
                outputs="rolling_features",
                name="build_rolling_features_node",
            ),
            Node(
                build_decomposition_features,
                inputs=["primary_panel", "feature_spec"],
                outputs="decomposition_features",
                name="build_decomposition_features_node",
            ),
            Node(
                decompose_series,
                inputs=["primary_panel", "feature_spec"],
                outputs="series_decomposition",
                name="decompose_series_node",
            ),
            Node(
                assemble_feature_panel,
                inputs=["primary_panel", *FEATURE_FRAMES],
                outputs="feature_panel",
                name="assemble_feature_panel_node",
            ),
            Node(
                build_feature_manifest,
                inputs=["feature_spec", *FEATURE_FRAMES],
                outputs="feature_manifest",
                name="build_feature_manifest_node",
            ),
        ]
    )
