"""kedro-viz in a real (headless Chromium) browser shows the project's pipelines, training namespaces and plot nodes.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (CI installs them with apt-get); the test fails with
that instruction when they are missing. kedro-viz and Chromium are stopped by the script, also on failure.
"""
from __future__ import annotations

import importlib.util
import os

import pytest


def _load_script(project_root):
    spec = importlib.util.spec_from_file_location("kedro_viz_screenshot",
                                                  project_root / "scripts" / "kedro_viz_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kedro_viz_renders_the_pipelines_in_chromium(project_root, tmp_path):
    script = _load_script(project_root)
    try:
        script.require_chromium()
    except script.VizCheckError as exc:
        pytest.fail(str(exc))
    seen = script.capture(project_root, tmp_path, timeout=180)
    default = [label.lower() for label in seen["__default__"]]
    assert "validate_schema_node" in default  # data_processing
    assert {"seasonal_naive", "arima"} <= set(default)  # training namespaces, drawn collapsed
    assert "plot_prediction_vs_actual_node" in default  # reporting is part of the Day-0 default pipeline
    reporting = [label.lower() for label in seen["reporting"]]
    assert "prediction_vs_actual_plot" in reporting and "validate_schema_node" not in reporting
    for picture in ("kedro_viz.png", "kedro_viz_reporting.png"):
        data = (tmp_path / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, f"{picture} looks empty"
    # nothing of ours keeps running: kedro-viz's server and chromium are gone
    leftovers = [line for line in os.popen("ps -eo stat,cmd").read().splitlines()
                 if ("kedro viz run" in line or "chromedriver" in line) and not line.startswith("Z")]
    assert not leftovers, leftovers
