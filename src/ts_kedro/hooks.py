"""Project hooks: MLflow run tags (dataset fingerprint, data window, git commit) and parameter checks at start."""
from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


def file_fingerprint(path: Path, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks so large raw files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _active_run():
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a hard dependency
        return None
    return mlflow if mlflow.active_run() else None


class RunTagsHook:
    """Runs after kedro-mlflow opened the run (plugin hooks are called before project hooks)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        mlflow = _active_run()
        if mlflow is None:
            return
        tags = {"git_commit": git_commit(Path.cwd()), "kedro_pipeline": run_params.get("pipeline_names") or "__default__"}
        for name in ("raw_panel",):
            if name in pipeline.datasets() and name in catalog:
                filepath = getattr(catalog.get(name), "_filepath", None)
                if filepath is not None and Path(str(filepath)).is_file():
                    tags["dataset_path"] = str(filepath)
                    tags["dataset_fingerprint"] = file_fingerprint(Path(str(filepath)))
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if dataset_name not in ("primary_panel", "history_primary_panel"):
            return
        mlflow = _active_run()
        if mlflow is None or not hasattr(data, "columns") or "timestamp" not in data.columns:
            return
        mlflow.set_tags(
            {
                "data_window_start": str(data["timestamp"].min()),
                "data_window_end": str(data["timestamp"].max()),
                "n_series": str(data["series_id"].nunique()),
                "n_rows": str(len(data)),
            }
        )


class ParameterChecksHook:
    """Checks, before the first node runs, parameters that would otherwise fail only after training.

    Model selection reads ``model_selection`` after every family has been backtested and fitted; a typo in its
    metric, weights, floors, ``member_rule`` or ``method`` then cost a whole Day 0 (or a Day-N retrain). The checks
    are the nodes' own (``model_selection.nodes.check_selection_params``, ``check_ensemble_params``, the
    registry's ``live_promotion.promote_after``, ``backtest.calibration_method`` and
    ``backtest.per_series_calibration``, which the families read only
    after their backtests, and reporting's anomaly level against ``panel.levels``, read after model selection),
    run only when the pipeline uses those parameters.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        from ts_kedro.evaluation.conformal import check_calibration_params
        from ts_kedro.pipelines.model_selection.live_promotion import promote_after
        from ts_kedro.pipelines.model_selection.nodes import check_ensemble_params, check_selection_params

        used = pipeline.datasets()
        for name, check in (("params:model_selection", check_selection_params),
                            ("params:model_selection.ensemble", check_ensemble_params),
                            ("params:registry", promote_after),
                            ("params:backtest", check_calibration_params)):
            if name in used and name in catalog:
                check(catalog.load(name) or {})
        if "params:reporting" in used and "params:reporting" in catalog and "params:panel" in catalog:
            from ts_kedro.pipelines.reporting.nodes import check_reporting_params

            check_reporting_params(catalog.load("params:reporting") or {}, catalog.load("params:panel") or {})
