"""data_processing: raw long CSV -> validated_panel -> primary_panel, series_quarantine and quality report."""
from kedro.pipeline import Node, Pipeline

from ts_kedro.config import enabled_families

from ts_kedro.pipelines.data_processing.nodes import (
    build_quality_report,
    conform_primary_panel,
    flag_anomalies,
    impute_missing,
    infer_frequency,
    list_quarantine,
    regularise_index,
    screen_series,
    validate_schema,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(validate_schema, ["raw_panel", "params:data_processing", "params:panel"],
                 ["validated_panel", "schema_summary"],
                 name="validate_schema_node"),
            Node(infer_frequency, ["validated_panel", "params:panel"], "series_frequency",
                 name="infer_frequency_node"),
            Node(screen_series, ["validated_panel", "series_frequency", "params:panel", "params:data_processing"],
                 ["screened_panel", "series_screening"], name="screen_series_node"),
            Node(list_quarantine, "series_screening", "series_quarantine", name="list_quarantine_node"),
            Node(regularise_index, ["screened_panel", "params:panel"], "regular_panel",
                 name="regularise_index_node"),
            Node(impute_missing, ["regular_panel", "params:panel", "params:data_processing"], "imputed_panel",
                 name="impute_missing_node"),
            Node(flag_anomalies, ["imputed_panel", "params:panel", "params:data_processing"], "flagged_panel",
                 name="flag_anomalies_node"),
            Node(conform_primary_panel, "flagged_panel", "primary_panel", name="conform_primary_panel_node"),
            Node(build_quality_report,
                 {"validated_panel": "validated_panel", "series_frequency": "series_frequency",
                  "series_screening": "series_screening", "flagged_panel": "flagged_panel",
                  "schema_summary": "schema_summary", "panel": "params:panel", "params": "params:data_processing",
                  "backtest_params": "params:backtest",
                  **{family: f"params:{family}.model" for family in enabled_families()}},
                 ["data_quality_report", "data_quality_table"], name="build_quality_report_node"),
        ]
    )
