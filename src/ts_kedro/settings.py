"""Kedro project settings. Kept small on purpose: plugins (kedro-mlflow) register their own hooks."""
import os

from kedro.config import OmegaConfigLoader

from ts_kedro.hooks import ParameterChecksHook, RunTagsHook
from ts_kedro.orchestration.per_series_cluster import PerSeriesClusterHook

# PerSeriesClusterHook: the Dask cluster of orchestration.per_series.cluster, for every run (null: none)
# ParameterChecksHook: parameters read late in the run (model_selection.ensemble) checked before the first node
HOOKS = (RunTagsHook(), ParameterChecksHook(), PerSeriesClusterHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # conf/local/parameters.yml overrides key by key: a new dataset sets only panel.freq and panel.horizon and
    # keeps every other panel key (levels, null = derived) from conf/base.
    "merge_strategy": {"parameters": "soft"},
    # `${env:NAME,default}` in any config file: lets operators point tracking at a server without editing YAML.
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
