"""feature_engineering: leak-free calendar, lag, rolling and decomposition features of the primary panel."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
