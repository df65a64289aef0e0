"""Model registry and serving: the selected panel model, its MLflow pyfunc wrapper, champion/challenger aliases."""
from ts_kedro.registry.panel_model import (
    ENSEMBLE,
    InferenceInputError,
    PanelModelError,
    SelectedPanelModel,
    panel_model_input_example,
    panel_model_signature,
)

__all__ = [
    "ENSEMBLE",
    "InferenceInputError",
    "PanelModelError",
    "SelectedPanelModel",
    "panel_model_input_example",
    "panel_model_signature",
]
