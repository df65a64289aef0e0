"""ingestion: incoming batch files -> history_panel (append-only store) -> history_primary_panel; files archived,
then retention (old archived files whose rows are stored, old quarantine folders, registry versions if enabled)."""
from kedro.pipeline import Node, Pipeline

from ts_kedro.pipelines.data_processing import create_pipeline as create_data_processing_pipeline
from ts_kedro.pipelines.ingestion.nodes import (
    append_to_history,
    finish_ingestion_report,
    plan_batch_moves,
    plan_retention,
    select_previous_history,
    validate_incoming_batches,
)


def create_pipeline(**kwargs) -> Pipeline:
    batches = Pipeline(
        [
            Node(select_previous_history, ["validated_panel", "history_panel_previous"], "previous_history",
                 name="select_previous_history_node"),
            Node(validate_incoming_batches,
                 ["incoming_batches", "previous_history", "params:data_processing", "params:ingestion",
                  "params:panel"],
                 ["accepted_rows", "batch_validation_report"], name="validate_incoming_batches_node"),
            Node(append_to_history, ["previous_history", "accepted_rows", "batch_validation_report"],
                 "history_panel", name="append_to_history_node"),
            Node(plan_batch_moves, ["batch_validation_report", "history_panel"], "batch_file_moves",
                 name="move_batch_files_node"),
            Node(plan_retention, ["batch_file_moves", "params:ingestion"],
                 ["raw_batch_retention", "model_version_retention"], name="retention_node"),
            Node(finish_ingestion_report, ["batch_validation_report", "raw_batch_retention", "model_version_retention"],
                 "ingestion_report", name="ingestion_report_node"),
        ]
    )
    # Day-N regularisation is data_processing itself from validated_panel on (same nodes, same parameters),
    # fed with the history instead of the Day-0 file.
    regularisation = create_data_processing_pipeline().from_inputs("validated_panel").to_outputs(
        "primary_panel", "series_quarantine"
    )
    history_regularisation = Pipeline(
        regularisation,
        namespace="history",
        inputs={"validated_panel": "history_panel"},
        outputs={"primary_panel": "history_primary_panel", "series_quarantine": "history_series_quarantine"},
        parameters={"params:panel": "params:panel", "params:data_processing": "params:data_processing"},
    )
    return batches + history_regularisation
