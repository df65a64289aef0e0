"""Model selection pipeline: per-series and overall choice, ensemble, registration and promotion."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
