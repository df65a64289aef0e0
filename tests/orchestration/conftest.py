"""Fixtures for the orchestration tests: a real Prefect server subprocess and a small Kedro project in tmp_path.

The small project exists so the tests control the graph (two namespaced model families, a node that fails on
demand, a hook that records every call). Its input is a slice of the real shipped M4 Hourly sample. Flows run in
a subprocess (`python -m ts_kedro.orchestration ...`): bootstrapping another Kedro package in the pytest process
would swap Kedro's global settings and pipelines under the other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SMALL_PACKAGE = "orchestration_probe"

# re-exported for this folder's tests; the prefect_server / prefect_api fixtures live in tests/conftest.py
from tests.prefect_server import PREFECT_CLI, base_env, free_port, wait_until_healthy  # noqa: E402,F401


def stub_datasets(reports: dict, loads: list | None = None):
    """A stand-in for ``flows._load_dataset``: ``reports[name]``, with the cycle's runtime parameters applied to
    ``params:panel`` as Kedro applies them; every loaded name is appended to ``loads`` (what the cycle read)."""
    def load(root, env, name, runtime_params=None):
        if loads is not None:
            loads.append(name)
        if runtime_params and name == "params:panel":
            return {**reports[name], **runtime_params["panel"]}
        return reports[name]
    return load


def run_cli(args: list[str], prefect_server: dict, cwd: Path, timeout: float = 180, extra_env: dict | None = None):
    """Run `python -m ts_kedro.orchestration <args>` against the test server; return (returncode, summary, output)."""
    env = base_env(prefect_server["home"], prefect_server["api_url"])
    env["PYTHONPATH"] = os.pathsep.join([str(cwd / "src"), str(REPO_ROOT / "src")])
    env.update(extra_env or {})
    result = subprocess.run(
        [PYTHON, "-m", "ts_kedro.orchestration", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    return result.returncode, summary, result.stdout + result.stderr


SMALL_NODES = '''
"""Nodes of the probe project: two forecast families over a real M4 slice."""
import pandas as pd


def select_series(raw_panel: pd.DataFrame, n_series: int) -> pd.DataFrame:
    ids = sorted(raw_panel["series_id"].unique())[:n_series]
    return raw_panel[raw_panel["series_id"].isin(ids)].reset_index(drop=True)


def fit_mean_level(panel: pd.DataFrame, window: int) -> dict:
    return {sid: float(g["value"].tail(window).mean()) for sid, g in panel.groupby("series_id")}


def fit_last_season(panel: pd.DataFrame, season_length: int) -> dict:
    return {sid: g["value"].tail(season_length).tolist() for sid, g in panel.groupby("series_id")}


def forecast_mean(levels: dict, horizon: int) -> pd.DataFrame:
    return pd.DataFrame(
        [{"series_id": sid, "step": h + 1, "mean": level} for sid, level in levels.items() for h in range(horizon)]
    )


def forecast_season(seasons: dict, horizon: int) -> pd.DataFrame:
    return pd.DataFrame(
        [{"series_id": sid, "step": h + 1, "mean": s[h % len(s)]} for sid, s in seasons.items() for h in range(horizon)]
    )


def compare_forecasts(mean_forecast: pd.DataFrame, season_forecast: pd.DataFrame, fail: bool) -> dict:
    if fail:
        raise RuntimeError("compare_forecasts failed on purpose (params:fail_compare=true)")
    gap = (mean_forecast["mean"] - season_forecast["mean"]).abs().mean()
    return {"mean_abs_gap": float(gap), "rows": int(len(mean_forecast))}
'''

SMALL_PIPELINES = '''
from kedro.pipeline import Node, Pipeline

from {pkg}.nodes import (compare_forecasts, fit_last_season, fit_mean_level, forecast_mean, forecast_season,
                         select_series)


def register_pipelines():
    prepare = Pipeline([Node(select_series, ["raw_panel", "params:n_series"], "panel", name="select_series")])
    mean_family = Pipeline(
        [
            Node(fit_mean_level, ["panel", "params:window"], "level", name="fit"),
            Node(forecast_mean, ["level", "params:horizon"], "forecast", name="forecast"),
        ],
        namespace="mean_model", inputs={{"panel"}}, parameters={{"params:horizon"}},
    )
    season_family = Pipeline(
        [
            Node(fit_last_season, ["panel", "params:season_length"], "level", name="fit"),
            Node(forecast_season, ["level", "params:horizon"], "forecast", name="forecast"),
        ],
        namespace="season_model", inputs={{"panel"}}, parameters={{"params:horizon"}},
    )
    compare = Pipeline(
        [Node(compare_forecasts, ["mean_model.forecast", "season_model.forecast", "params:fail_compare"],
              "comparison", name="compare_forecasts")]
    )
    day0 = prepare + mean_family + season_family + compare
    return {{"__default__": day0, "day_n": prepare + season_family, "prepare": prepare}}
'''

SMALL_HOOKS = '''
"""Records every Kedro hook call (name, pid, thread) to hook_calls.jsonl in the project root."""
import json
import os
import threading
from pathlib import Path

from kedro.framework.hooks import hook_impl

LOG = Path(__file__).resolve().parents[2] / "hook_calls.jsonl"


def _record(hook, **fields):
    entry = {"hook": hook, "pid": os.getpid(), "thread": threading.current_thread().name, **fields}
    with open(LOG, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")


class RecordingHook:
    @hook_impl
    def after_context_created(self, context):
        _record("after_context_created")

    @hook_impl
    def after_catalog_created(self, catalog):
        _record("after_catalog_created")

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog):
        _record("before_pipeline_run", run_id=run_params["run_id"], nodes=sorted(n.name for n in pipeline.nodes))

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async, run_id):
        _record("before_node_run", node=node.name, run_id=run_id)

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs, is_async, run_id):
        _record("after_node_run", node=node.name, run_id=run_id)

    @hook_impl
    def on_node_error(self, error, node, catalog, inputs, is_async, run_id):
        _record("on_node_error", node=node.name, error=str(error))

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node):
        _record("after_dataset_saved", dataset=dataset_name, node=node.name)

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog):
        _record("after_pipeline_run", run_id=run_params["run_id"])

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog):
        _record("on_pipeline_error", run_id=run_params["run_id"], error=str(error))
'''

SMALL_CATALOG = """
raw_panel:
  type: pandas.CSVDataset
  filepath: data/01_raw/panel.csv
  load_args: {parse_dates: [timestamp]}

