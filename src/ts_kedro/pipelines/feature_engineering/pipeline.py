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


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
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
