"""Configuration needed while pipelines are built (before a KedroContext exists): which families run."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

# src layout: <project>/src/ts_kedro/config.py
PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAMILIES_ENV = "TS_KEDRO_FAMILIES"


class ConfigurationError(ValueError):
    """A configuration value is missing or invalid; the message names the file and key."""


def project_parameters(conf_source: str | None = None, env: str | None = None) -> dict:
    """Parameters as Kedro would load them (base + env); TS_KEDRO_CONF_SOURCE points at another conf folder."""
    source = str(conf_source or os.environ.get("TS_KEDRO_CONF_SOURCE") or PROJECT_ROOT / "conf")
    return _load_parameters(source, env or os.environ.get("KEDRO_ENV"))


@lru_cache(maxsize=8)
def _load_parameters(conf_source: str, env: str | None) -> dict:
    # The same loader class and arguments as the session's (settings.py): its custom resolvers (``${env:...}``)
    # included. A bare OmegaConfigLoader fails on them outside `kedro run` (e.g. `kedro registry list`),
    # where no session has registered the resolvers first.
    from ts_kedro.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(conf_source=conf_source, env=env, **CONFIG_LOADER_ARGS)
    return dict(loader["parameters"])


def enabled_families() -> list[str]:
    """Families to train: ``TS_KEDRO_FAMILIES=arima,lstm`` overrides ``training.families`` in the parameters."""
    override = os.environ.get(FAMILIES_ENV)
    if override:
        families = [name.strip() for name in override.split(",") if name.strip()]
    else:
        families = list((project_parameters().get("training") or {}).get("families") or [])
    if not families:
        raise ConfigurationError(
            "no model family enabled: set training.families in conf/base/parameters_training.yml "
            f"or {FAMILIES_ENV}=seasonal_naive,arima,..."
        )
    params = project_parameters()
    unknown = [name for name in families if "model" not in (params.get(name) or {})]
    if unknown:
        raise ConfigurationError(
            f"families {unknown} have no '<family>.model' block in conf/base/parameters_training.yml; "
            "add one with 'class:' (a registered name or a dotted path)"
        )
    if len(set(families)) != len(families):
        raise ConfigurationError(f"training.families lists a family twice: {families}")
    return families
