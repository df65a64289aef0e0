"""Score selection rules and ensembles offline from the forecasts that ``m4_benchmark.py`` saved (no refitting).

Reads ``<run>_forecasts.csv.gz`` (every family's forecasts of the test and the validation window) and prints, for
every candidate (family, or median ensemble of a subset of families) its validation and test OWA, and the test
scores of the selection rules: the old one (per series, lowest validation sMAPE among families), per series
lowest OWA contribution (families; families + ensembles) and one global candidate by validation OWA.

    .venv/bin/python benchmarks/selection_analysis.py data/08_reporting/benchmarks/m4_benchmark_full_<time>_forecasts.csv.gz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import m4_benchmark as mb  # noqa: E402  (the benchmark's own loading and scoring)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("forecasts", help="the _forecasts.csv.gz file of a benchmark run")
    parser.add_argument("--season-length", type=int, default=24)
    parser.add_argument("--horizon", type=int, default=48)
    args, rest = parser.parse_known_args(argv)
    bench = mb.parse_args(rest)
    m, h = args.season_length, args.horizon
    saved = pd.read_csv(args.forecasts, parse_dates=["timestamp"], dtype={"series_id": str})
    train, test = mb.load_split(bench)
    keep = set(saved["series_id"])
    train, test = train[train["series_id"].isin(keep)], test[test["series_id"].isin(keep)]
    fit_part, valid_part = mb.validation_split(train, h)
    windows = {"test": (train, test), "validation": (fit_part, valid_part)}
    table, contributions, smapes, candidates = {}, {}, {}, {}
    for window, (history, actual) in windows.items():
        insample = {sid: g["value"].to_numpy(float) for sid, g in history.groupby("series_id", sort=False)}
        reference, _ = mb.score(mb.naive2_forecast(history, actual, insample, m), actual, insample, m, None)
        frames = {name: f.drop(columns=["model", "window"]) for name, f in saved[saved["window"] == window].groupby("model")}
        families = list(frames)
        frames.update({mb.ensemble_name(c): mb.ensemble({f: frames[f] for f in c}) for c in mb.combinations(families)})
        candidates[window] = frames
        contributions[window] = pd.DataFrame({n: mb.owa_contributions(f, actual, insample, m, reference)
                                              for n, f in frames.items()})
        smapes[window] = pd.DataFrame({n: mb.score(f, actual, insample, m, None)[1].set_index("series_id")["smape"]
                                       for n, f in frames.items()})
        for name in frames:
            table.setdefault(name, {})[f"{window} OWA"] = contributions[window][name].mean()
    result = pd.DataFrame(table).T.sort_values("validation OWA")
    test_c, valid_c = contributions["test"], contributions["validation"]
    rules = {
        "old: per series lowest validation sMAPE (families)": smapes["validation"][families].idxmin(axis=1),
        "per series lowest validation OWA share (families)": valid_c[families].idxmin(axis=1),
        "per series lowest validation OWA share (families + ensembles)": valid_c.idxmin(axis=1),
        f"one candidate for all: {valid_c.mean().idxmin()}": pd.Series(valid_c.mean().idxmin(), index=valid_c.index),
    }
    rows = {name: {"test OWA": float(sum(test_c.at[sid, c] for sid, c in choice.items()) / len(choice))}
            for name, choice in rules.items()}
    print(result.round(3).to_string())
    print(pd.DataFrame(rows).T.round(3).to_string())
    return result


if __name__ == "__main__":
    main()
