"""Update versus refit, per family: what a Day-N cycle costs when it conditions the champion on new data.

For every family the training pipeline builds (``conf/base/parameters_training.yml``, the same
hyperparameters and frequency-profile defaults as ``build_forecaster`` gets there), on a real long panel:

1. fit on every series minus its last ``--new-steps`` points (default: one season of the profile);
2. ``refit``: fit a fresh model on the whole series (what ``SelectedPanelModel.refit`` did in every cycle);
3. ``update``: the model of step 1 ``update``d with the last ``--new-steps`` points;
4. both predict the panel horizon; the table shows wall and CPU seconds of the refit and of the update, their
   ratio (``update factor``), the predict time, the ratio of refit + predict to update + predict (``cycle
   factor``: what a Day-N cycle gains, since ETS and ARIMA run their filter at predict), and the mean absolute gap between the two forecasts relative to the mean level
   (how far "no new parameters" moves the forecast from "new parameters" over one cycle).

Default data: the shipped sample (24 real M4 Hourly series, ``data/01_raw/m4_hourly_sample.csv``) with
``panel.freq``/``panel.horizon`` of ``conf/base/parameters.yml``. Any long CSV (``series_id, timestamp,
value``) works with ``--data --freq --horizon``, e.g. M3 monthly::

    .venv/bin/python benchmarks/update_speed.py
    .venv/bin/python benchmarks/update_speed.py --families seasonal_naive,theta,ets,arima \\
        --data ../shared/data/m3/M3_monthly_train_long.csv --freq MS --horizon 18 --n-series 50

``--n-jobs`` (default 1) is the families' worker count for both the refit and the update, so the ratio
compares like with like. Prints a Markdown table (pasted into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data" / "01_raw" / "m4_hourly_sample.csv"


def load_panel(path: Path, n_series: int | None) -> pd.DataFrame:
    panel = pd.read_csv(path, parse_dates=["timestamp"])
    panel["series_id"] = panel["series_id"].astype(str)
    panel["value"] = panel["value"].astype(float)
    ids = list(dict.fromkeys(panel["series_id"]))
    if n_series:
        panel = panel[panel["series_id"].isin(ids[:n_series])]
    return panel.sort_values(["series_id", "timestamp"]).reset_index(drop=True)


def family_specs(families: list[str], n_jobs: int) -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())
    specs = {}
    for family in families:
        spec = copy.deepcopy(config[family]["model"])
        hyperparameters = dict(spec.get("hyperparameters") or {})
        if "n_jobs" in hyperparameters or family in ("arima", "ets", "theta", "intermittent", "prophet"):
            hyperparameters["n_jobs"] = n_jobs
        spec["hyperparameters"] = hyperparameters
        specs[family] = spec
    return specs


def timed(func):
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    from ts_kedro.forecasters import build_forecaster
    from ts_kedro.frequency import derive_profile

    panel_config = yaml.safe_load((ROOT / "conf" / "base" / "parameters.yml").read_text())["panel"]
    training = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())["training"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--freq", default=panel_config["freq"])
    parser.add_argument("--horizon", type=int, default=panel_config["horizon"])
    parser.add_argument("--n-series", type=int, default=None)
    parser.add_argument("--new-steps", type=int, default=None, help="points per cycle (default: one season)")
    parser.add_argument("--families", default=",".join(training["families"]))
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()

    panel = load_panel(args.data, args.n_series)
    lengths = panel.groupby("series_id").size()
    profile = derive_profile({"freq": args.freq, "horizon": args.horizon}, lengths.to_numpy())
    new_steps = args.new_steps or max(profile.season_length, 1)
    from_end = panel.groupby("series_id").cumcount(ascending=False)
    head, new = panel[from_end >= new_steps].reset_index(drop=True), panel[from_end < new_steps].reset_index(drop=True)
    level = float(panel.groupby("series_id")["value"].apply(lambda v: v.abs().mean()).mean())
    print(f"{args.data.name}: {lengths.size} series, {len(panel)} points, freq {args.freq}, horizon {args.horizon}, "
          f"{new_steps} new points per series per cycle\n")
    rows = []
    for family, spec in family_specs(args.families.split(","), args.n_jobs).items():
        def build():
            return build_forecaster(spec, freq=args.freq, season_length=profile.season_length,
                                    horizon=args.horizon, profile_defaults=profile.forecaster_defaults())

        base = build().fit(head)
        refitted, refit_wall, refit_cpu = timed(lambda: build().fit(panel))
        updated, update_wall, update_cpu = timed(lambda: copy.deepcopy(base).update(new))
        levels = [80]
        (refit_forecast, predict_wall, _) = timed(lambda: refitted.predict(args.horizon, levels))
        update_forecast, update_predict_wall, _ = timed(lambda: updated.predict(args.horizon, levels))
        starts_after = bool((update_forecast.groupby("series_id")["timestamp"].min()
                             > panel.groupby("series_id")["timestamp"].max()).all())
        gap = float(np.mean(np.abs(update_forecast["mean"].to_numpy() - refit_forecast["mean"].to_numpy()))) / level
        rows.append({"family": family, "refit wall s": refit_wall, "refit CPU s": refit_cpu,
                     "update wall s": update_wall, "update CPU s": update_cpu,
                     "update factor": refit_wall / max(update_wall, 1e-9),
                     "predict wall s": predict_wall,
                     "cycle factor": (refit_wall + predict_wall) / max(update_wall + update_predict_wall, 1e-9),
                     "forecast gap / level": gap, "starts after new data": starts_after})
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
              flush=True)
    print()
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
