"""Serving benchmark: `mlflow models serve` of a registered panel champion, 1 and 50 concurrent clients.

Loopback only and bounded (a fixed number of requests per client, a hard timeout per request). The model
is the project's shipped sample (24 real M4 Hourly series) routed to a daily and a weekly seasonal naive
and their median ensemble, registered in a throw-away SQLite registry and promoted to champion; each
request asks for three series (one per route) at horizon 24 with all levels.

    .venv/bin/python benchmarks/serving.py [--workers 2] [--requests-per-client 10] [--clients 1 50]

Prints one JSON line per client count: requests, errors, p50/p95/p99 latency (s), throughput (req/s),
and the 1-minute load average before and after (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW = PROJECT_ROOT / "data" / "01_raw" / "m4_hourly_sample.csv"
MODEL = "ts_kedro_panel_benchmark"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_champion(root: Path) -> tuple[str, list[str]]:
    from mlflow import MlflowClient

    from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
    from ts_kedro.frequency import season_length_for
    from ts_kedro.registry import SelectedPanelModel, registry

    panel = pd.read_csv(RAW, parse_dates=["timestamp"])
    panel["value"] = panel["value"].astype(float)
    day = season_length_for("h")
    ids = sorted(panel["series_id"].unique())
    daily = SeasonalNaive(freq="h", season_length=day).fit(panel)
    weekly = SeasonalNaive(freq="h", season_length=day * 7).fit(panel)
    routes = ["daily", "weekly", "ensemble"]
    model = SelectedPanelModel({"daily": daily, "weekly": weekly}, {s: routes[i % 3] for i, s in enumerate(ids)},
                               ["daily", "weekly"], [80, 95], 2 * day)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("benchmark", artifact_location=(root / "mlruns").as_uri()))
    version = registry.log_and_register(model, MODEL, run_id=run.info.run_id, tracking_uri=uri)
    registry.promote_if_better(MODEL, version, None, None, 0.02, history_path=root / "history.jsonl", tracking_uri=uri)
    return uri, ids[:3]


def serve(uri: str, workers: int, root: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_ENABLE_TELEMETRY="false", DO_NOT_TRACK="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}/invocations"


def load(url: str, series: list[str], clients: int, per_client: int, timeout: float) -> dict:
    body = json.dumps({"dataframe_records": [{"series_id": s, "horizon": 24} for s in series]}).encode()  # not a period: a request
    latencies, errors, lock = [], [], threading.Lock()

    def client():
        for _ in range(per_client):
            started = time.perf_counter()
            try:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    ok = response.status == 200 and len(json.loads(response.read())["predictions"]) == 72
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                ok = False
            with lock:
                (latencies if ok else errors).append(time.perf_counter() - started)

    load_before = os.getloadavg()[0]
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    p = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
    return {"clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
            "p50_s": round(float(p[0]), 4), "p95_s": round(float(p[1]), 4), "p99_s": round(float(p[2]), 4),
            "throughput_rps": round(len(latencies) / wall, 1), "wall_s": round(wall, 2),
            "load1_before": round(load_before, 2), "load1_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default: %(default)s)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--requests-per-client", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serving_benchmark_") as scratch:
        root = Path(scratch)
        uri, series = build_champion(root)
        process, url = serve(uri, args.workers, root)
        try:
            load(url, series, 1, 3, args.timeout)  # warm-up: first requests import and allocate
            for clients in args.clients:
                print(json.dumps({"workers": args.workers, "cpus": os.cpu_count(),
                                  **load(url, series, clients, args.requests_per_client, args.timeout)}), flush=True)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
