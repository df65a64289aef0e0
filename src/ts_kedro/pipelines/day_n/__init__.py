"""Day N, step 1: take in new batches (ingestion) and check them for drift (monitoring).

The Prefect cycle reads ``drift_summary`` afterwards and runs either ``retrain`` or ``inference``.
"""
from kedro.pipeline import Pipeline

from ts_kedro.pipelines import ingestion, monitoring


def create_pipeline(**kwargs) -> Pipeline:
    return ingestion.create_pipeline() + monitoring.create_pipeline()
