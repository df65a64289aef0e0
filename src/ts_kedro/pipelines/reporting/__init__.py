"""Reporting pipeline: plots, confidence, anomalies and feature importance of a Day-0 run."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
