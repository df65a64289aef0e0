"""Kedro dataset that loads the registered champion panel model (or None before the first registration)."""
from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError


class ChampionModelDataset(AbstractDataset[None, Any]):
    """Read-only: ``load()`` returns the ``SelectedPanelModel`` behind ``models:/<name>@<alias>``, or None.

    Uses the tracking/registry URI that kedro-mlflow configured for the run (or MLFLOW_TRACKING_URI).
    """

    def __init__(self, registered_model_name: str, alias: str = "champion", metadata: dict | None = None):
        self.registered_model_name = registered_model_name
        self.alias = alias
        self.metadata = metadata

    def load(self):
        from ts_kedro.registry import registry

        version = self._version(registry)
        if version is None:
            return None
        return registry.load_panel_model(self.registered_model_name, version)

    def _version(self, registry):
        try:
            return registry.get_alias_version(self.registered_model_name, self.alias)
        except registry.RegistryError:
            return None  # the model was never registered: Day 0

    def save(self, data) -> None:
        raise DatasetError(
            f"{type(self).__name__} is read-only: models are registered by the model_selection pipeline "
            "(register_and_promote_node) or the `ts-kedro registry` command"
        )

    def _describe(self) -> dict[str, Any]:
        return {"registered_model_name": self.registered_model_name, "alias": self.alias}
