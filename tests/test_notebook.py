"""notebooks/walkthrough.ipynb runs top to bottom against the outputs of a real (small) Day-0 run.

The Day-0 run happens in a temporary copy of the project (conf, package, notebook; the raw data cut to three real
M4 Hourly series of 528 hours) with only the seasonal-naive family, so data_processing, feature_engineering,
training, model_selection (up to the forecasts) and reporting all run for real in seconds. MLflow tracks into the
copy. The notebook is then executed with nbclient on a kernel of this virtual environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

DAY0_SCRIPT = """
import sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

root = Path(sys.argv[1])
bootstrap_project(root)
with KedroSession.create(project_path=root) as session:
    session.run(pipeline_names=["data_processing", "feature_engineering", "training", "model_selection"],
                # everything but the champion registry nodes (compare/register), which reporting does not read
                to_outputs=["forecasts", "selection_report_md", "candidate_scores", "feature_panel",
                            "series_decomposition", "feature_manifest", "seasonal_naive.backtest_metrics"])
with KedroSession.create(project_path=root) as session:
    session.run(pipeline_names=["reporting"])
"""
PLOTS = ["seasonal_decomposition", "feature_correlation", "prediction_vs_actual", "error_analysis",
         "model_comparison", "confidence", "drift_over_time"]


@pytest.fixture()
def day0_project(project_root, tmp_path, monkeypatch) -> Path:
    project = tmp_path / "project"
    for name in ("conf", "notebooks"):
        shutil.copytree(project_root / name, project / name, ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copytree(project_root / "src" / "ts_kedro", project / "src" / "ts_kedro",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(project_root / "pyproject.toml", project)
    raw = pd.read_csv(project_root / "data" / "01_raw" / "m4_hourly_sample.csv")
    ids = sorted(raw["series_id"].unique())[:3]
    (project / "data" / "01_raw").mkdir(parents=True)
    raw[raw["series_id"].isin(ids)].groupby("series_id").tail(528).to_csv(
        project / "data" / "01_raw" / "m4_hourly_sample.csv", index=False)
    # the kernel started by nbclient inherits these, so the notebook sees the same run and tracking store
    for key, value in {"TS_KEDRO_FAMILIES": "seasonal_naive", "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db",
                       "TS_KEDRO_ARTIFACT_LOCATION": str(project / "mlruns"), "DO_NOT_TRACK": "1",
                       "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_TELEMETRY": "false"}.items():
        monkeypatch.setenv(key, value)
    run = subprocess.run([sys.executable, "-c", DAY0_SCRIPT, str(project)], cwd=project, env=os.environ.copy(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"Day-0 run in {project} failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return project


def test_walkthrough_notebook_runs_on_a_day0_run(day0_project):
    plots = day0_project / "data" / "08_reporting" / "plots"
    assert sorted(p.stem for p in plots.glob("*.png")) == sorted(PLOTS)

    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True, order_by=["start_time DESC"])
    logged = [a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "plots")]
    assert sorted(logged) == sorted(f"plots/{name}.png" for name in PLOTS)

    notebook = nbformat.read(day0_project / "notebooks" / "walkthrough.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(day0_project / "notebooks")}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(PLOTS)
    text = json.dumps([o.get("data", o.get("text", "")) for o in outputs])
    assert "3 series, 1,584 rows" in text
    assert "Overall model:** seasonal_naive" in text
    assert "confidence" in text and "lo-95" in text
