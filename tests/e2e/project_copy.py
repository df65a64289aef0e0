"""A throwaway copy of this Kedro project (conf + a real data sample) for whole-run tests.

Whole runs write data/, mlflow.db and mlruns/: doing that in a copy keeps the developer's tree untouched.
The package itself is the installed ts_kedro; TS_KEDRO_CONF_SOURCE makes pipeline construction read the copy's conf.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "data" / "01_raw" / "m4_hourly_sample.csv"

# Light but real settings for tests: every family trains, with fewer epochs/samples so CI stays within budget.
TEST_PARAMETERS = {
    "lstm": {"model": {"hyperparameters": {"max_epochs": 4, "patience": 2, "max_windows_per_series": 60}}},
    "prophet": {"model": {"hyperparameters": {"uncertainty_samples": 50}}},
    # the shipped row budget (300,000) and 300 trees cost about 35 s per fit even on a few series
    "lightgbm": {"model": {"hyperparameters": {"n_estimators": 40, "max_training_rows": 20000}}},
}


def make_project_copy(root: Path, n_series: int | None = 8, extra_parameters: dict | None = None) -> Path:
    """Copy pyproject.toml and conf/ (not conf/local), and the first ``n_series`` real series of the default sample."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # bootstrap_project checks src/ exists; the package itself is the installed ts_kedro
    raw = root / "data" / "01_raw"
    raw.mkdir(parents=True)
    sample = pd.read_csv(SAMPLE, dtype={"value": str})
    if n_series is not None:
        keep = sample["series_id"].drop_duplicates().head(n_series)
        sample = sample[sample["series_id"].isin(keep)]
    sample.to_csv(raw / SAMPLE.name, index=False)
    parameters = _merge(TEST_PARAMETERS, extra_parameters or {})
    (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(_with_base(root, parameters)))
    return root


def _with_base(root: Path, overrides: dict) -> dict:
    """Kedro merges env files key by key at the top level only: carry the base blocks we override into local."""
    base = {}
    for path in (root / "conf" / "base").glob("parameters*.yml"):
        base.update(yaml.safe_load(path.read_text()) or {})
    return {key: _merge(base.get(key, {}), value) for key, value in overrides.items()}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
