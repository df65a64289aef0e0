"""Monitoring pipeline (Day N): data drift, performance drift, verdict, Evidently workspace and alerts."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
