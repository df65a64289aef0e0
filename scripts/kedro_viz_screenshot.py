"""Serve the project with kedro-viz, open it in headless Chromium, check what renders and save screenshots.

    .venv/bin/python scripts/kedro_viz_screenshot.py [--project PATH] [--out docs/images] [--timeout 180]

Starts ``kedro viz run --no-browser --host 127.0.0.1 --port <free>`` (kedro-viz 12.5; the ``kedro`` next to this
Python), waits for ``/api/main``, opens the
default pipeline and the ``reporting`` pipeline (``?pipeline_id=``) in headless Chromium (Debian packages ``chromium``
and ``chromium-driver``), asserts that the flowchart shows the data_processing nodes, the training namespaces and a
reporting plot node, and saves ``kedro_viz.png`` and ``kedro_viz_reporting.png``. kedro-viz and Chromium are always
stopped, also on failure. Exit status 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1600,1000"]
KEDRO = Path(sys.executable).with_name("kedro")  # the virtual environment's kedro, whatever PATH says
# what must render: data_processing nodes, the training namespaces (collapsed modular pipelines), a plot node
EXPECTED_DEFAULT = ["validate schema", "seasonal naive", "arima", "plot prediction vs actual"]
EXPECTED_REPORTING = ["plot prediction vs actual", "plot error analysis", "compute confidence"]


class VizCheckError(RuntimeError):
    """kedro-viz did not start, or the page did not show what the project defines."""


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below 49151: kedro-viz refuses ports in the ephemeral range the OS would hand out."""
    for port in random.Random().sample(range(20000, 40000), 200):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise VizCheckError(f"no free TCP port found on {host} between 20000 and 40000")


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise VizCheckError(f"{', '.join(missing)} not found: install them with "
                            "`apt-get install -y chromium chromium-driver` (as root)")


def start_viz(project: Path, host: str, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_TELEMETRY": "false"}
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process in stop_viz
    # own process group: kedro-viz spawns its server in a child process, and both must go
    return subprocess.Popen([str(KEDRO), "viz", "run", "--no-browser", "--host", host, "--port", str(port)], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_viz(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    else:  # the launcher exited; its server child may still be in the group
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait_for_api(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/main", timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None and not _server_child_alive(process):
            break
        time.sleep(1)
    state = "its processes exited" if not _server_child_alive(process) else f"no answer within {timeout:.0f}s"
    raise VizCheckError(f"kedro-viz did not serve {url}/api/main ({state}); its log:\n"
                        + log_path.read_text()[-4000:])


def _server_child_alive(process: subprocess.Popen) -> bool:
    try:
        os.killpg(process.pid, 0)
        return True
    except ProcessLookupError:
        return False


def node_labels(driver, timeout: float) -> list[str]:
    """Text of every flowchart node, once the count has stopped changing (layout finished)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".pipeline-node"))
    previous, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2:
        labels = driver.execute_script(
            "return Array.from(document.querySelectorAll('.pipeline-node')).map(n => n.textContent.trim())")
        if len(labels) != previous:
            previous, stable_since = len(labels), time.monotonic()
        time.sleep(0.5)
    return labels


def check_page(driver, url: str, expected: list[str], absent: list[str], screenshot: Path, timeout: float) -> list[str]:
    # kedro-viz draws the default pipeline first and switches to the ?pid= one afterwards. Under load the switch was
    # seen never to come (CI, stop 31: the default flowchart for the whole 180 s), so wait for the flowchart to show
    # what the page must show and load the page again (every ``timeout / 4`` s) until ``timeout`` is spent. (Clearing
    # kedro-viz's localStorage instead is harmful: the reloaded page then hides every node type.)
    deadline = time.monotonic() + timeout
    attempt_seconds = max(timeout / 4, 10.0)
    while True:
        driver.get(url)
        reload_at = min(deadline, time.monotonic() + attempt_seconds)
        while True:
            labels = node_labels(driver, timeout)
            # kedro-viz shows raw names (validate_schema_node) or pretty ones (Validate Schema Node): compare as words
            lowered = [label.lower().replace("_", " ").replace(".", " ") for label in labels]
            found = [e for e in expected if any(e in label for label in lowered)]
            shown = [a for a in absent if any(a in label for label in lowered)]
            if (len(found) == len(expected) and not shown) or time.monotonic() > reload_at:
                break
            time.sleep(1)
        if (len(found) == len(expected) and not shown) or time.monotonic() > deadline:
            break
    # the first-visit feature tour and the version banner cover the flowchart: hide them for the picture
    driver.execute_script("document.querySelectorAll('.feature-hints, .banner, [class*=\"banner\"]')"
                          ".forEach(e => e.style.display = 'none')")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    if len(found) != len(expected) or shown:
        raise VizCheckError(f"{url}: expected nodes {expected}, found {found}; expected absent {absent}, shown {shown};"
                            f" the flowchart shows {labels[:40]} (screenshot {screenshot})")
    return labels


def capture(project: Path, out_dir: Path, timeout: float = 180.0) -> dict[str, list[str]]:
    """Run the whole check; returns the node labels seen on each page. Raises VizCheckError on any failure."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    host, port = "127.0.0.1", free_port()
    url = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory(prefix="kedro_viz_") as scratch:
        log_path = Path(scratch) / "kedro_viz.log"
        process = start_viz(project, host, port, log_path)
        driver = None
        try:
            wait_for_api(url, process, log_path, timeout)
            seen = {}
            # one browser, with its own fresh profile, per page: kedro-viz keeps the last pipeline shown in the
            # profile's localStorage, so nothing the first page stored can decide what the second one draws
            pages = [("__default__", url, EXPECTED_DEFAULT, [], "kedro_viz.png"),
                     # pid = pipeline_id in kedro-viz's URL; data_processing's nodes must be gone from this view
                     ("reporting", f"{url}/?pid=reporting", EXPECTED_REPORTING, ["validate schema"],
                      "kedro_viz_reporting.png")]
            for name, page, expected, absent, picture in pages:
                options = webdriver.ChromeOptions()
                options.binary_location = str(CHROMIUM)
                for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={Path(scratch) / f'chromium-profile-{name}'}"]:
                    options.add_argument(flag)
                driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
                driver.set_page_load_timeout(timeout)
                seen[name] = check_page(driver, page, expected, absent, out_dir / picture, timeout)
                driver.quit()
                driver = None
        finally:
            if driver is not None:
                driver.quit()
            stop_viz(process)
    return seen


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=root)
    parser.add_argument("--out", type=Path, default=root / "docs" / "images")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    try:
        seen = capture(args.project.resolve(), args.out.resolve(), args.timeout)
    except VizCheckError as exc:
        print(f"kedro-viz check failed: {exc}", file=sys.stderr)
        return 1
    for pipeline, labels in seen.items():
        print(f"{pipeline}: {len(labels)} nodes, e.g. {labels[:8]}")
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
