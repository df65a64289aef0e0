"""Day N when a family refuses some series' new points: what the update costs and serves.

A family refuses to update a series whose new points its fitted model cannot take: a value <= 0 where ARIMA
models the log, or ETS a multiplicative error or season (a closed shop's day, an ATM out of service). Before
commit "refit only the refused series", ``SelectedPanelModel.update`` then refitted the whole family on the
history; now only the refused series are refitted and every other series is updated
(``Forecaster.update_refitting_refused``).

This script takes a finished ``kedro run`` (its ``06_models/panel_model.pkl`` and ``03_primary`` panel, e.g. a
``benchmarks/short_horizon.py`` or ``matrix.py`` work directory) and the dataset's test part, moves the selected
panel model through the first ``--origins`` test steps one step at a time with ``SelectedPanelModel.update``
(Day N's way, as ``short_horizon.py --rolling`` does, but with every series kept), and reports per origin the
update's seconds, the families refitted whole and the series refitted alone, plus the scores of the
``--horizon``-step forecasts from those origins (all series, the refused ones, the others). Run it under two
code versions (``PYTHONPATH=<snapshot>/src``) to compare them; the result goes to
``benchmarks/results/refused_updates_<dataset>_<tag>.json``.

    TQDM_DISABLE=1 .venv/bin/python benchmarks/refused_updates.py --dataset nn5_daily --every 3 \\
        --run-dir data/benchmarks/short_horizon/nn5_daily_h1_derived --origins 8 --tag after
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matrix import DATASETS, LEVELS, subset  # noqa: E402
from selection_replay import score  # noqa: E402
from short_horizon import _selected_model, _update_inputs, refused_series  # noqa: E402


def roll(run_dir: Path, full_test: pd.DataFrame, origins: int, horizon: int, season: int) -> dict:
    """The selected model updated through ``origins`` test steps; per origin what the update did and cost."""
    import ts_kedro

    model = _selected_model(run_dir)
    panel = pd.read_parquet(run_dir / "data" / "03_primary" / "primary_panel.parquet")
    panel = panel[panel["series_id"].isin(set(model.series_ids))]
    test, filled = _update_inputs(model, full_test, panel)
    base = panel[["series_id", "timestamp", "value", *(["is_anomaly"] if "is_anomaly" in panel else [])]]
    position = filled.groupby("series_id").cumcount()
    steps, frames = [], []
    for k in range(origins + 1):
        history = pd.concat([base, filled[position < k]], ignore_index=True).sort_values(["series_id", "timestamp"])
        started = time.perf_counter()
        current = model.update(history) if k else model
        seconds = time.perf_counter() - started
        if k:
            steps.append({"origin": k, "seconds": seconds,
                          "refitted_families": sorted(current.metadata.get("refitted_families", {})),
                          "refitted_series": {family: sorted(map(str, series)) for family, series
                                              in current.metadata.get("refitted_series", {}).items()}})
            print(f"origin {k}: {seconds:.1f} s, families refitted {steps[-1]['refitted_families']}, series "
                  f"refitted alone {steps[-1]['refitted_series']}", flush=True)
        frames.append(current.predict(horizon=horizon).assign(origin=k))
    forecasts = pd.concat(frames, ignore_index=True)
    # the series some family cannot update over these origins (read the same way under any code version)
    consumed = full_test.sort_values(["series_id", "timestamp"])
    consumed = consumed[consumed.groupby("series_id").cumcount() < origins]
    refused = sorted(map(str, refused_series(run_dir, consumed, panel)))
    scores = {}
    scored = test.merge(forecasts, on=["series_id", "timestamp"])
    keyed = lambda f: f.assign(series_id=f["series_id"].astype(str) + "@" + f["origin"].astype(str))  # noqa: E731
    base_keyed = pd.concat([panel.assign(series_id=panel["series_id"].astype(str) + "@" + str(k))
                            for k in range(origins + 1)], ignore_index=True)
    intervals = [c for c in scored if c[:3] in ("lo-", "hi-")]
    for part, ids in (("all", set(model.series_ids)), ("refused", set(refused)),
                      ("others", set(model.series_ids) - set(refused))):
        mine = keyed(scored[scored["series_id"].isin(ids)])
        if not len(mine):
            continue
        scores[part] = score(mine[["series_id", "timestamp", "mean", *intervals]],
                             mine[["series_id", "timestamp", "value"]], base_keyed, season, LEVELS)
    package = Path(ts_kedro.__file__).resolve().parent
    code = str(package.relative_to(ROOT)) if package.is_relative_to(ROOT) else "a snapshot on PYTHONPATH"
    return {"code": code, "origins": origins, "horizon": horizon,
            "n_series": len(model.series_ids), "families": sorted(model.family_models),
            "update_seconds_total": sum(s["seconds"] for s in steps),
            "origins_with_a_family_refitted": sum(bool(s["refitted_families"]) for s in steps),
            "series_refitted_alone": sum(len(v) for s in steps for v in s["refitted_series"].values()),
            "refused_series": refused, "steps": steps, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--every", type=int, default=1, help="the run's every n-th series (to read its test part)")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--origins", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    loader, _, _, _ = DATASETS[args.dataset]
    _, full_test = subset(*loader(), args.every, None)
    profile = json.loads((args.run_dir / "data" / "08_reporting" / "frequency_profile.json").read_text())
    result = roll(args.run_dir, full_test, args.origins, args.horizon, int(profile["season_length"]))
    result.update(dataset=args.dataset, run_dir=args.run_dir.name, tag=args.tag)
    out = ROOT / "benchmarks" / "results" / f"refused_updates_{args.dataset}_{args.tag}.json"
    out.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({k: v for k, v in result.items() if k not in ("steps",)}, indent=1, default=float))


if __name__ == "__main__":
    main()
