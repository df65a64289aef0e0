"""Day-N inference latency, refit versus update, with the inference pipeline's own node on the default data.

Day 0: every family of ``conf/base/parameters_training.yml`` (shipped hyperparameters, frequency-profile
defaults, as the training pipeline builds them) is fitted on the shipped sample (24 real M4 Hourly series,
``data/01_raw/m4_hourly_sample.csv``) minus its last ``--new-steps`` points (default: one panel horizon, the
M4 Hourly test length), and the champion is the median ensemble of every family but the reference (the shape
the default model selection usually picks: ``per_series: false``, ensemble of the non-reference families).
Day N: the history is the whole sample. ``forecast_with_champion`` (the inference node) runs with
``conditioning: refit`` (the behaviour before issue 12: every family refitted in every cycle) and with
``conditioning: update`` (the default now), on the same champion; the registry load is replaced by the
in-memory champion, so both latencies are the conditioning plus the forecast. Both forecasts are scored
against the real M4 Hourly test part (sMAPE, MASE with m = the profile's season) to show what skipping the
re-estimation costs in accuracy over one cycle. Interval calibration is not part of this run (it needs the
backtest), which does not change either latency.

    .venv/bin/python benchmarks/day_n_inference.py                      # all shipped families
    .venv/bin/python benchmarks/day_n_inference.py --families theta,ets,arima
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_DATA = ROOT / "data" / "01_raw" / "m4_hourly_sample.csv"
M4_TEST = DATA / "m4_hourly" / "Hourly-test-long.csv"


def main() -> None:
    from ts_kedro.evaluation.metrics import mase, smape
    from ts_kedro.forecasters import build_forecaster
    from ts_kedro.frequency import derive_profile
    from ts_kedro.pipelines.inference import nodes as inference_nodes
    from ts_kedro.registry.panel_model import ENSEMBLE, SelectedPanelModel

    conf = ROOT / "conf" / "base"
    panel_config = yaml.safe_load((conf / "parameters.yml").read_text())["panel"]
    training_config = yaml.safe_load((conf / "parameters_training.yml").read_text())
    reference = yaml.safe_load((conf / "parameters_model_selection.yml").read_text())["model_selection"]["reference"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(training_config["training"]["families"]))
    parser.add_argument("--new-steps", type=int, default=None, help="Day-N points per series (default: horizon)")
    args = parser.parse_args()

    panel = pd.read_csv(DEFAULT_DATA, parse_dates=["timestamp"]).astype({"series_id": str, "value": float})
    panel = panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    horizon, freq = int(panel_config["horizon"]), panel_config["freq"]
    new_steps = args.new_steps or horizon
    from_end = panel.groupby("series_id").cumcount(ascending=False)
    day0 = panel[from_end >= new_steps].reset_index(drop=True)
    profile = derive_profile({"freq": freq, "horizon": horizon}, day0.groupby("series_id").size().to_numpy())
    families = args.families.split(",")
    started = time.perf_counter()
    fitted = {}
    for family in families:
        spec = training_config[family]["model"]
        fitted[family] = build_forecaster(spec, freq=freq, season_length=profile.season_length, horizon=horizon,
                                          profile_defaults=profile.forecaster_defaults()).fit(day0)
        print(f"day 0: {family} fitted ({time.perf_counter() - started:.0f} s so far)", flush=True)
    members = [f for f in families if f != reference] or families
    series = sorted(day0["series_id"].unique())
    champion = SelectedPanelModel(fitted, {s: ENSEMBLE if len(members) > 1 else members[0] for s in series},
                                  members if len(members) > 1 else [], panel_config["levels"], horizon,
                                  {"data_window_end": str(day0["timestamp"].max())})
    inference_nodes.load_champion_model = lambda name, uri=None: champion
    params = {"registered_model_name": "benchmark", "tracking_uri": None}
    panel_params = {**panel_config, "season_length": profile.season_length}
    test = pd.read_csv(M4_TEST, parse_dates=["timestamp"]).astype({"series_id": str, "value": float})
    test = test[test["series_id"].isin(series)]
    rows = []
    for mode in ("refit", "update"):
        forecasts, summary = inference_nodes.forecast_with_champion(panel, {**params, "conditioning": mode},
                                                                    panel_params)
        scored = forecasts.merge(test, on=["series_id", "timestamp"], how="inner")
        smapes, mases = [], []
        for sid, group in scored.groupby("series_id"):
            insample = panel[panel["series_id"] == sid]["value"].to_numpy()
            smapes.append(smape(group["value"].to_numpy(), group["mean"].to_numpy()))
            mases.append(mase(group["value"].to_numpy(), group["mean"].to_numpy(), insample, profile.season_length))
        rows.append({"conditioning": mode, "latency s": summary["latency_seconds"],
                     "condition s": summary["condition_seconds"], "predict s": summary["predict_seconds"],
                     "refitted families": len(summary["refitted_families"]),
                     "forecast start": summary["forecast_start"], "scored points": len(scored),
                     "sMAPE": float(np.mean(smapes)), "MASE": float(np.mean(mases))})
        print(f"{mode}: {summary['latency_seconds']:.2f} s", flush=True)
    print(f"\n{len(series)} series, Day 0 = sample minus {new_steps} points, Day N = the whole sample; champion: "
          f"median of {members}\n")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    print(f"\nlatency factor refit / update: {rows[0]['latency s'] / rows[1]['latency s']:.1f}")

    # serving: a request whose rows carry the Day-N points (the pyfunc's own request handler, in-process)
    from ts_kedro.registry.pyfunc import forecast_request

    new = panel[from_end < new_steps]
    champion.warm_up()
    for n_rows in (1, len(series)):
        request = pd.DataFrame([{"series_id": sid, "horizon": horizon,
                                 "recent_timestamps": [t.isoformat() for t in new[new["series_id"] == sid]["timestamp"]],
                                 "recent_values": new[new["series_id"] == sid]["value"].tolist()}
                                for sid in series[:n_rows]])
        plain = request[["series_id", "horizon"]]
        _, plain_seconds = _timed(lambda: forecast_request(champion, plain))
        _, fresh_seconds = _timed(lambda: forecast_request(champion, request))
        print(f"serving request of {n_rows} series: {plain_seconds * 1000:.0f} ms from the trained data end, "
              f"{fresh_seconds * 1000:.0f} ms with {new_steps} recent observations per series")


def _timed(func):
    started = time.perf_counter()
    result = func()
    return result, time.perf_counter() - started


if __name__ == "__main__":
    main()
