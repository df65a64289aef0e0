"""Fast tests of the Kedro -> Prefect mapping: task groups, crossing datasets, configuration, and that the module
stays on Kedro's public API. No server."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.pickle import PickleDataset

from ts_kedro.orchestration.config import (
    OrchestrationConfig,
    OrchestrationConfigError,
    PipelineRunConfig,
    load_orchestration_config,
)
from ts_kedro.orchestration import kedro_prefect
from ts_kedro.orchestration.kedro_prefect import (
    CrossingDatasetError,
    _persist_crossing_datasets,
    crossing_datasets,
    plan_task_groups,
)


def _identity(x):
    return x


def _pair(x, y):
    return x


def two_family_pipeline() -> Pipeline:
    """The shape of the training stage: shared preparation, one namespace per family, then selection."""
    prepare = Pipeline([Node(_identity, "raw_panel", "panel", name="prepare")])
    family = Pipeline(
        [
            Node(_identity, "panel", "model", name="fit"),
            Node(_identity, "model", "forecast", name="predict"),
        ]
    )
    arima = Pipeline(family, namespace="arima", inputs={"panel"})
    lstm = Pipeline(family, namespace="lstm", inputs={"panel"})
    select = Pipeline([Node(_pair, ["arima.forecast", "lstm.forecast"], "selection", name="select")])
    return prepare + arima + lstm + select


def test_node_grouping_gives_one_task_per_node_with_kedro_dependencies():
    groups = plan_task_groups(two_family_pipeline(), "node")
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"prepare", "arima.fit", "arima.predict", "lstm.fit", "lstm.predict", "select"}
    assert by_name["arima.fit"].upstream == ("prepare",)
    assert by_name["lstm.predict"].upstream == ("lstm.fit",)
    assert by_name["select"].upstream == ("arima.predict", "lstm.predict")
    order = [g.name for g in groups]
    for group in groups:  # every group comes after its upstream groups
        assert all(order.index(u) < order.index(group.name) for u in group.upstream)


def test_namespace_grouping_gives_one_task_per_family_with_nodes_in_order():
    groups = plan_task_groups(two_family_pipeline(), "namespace")
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"prepare", "arima", "lstm", "select"}
    assert by_name["arima"].node_names == ("arima.fit", "arima.predict")
    assert by_name["arima"].upstream == ("prepare",)
    assert by_name["lstm"].upstream == ("prepare",)  # the families are independent: they can run in parallel
    assert by_name["select"].upstream == ("arima", "lstm")


def test_namespace_grouping_that_creates_a_cycle_is_refused():
    # ns.a -> outside -> ns.b: as one task, "ns" would both feed and wait for "outside".
    pipeline = Pipeline(
        [
            Node(_identity, "x", "ns.y", name="a", namespace="ns"),
            Node(_identity, "ns.y", "z", name="outside"),
            Node(_identity, "z", "ns.w", name="b", namespace="ns"),
        ]
    )
    with pytest.raises(OrchestrationConfigError, match="cycle between task groups"):
        plan_task_groups(pipeline, "namespace")
    assert len(plan_task_groups(pipeline, "node")) == 3


def test_unknown_grouping_is_refused():
    with pytest.raises(OrchestrationConfigError, match="grouping"):
        plan_task_groups(two_family_pipeline(), "family")


def test_crossing_datasets_depend_on_grouping():
    pipeline = two_family_pipeline()
    by_namespace = crossing_datasets(pipeline, plan_task_groups(pipeline, "namespace"))
    assert by_namespace == {"panel": "prepare", "arima.forecast": "arima", "lstm.forecast": "lstm"}
    by_node = crossing_datasets(pipeline, plan_task_groups(pipeline, "node"))
    assert by_node["arima.model"] == "arima.fit"  # inside a family only when each node is its own task
    assert "arima.model" not in by_namespace


def test_in_memory_crossing_dataset_fails_fast_with_its_name(tmp_path):
    catalog = DataCatalog(
        {"panel": MemoryDataset(), "arima.forecast": CSVDataset(filepath=str(tmp_path / "f.csv"))}
    )
    crossing = {"panel": "prepare", "arima.forecast": "arima"}
    with pytest.raises(CrossingDatasetError, match="'panel' \\(written by task 'prepare'\\)"):
        _persist_crossing_datasets(catalog, crossing, "fail", tmp_path / "run")


def test_in_memory_crossing_dataset_is_replaced_by_a_run_scoped_pickle(tmp_path):
    forecast = CSVDataset(filepath=str(tmp_path / "f.csv"))
    catalog = DataCatalog({"panel": MemoryDataset(), "arima.forecast": forecast})
    persisted = _persist_crossing_datasets(
        catalog, {"panel": "prepare", "arima.forecast": "arima"}, "persist", tmp_path / "run"
    )
    assert persisted == {"panel": str(tmp_path / "run" / "panel.pkl")}
    assert isinstance(catalog.get("panel"), PickleDataset)
    assert catalog.get("arima.forecast") is forecast  # already persisted: untouched
    catalog.save("panel", {"H1": [1.0, 2.0]})
    assert (tmp_path / "run" / "panel.pkl").is_file()


def test_task_options_apply_overrides_per_task():
    config = PipelineRunConfig(retries=0, timeout_seconds=60, task_overrides={"lstm": {"retries": 2}})
    assert config.task_options("lstm") == {"retries": 2, "retry_delay_seconds": 30, "timeout_seconds": 60}
    assert config.task_options("arima")["retries"] == 0


@pytest.mark.parametrize(
    "block, message",
    [
        ({"grouping": "family"}, "grouping"),
        ({"task_runer": "thread"}, "unknown key"),
        ({"task_overrides": {"lstm": {"retry": 1}}}, "task_overrides.lstm"),
        ({"cycle": {"day0": "x"}}, "orchestration.cycle"),
    ],
)
def test_bad_configuration_is_refused_with_the_key(block, message):
    with pytest.raises(OrchestrationConfigError, match=message):
        OrchestrationConfig.from_dict(block)


def test_project_configuration_loads_and_env_overrides_base(project_root, tmp_path):
    config = load_orchestration_config(project_root, env="base")
    assert config.pipeline_run.grouping in ("node", "namespace")
    assert config.cycle.champion_alias == "champion"
    assert config.deployment.timezone == "UTC"

    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "ops").mkdir()
    (tmp_path / "conf" / "base" / "orchestration.yml").write_text("orchestration:\n  grouping: namespace\n")
    (tmp_path / "conf" / "ops" / "orchestration.yml").write_text("orchestration:\n  task_runner: dask\n")
    layered = load_orchestration_config(tmp_path, env="ops")
    assert (layered.pipeline_run.grouping, layered.pipeline_run.task_runner) == ("namespace", "dask")


def private_accesses(source: str) -> list[tuple[str, str]]:
    """(enclosing function, expression) of every `x._name` attribute access and `from ... import _name` in
    ``source``; dunders are not private."""
    found: list[tuple[str, str]] = []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Attribute) and private(node.attr):
            found.append((function, ast.unparse(node)))
        if isinstance(node, ast.ImportFrom):
            found.extend((function, f"{node.module}.{alias.name}") for alias in node.names if private(alias.name))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), "<module>")
    return found


# The only private members kedro_prefect.py may read. Kedro: the hook manager of a session rebuilt in a Dask
# worker (no public accessor; pinned by test_prefect_task_runner.py). MLflow: detaching a resumed run from a
# worker thread without ending it (not Kedro; no public API either).
ALLOWED_PRIVATE_ACCESSES = {
    ("_rebuilt_session_hook_manager", "session._hook_manager"),
    ("_resumed_mlflow_run", "fluent._active_run_stack"),
}


def test_the_scan_finds_private_accesses():
    source = (
        "from kedro import __version__\n"
        "from kedro.framework.hooks import _create_hook_manager\n"
        "def run(session, context):\n"
        "    catalog = context._get_catalog(save_version=session.session_id)\n"
        "    context._pipelines_to_validate = ['x']\n"
        "    return session._hook_manager, catalog.__class__\n"
    )
    assert private_accesses(source) == [
        ("<module>", "kedro.framework.hooks._create_hook_manager"),
        ("run", "context._get_catalog"),
        ("run", "context._pipelines_to_validate"),
        ("run", "session._hook_manager"),
    ]


def test_kedro_prefect_uses_no_private_member_but_the_pinned_ones():
    """The flow runs through `KedroSession.run(runner=...)`: no `_get_catalog`, `_hook_manager`,
    `_pipelines_to_validate`, `_project_path`, ... (they break silently on a Kedro upgrade)."""
    accesses = private_accesses(Path(kedro_prefect.__file__).read_text())
    assert set(accesses) == ALLOWED_PRIVATE_ACCESSES, sorted(set(accesses) - ALLOWED_PRIVATE_ACCESSES)
    assert len(accesses) == len(ALLOWED_PRIVATE_ACCESSES)  # each once


def test_the_runner_is_a_kedro_runner():
    from kedro.runner import AbstractRunner

    assert issubclass(kedro_prefect.PrefectTaskRunner, AbstractRunner)
