"""data_processing: validate, regularise, impute and anomaly-flag the raw panel; report data quality."""
from ts_kedro.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
