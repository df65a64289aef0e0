"""Training pipeline: backtest, fit and forecast each enabled model family in its own namespace."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
