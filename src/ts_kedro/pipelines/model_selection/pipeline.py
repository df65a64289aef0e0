"""Model selection: score families and the ensemble on the same backtest, choose, bundle, register."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families

from .nodes import (
    build_candidate_backtests,
    build_panel_model,
    compare_with_champion,
    forecast_panel,
    register_and_promote,
    score_candidates,
    select_models,
    selection_metrics,
    selection_report_markdown,
)


def create_pipeline(families: list[str] | None = None, **kwargs) -> Pipeline:
    families = families or enabled_families()
    return Pipeline(
        [
            Node(
                build_candidate_backtests,
                inputs={
                    "ensemble_params": "params:model_selection.ensemble",
                    "panel_params": "params:panel",
                    "primary_panel": "primary_panel",
                    **{family: f"{family}.backtest_forecasts" for family in families},
                },
                outputs="candidate_backtests",
                name="build_candidate_backtests_node",
            ),
            Node(
                score_candidates,
                inputs=["candidate_backtests", "primary_panel", "params:panel"],
                outputs="candidate_scores",
                name="score_candidates_node",
            ),
            Node(
                select_models,
                inputs={
                    "candidate_scores": "candidate_scores",
                    "selection_params": "params:model_selection",
                    "panel": "primary_panel",
                    **{family: f"{family}.model_stats" for family in families},
                },
                outputs=["model_selection", "selection_report"],
                name="select_models_node",
            ),
            Node(selection_metrics, inputs="model_selection", outputs="selection_metrics", name="selection_metrics_node"),
            Node(
                selection_report_markdown,
                inputs=["model_selection", "selection_report"],
                outputs="selection_report_md",
                name="selection_report_markdown_node",
            ),
            Node(
                build_panel_model,
                inputs={
                    "selection": "model_selection",
                    "panel_params": "params:panel",
                    "panel": "primary_panel",
                    "candidate_backtests": "candidate_backtests",
                    "backtest_params": "params:backtest",
                    **{family: f"{family}.model" for family in families},
                },
                outputs="panel_model",
                name="build_panel_model_node",
            ),
            Node(forecast_panel, inputs=["panel_model", "params:panel"], outputs=["forecasts", "forecasts_artifact"], name="forecast_panel_node"),
            Node(
                compare_with_champion,
                inputs=["candidate_backtests", "model_selection", "primary_panel", "champion_model", "params:panel"],
                outputs="champion_comparison",
                name="compare_with_champion_node",
            ),
            Node(
                register_and_promote,
                inputs=["panel_model", "champion_comparison", "params:registry"],
                outputs="registry_decision",
                name="register_and_promote_node",
            ),
        ]
    )
