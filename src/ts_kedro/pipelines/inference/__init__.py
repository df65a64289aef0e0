"""Inference pipeline (Day N): forecast the next horizon with the registered champion."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
