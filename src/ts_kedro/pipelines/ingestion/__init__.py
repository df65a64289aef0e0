"""Ingestion pipeline (Day N): validate incoming batch files, extend the versioned history, regularise it."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
