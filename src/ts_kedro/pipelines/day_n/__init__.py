"""Day N, step 1: take in new batches (ingestion), check them for drift (monitoring) and judge a challenger that
waits for live evidence (``registry.promote_after: next_batch``; a no-op otherwise).

The Prefect cycle reads ``drift_summary`` afterwards and runs either ``retrain`` or ``inference``.
"""
from kedro.pipeline import Node, Pipeline

from ts_kedro.pipelines import ingestion, monitoring
from ts_kedro.pipelines.model_selection.live_promotion import judge_pending_challenger


def create_pipeline(**kwargs) -> Pipeline:
    judge = Pipeline([Node(judge_pending_challenger,
                           ["history_primary_panel", "params:panel", "params:registry", "params:model_selection"],
                           "challenger_judgement", name="judge_pending_challenger_node")])
    return ingestion.create_pipeline() + monitoring.create_pipeline() + judge
