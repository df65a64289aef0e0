"""Experiment driver: one panel's test windows through ``kedro run`` with extra parameters (``key=value,...``).

Measured ``backtest.n_windows`` on panels of one and two series (docs/benchmarks.md, "The misses off the matrix,
judged on more than their last window"): each origin k holds out the horizon that ends k horizons before the
data's end (``matrix.earlier_origin``), runs the Day-0 pipeline with the given parameters and prints one JSON line
with the selected model's scores. ``name``: a ``matrix.py`` dataset or a ``small_panels.py`` panel.

    TQDM_DISABLE=1 .venv/bin/python benchmarks/experiments/few_series_origins.py yearly_sunspots 0,1,2,3,4,5,6,7 \\
        backtest.n_windows=10 w10 >> benchmarks/results/few_series_origins.jsonl
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matrix  # noqa: E402
import small_panels  # noqa: E402
from selection_replay import score  # noqa: E402


def main(argv: list[str]) -> None:
    name, origins, extra, tag = argv[0], [int(k) for k in argv[1].split(",")], argv[2], argv[3]
    if name in matrix.DATASETS:
        loader, freq, horizon, _ = matrix.DATASETS[name]
        train, test = loader()
    else:
        long, freq, horizon = small_panels.panels()[name]()
        train, test = matrix._split_last(long.drop_duplicates(["series_id", "timestamp"]), horizon)
    for origin in origins:
        part, held = matrix.earlier_origin(train, test, horizon, origin)
        run = matrix.run_kedro(matrix.ROOT / "data" / "exp" / f"{name}_{tag}_o{origin}", part, freq, horizon, None,
                               extra_params=extra)
        scores = score(run["forecasts"], held, run["panel"], int(run["profile"]["season_length"]), matrix.LEVELS)
        print(json.dumps({"panel": name, "origin": origin, "tag": tag, "params": extra,
                          "selected": run["overall_model"], "members": run["ensemble_members"],
                          "mase": round(scores["mase"], 3), "smape": round(scores["smape"], 3),
                          "cov80": round(scores["coverage-80"], 3), "cov95": round(scores["coverage-95"], 3),
                          "msis95": round(scores["msis-95"], 3), "wall_s": round(run["wall_s"])}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