"{family}.forecast":
  type: pandas.CSVDataset
  filepath: data/07_model_output/{family}_forecast.csv

comparison:
  type: json.JSONDataset
  filepath: data/08_reporting/comparison.json
"""

SMALL_PARAMETERS = """
n_series: 2
horizon: 24
fail_compare: false
mean_model: {window: 48}
season_model: {season_length: 24}
"""


@pytest.fixture
def small_kedro_project(tmp_path, m4_sample_panel) -> Path:
    """A Kedro project with a namespaced two-family pipeline over the last 240 h of two real M4 series."""
    return make_small_kedro_project(tmp_path / "probe_project", m4_sample_panel)


def make_small_kedro_project(root: Path, m4_sample_panel: pd.DataFrame) -> Path:
    package = root / "src" / SMALL_PACKAGE
    package.mkdir(parents=True)
    (root / "conf" / "base").mkdir(parents=True)
    (root / "conf" / "local").mkdir(parents=True)
    (root / "data" / "01_raw").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.kedro]
        package_name = "{SMALL_PACKAGE}"
        project_name = "{SMALL_PACKAGE}"
        kedro_init_version = "1.7.0"
        source_dir = "src"
    """))
    (package / "__init__.py").write_text("")
    (package / "nodes.py").write_text(SMALL_NODES)
    (package / "pipeline_registry.py").write_text(SMALL_PIPELINES.format(pkg=SMALL_PACKAGE))
    (package / "hooks.py").write_text(SMALL_HOOKS)
    (package / "settings.py").write_text(f"from {SMALL_PACKAGE}.hooks import RecordingHook\nHOOKS = (RecordingHook(),)\n")
    (root / "conf" / "base" / "catalog.yml").write_text(SMALL_CATALOG)
    (root / "conf" / "base" / "parameters.yml").write_text(SMALL_PARAMETERS)
    (root / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{root / 'mlflow.db'}\n"
        "tracking:\n  experiment:\n    name: probe\n"
    )
    panel = m4_sample_panel[m4_sample_panel["series_id"].isin(["H1", "H103"])]
    panel.groupby("series_id").tail(240).to_csv(root / "data" / "01_raw" / "panel.csv", index=False)
    return root


def hook_calls(project: Path) -> list[dict]:
    path = project / "hook_calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
