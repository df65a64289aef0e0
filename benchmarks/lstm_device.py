"""The LSTM family on CPU against CUDA, in fp32 and mixed precision: training and predict time, and accuracy.

Same data, same hyperparameters (the shipped ``conf/base/parameters_training.yml`` lstm block with the panel's
frequency-profile defaults, as ``kedro run`` builds it), one configuration after another in one process, so the
timings compare on one machine. A configuration is ``device:precision`` (``cpu:fp32``, ``cuda:fp32``,
``cuda:fp16``, ``cuda:bf16``); those the machine cannot run (no CUDA device, bf16 on a GPU without it, a torch
build whose LSTM kernel lacks the precision) are reported with their error, not skipped silently.

Data: real series, each with its last ``horizon`` points held out and scored (MASE with the seasonal-naive scale
of its training part, sMAPE, 80 % / 95 % coverage). Default: the shipped M4 Hourly sample
(``data/01_raw/m4_hourly_sample.csv``, 24 series, h 48); ``--file`` takes any long CSV (``series_id, timestamp,
value``) with ``--freq`` and ``--horizon``, e.g. all 414 M4 Hourly series (``../shared/data/m4_hourly``).

Examples::

    .venv/bin/python benchmarks/lstm_device.py --configs cpu:fp32                     # this CPU machine
    python benchmarks/lstm_device.py --configs cpu:fp32,cuda:fp32,cuda:fp16,cuda:bf16 --out results.json   # a GPU

Prints one table; ``--out`` writes the rows as JSON (with torch's version and the device names).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT / "data/01_raw/m4_hourly_sample.csv"


def split(panel: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training part and the last ``horizon`` points of every series (held out)."""
    panel = panel.sort_values(["series_id", "timestamp"], kind="stable").reset_index(drop=True)
    position = panel.groupby("series_id").cumcount(ascending=False)
    return panel[position >= horizon].reset_index(drop=True), panel[position < horizon].reset_index(drop=True)


def lstm_settings() -> dict:
    """The shipped lstm hyperparameters (conf/base/parameters_training.yml), as kedro run reads them."""
    import yaml

    conf = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())
    return dict(conf["lstm"]["model"]["hyperparameters"])


def run_one(config: str, train: pd.DataFrame, test: pd.DataFrame, freq: str, horizon: int) -> dict:
    import torch

    from ts_kedro.evaluation.metrics import mase, smape
    from ts_kedro.forecasters import build_forecaster
    from ts_kedro.frequency import derive_profile

    device, precision = config.split(":")
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": [80, 95]},
                             train.groupby("series_id").size())
    spec = {"class": "lstm", "hyperparameters": {**lstm_settings(), "device": device, "precision": precision}}
    row = {"config": config, "device": device, "precision": precision}
    try:
        model = build_forecaster(spec, freq=freq, season_length=profile.season_length, horizon=horizon,
                                 profile_defaults=profile.forecaster_defaults())
        started = time.perf_counter()
        model.fit(train)
        if device == "cuda":
            torch.cuda.synchronize()
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        forecast = model.predict(horizon, [80, 95])  # returns numpy: the GPU work is done
        predict_seconds = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 - a configuration this machine cannot run is a result too
        return {**row, "error": f"{type(error).__name__}: {str(error)[:300]}"}
    joined = test.merge(forecast, on=["series_id", "timestamp"], how="left", validate="one_to_one")
    insample = {sid: g["value"].to_numpy(float) for sid, g in train.groupby("series_id", sort=False)}
    m = profile.season_length
    scores = []
    for sid, group in joined.groupby("series_id", sort=False):
        y, yhat = group["value"].to_numpy(float), group["mean"].to_numpy(float)
        scores.append({"smape": float(smape(y, yhat)), "mase": float(mase(y, yhat, insample[sid], m)),
                       "cov80": float(((y >= group["lo-80"]) & (y <= group["hi-80"])).mean()),
                       "cov95": float(((y >= group["lo-95"]) & (y <= group["hi-95"])).mean())})
    means = pd.DataFrame(scores).mean()
    return {**row, "fit_s": round(fit_seconds, 2), "predict_s": round(predict_seconds, 3),
            "epochs": [len(h) for h in model.history_], "series": int(len(insample)),
            "own": int(sum(v == "lstm" for v in model.served_by_.values())),
            **{k: round(float(v), 4) for k, v in means.items()}}


def _shown(path: str) -> str:
    """The data file as the results name it: relative to the checkout when inside it (no machine paths)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else resolved.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu:fp32,cuda:fp32,cuda:fp16,cuda:bf16")
    parser.add_argument("--file", default=str(DEFAULT_FILE), help="long CSV: series_id, timestamp, value")
    parser.add_argument("--freq", default="h")
    parser.add_argument("--horizon", type=int, default=48)  # dataset fact: M4 Hourly's horizon (the default file)
    parser.add_argument("--out", help="JSON file of the rows")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    panel = pd.read_csv(args.file, parse_dates=["timestamp"])
    panel["value"] = panel["value"].astype(float)
    train, test = split(panel, args.horizon)
    print(f"{_shown(args.file)}: {panel['series_id'].nunique()} series, {len(train)} training points, h {args.horizon}; "
          f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    rows = [run_one(config, train, test, args.freq, args.horizon) for config in args.configs.split(",")]
    table = pd.DataFrame(rows).set_index("config")
    if "error" in table:
        table["error"] = table["error"].str.slice(0, 90)
    reference = rows[0].get("mase")
    if reference:
        table["mase_vs_first"] = (table.get("mase") / reference).round(4) if "mase" in table else np.nan
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string())
    if args.out:
        meta = {"torch": torch.__version__, "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available()
                else None, "cpu": platform.processor() or platform.machine(), "file": _shown(args.file),
                "horizon": args.horizon, "freq": args.freq}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
