"""Family check of the ETS and Theta forecasters against statsforecast's AutoETS / AutoTheta on M3.

Per series: train on the training part, forecast the official test part, score sMAPE, MASE, MSIS (95%) and
the coverage of the 95% interval (``ts_kedro.evaluation.metrics``; MASE/MSIS scale = seasonal naive of lag m
on the training part) and the CPU seconds of the fit (one process, one series at a time). Our families are
built as the pipeline builds them: ``build_forecaster`` with the defaults of the panel's frequency profile.
statsforecast is optional and not in the project's environment: ``--sf-python`` names an interpreter that
has it; its forecasts are made there in a subprocess and scored here. Naive2 (M4's benchmark) is the
reference for OWA.

Subsets (``--n-series`` takes the first N in file order):

=========  ==========================  ====  ====  ==
subset     files                       freq  h     m
=========  ==========================  ====  ====  ==
yearly     m3/M3_yearly_*_long.csv     YS    6     1
quarterly  m3/M3_quarterly_*_long.csv  QS    8     4
monthly    m3/M3_monthly_*_long.csv    MS    18    12
=========  ==========================  ====  ====  ==

Example (the measurements of the ETS/Theta report)::

    .venv/bin/python benchmarks/family_check_ets_theta.py yearly --sf-python /path/to/python/with/statsforecast
    .venv/bin/python benchmarks/family_check_ets_theta.py monthly --n-series 200 --sf-python ...

Prints one table (mean over series of sMAPE, MASE, MSIS, coverage; OWA against Naive2 on the means; CPU s
per series) and writes the per-series scores to ``--out`` (CSV).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SUBSETS = {
    "yearly": ("m3/M3_yearly_train_long.csv", "m3/M3_yearly_test_long.csv", "YS"),
    "quarterly": ("m3/M3_quarterly_train_long.csv", "m3/M3_quarterly_test_long.csv", "QS"),
    "monthly": ("m3/M3_monthly_train_long.csv", "m3/M3_monthly_test_long.csv", "MS"),
}
LEVEL = 95
SF_MODELS = {"sf_autoets": "AutoETS", "sf_autotheta": "AutoTheta"}


def load(subset: str, n_series: int | None, data: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    train_file, test_file, freq = SUBSETS[subset]
    train = pd.read_csv(data / train_file, parse_dates=["timestamp"])
    test = pd.read_csv(data / test_file, parse_dates=["timestamp"])
    ids = list(dict.fromkeys(train["series_id"]))
    keep = set(ids[:n_series] if n_series else ids)
    return (train[train["series_id"].isin(keep)].reset_index(drop=True),
            test[test["series_id"].isin(keep)].reset_index(drop=True), freq)


def ours(family: str, train: pd.DataFrame, freq: str, horizon: int, hyperparameters: dict):
    """Forecasts, CPU seconds per series and a model label per series of one of our families."""
    sys.path.insert(0, str(ROOT / "src"))
    from ts_kedro.forecasters import build_forecaster
    from ts_kedro.frequency import derive_profile

    lengths = train.groupby("series_id").size()
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": [LEVEL]}, lengths)
    model = build_forecaster({"class": family, "hyperparameters": hyperparameters}, freq=freq,
                             season_length=profile.season_length, profile_defaults=profile.forecaster_defaults())
    model.fit(train)
    forecast = model.predict(horizon, [LEVEL])
    seconds = {sid: state.fit_seconds for sid, state in model.fitted_.items()}
    if family == "ets":
        labels = dict(model.model_by_series_)
    else:
        labels = {sid: f"{model.model_by_series_[sid]}{'+seasonal' if adjusted else ''}"
                  for sid, adjusted in model.seasonally_adjusted_.items()}
    labels.update({sid: f"fallback:{f}" for sid, f in model.served_by_.items() if f != family})
    return forecast, seconds, labels


def statsforecast_forecasts(train: pd.DataFrame, freq: str, horizon: int, m: int, python: str):
    """AutoETS and AutoTheta (season_length=m) forecasts made by ``python`` (which must have statsforecast)."""
    with tempfile.TemporaryDirectory() as tmp:
        train.to_csv(Path(tmp) / "train.csv", index=False)
        done = subprocess.run([python, __file__, "--sf-worker", tmp, "--freq", freq, "--horizon", str(horizon),
                               "--season", str(m)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"statsforecast worker failed: {done.stderr[-2000:]}")
        out = {}
        for engine in SF_MODELS:
            forecast = pd.read_csv(Path(tmp) / f"{engine}.csv", parse_dates=["timestamp"])
            out[engine] = (forecast, json.loads((Path(tmp) / f"{engine}.json").read_text()))
    return out


def _sf_worker(folder: str, freq: str, horizon: int, m: int) -> None:
    """Runs in the statsforecast interpreter: fit every series alone (CPU seconds per series), one process."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta

    train = pd.read_csv(Path(folder) / "train.csv", parse_dates=["timestamp"])
    train = train.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    groups = list(train.groupby("unique_id", sort=False))
    for engine, name in SF_MODELS.items():
        make = {"AutoETS": AutoETS, "AutoTheta": AutoTheta}[name]
        # numba compilation happens on the first fit: warm up on one series and do not count it
        StatsForecast(models=[make(season_length=m)], freq=freq, n_jobs=1).forecast(df=groups[0][1], h=horizon,
                                                                                   level=[LEVEL])
        frames, seconds = [], {}
        for sid, frame in groups:
            started = time.process_time()
            out = StatsForecast(models=[make(season_length=m)], freq=freq, n_jobs=1).forecast(
                df=frame, h=horizon, level=[LEVEL])
            seconds[str(sid)] = time.process_time() - started
            frames.append(out.reset_index() if "unique_id" not in out.columns else out)
        forecast = pd.concat(frames, ignore_index=True).rename(columns={
            "unique_id": "series_id", "ds": "timestamp", name: "mean", f"{name}-lo-{LEVEL}": f"lo-{LEVEL}",
            f"{name}-hi-{LEVEL}": f"hi-{LEVEL}"})
        forecast[["series_id", "timestamp", "mean", f"lo-{LEVEL}", f"hi-{LEVEL}"]].to_csv(
            Path(folder) / f"{engine}.csv", index=False)
        (Path(folder) / f"{engine}.json").write_text(json.dumps(seconds))


def score(name: str, forecast: pd.DataFrame, test: pd.DataFrame, insample: dict, m: int) -> pd.DataFrame:
    from ts_kedro.evaluation.metrics import coverage, mase, msis, smape

    columns = [c for c in ("mean", f"lo-{LEVEL}", f"hi-{LEVEL}") if c in forecast.columns]
    joined = test.merge(forecast[["series_id", "timestamp", *columns]], on=["series_id", "timestamp"], how="left")
    if joined["mean"].isna().any():
        raise RuntimeError(f"{name}: forecast misses {int(joined['mean'].isna().sum())} test points")
    rows = []
    for sid, group in joined.groupby("series_id", sort=False):
        y, yhat = group["value"].to_numpy(float), group["mean"].to_numpy(float)
        row = {"series_id": sid, "engine": name, "smape": float(smape(y, yhat)),
               "mase": float(mase(y, yhat, insample[sid], m)), "msis": np.nan, "coverage": np.nan}
        if f"lo-{LEVEL}" in group:
            lo, hi = group[f"lo-{LEVEL}"].to_numpy(float), group[f"hi-{LEVEL}"].to_numpy(float)
            row["msis"] = float(msis(y, lo, hi, insample[sid], m, alpha=1 - LEVEL / 100))
            row["coverage"] = float(coverage(y, lo, hi))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subset", nargs="?", choices=sorted(SUBSETS))
    parser.add_argument("--n-series", type=int, default=None, help="first N series in file order")
    parser.add_argument("--engines", default="ets,theta,statsforecast,naive2")
    parser.add_argument("--hyperparameters", default="{}",
                        help='JSON per family, e.g. {"ets": {"information_criterion": "aic"}} (n_jobs default 1)')
    parser.add_argument("--sf-python", default=sys.executable, help="interpreter with statsforecast installed")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="per-series scores (CSV)")
    parser.add_argument("--sf-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--freq", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--horizon", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--season", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sf_worker:
        _sf_worker(args.sf_worker, args.freq, args.horizon, args.season)
        return 0
    if args.subset is None:
        parser.error("a subset is required")
    sys.path.insert(0, str(ROOT / "src"))
    from ts_kedro.evaluation.metrics import naive2
    from ts_kedro.frequency import season_length_for

    train, test, freq = load(args.subset, args.n_series, args.data)
    horizon = int(test.groupby("series_id").size().iloc[0])
    m = season_length_for(freq)
    insample = {sid: g["value"].to_numpy(float) for sid, g in train.groupby("series_id", sort=False)}
    hyper_all = json.loads(args.hyperparameters)
    scores, seconds, labels = [], {}, {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        started = time.process_time()
        if engine in ("ets", "theta"):
            hyper = {"n_jobs": 1, **hyper_all.get(engine, {})}
            forecast, seconds[engine], labels[engine] = ours(engine, train, freq, horizon, hyper)
            scores.append(score(engine, forecast, test, insample, m))
        elif engine == "statsforecast":
            try:
                results = statsforecast_forecasts(train, freq, horizon, m, args.sf_python)
            except RuntimeError as exc:
                print(f"statsforecast skipped: {exc}", file=sys.stderr)
                continue
            for name, (forecast, secs) in results.items():
                seconds[name] = secs
                scores.append(score(name, forecast, test, insample, m))
        elif engine == "naive2":
            rows = [pd.DataFrame({"series_id": sid, "timestamp": test.loc[test["series_id"] == sid, "timestamp"].to_numpy(),
                                  "mean": naive2(values, horizon, m)}) for sid, values in insample.items()]
            scores.append(score(engine, pd.concat(rows, ignore_index=True), test, insample, m))
        else:
            parser.error(f"unknown engine {engine!r}")
        print(f"{engine}: done in {time.process_time() - started:.1f} s CPU (this process)", file=sys.stderr)
    per_series = pd.concat(scores, ignore_index=True)
    per_series["cpu_s"] = [seconds.get(e, {}).get(s, np.nan) for e, s in zip(per_series["engine"], per_series["series_id"])]
    per_series["model"] = [labels.get(e, {}).get(s, "") for e, s in zip(per_series["engine"], per_series["series_id"])]
    table = per_series.groupby("engine", sort=False).agg(
        series=("series_id", "size"), smape=("smape", "mean"), mase=("mase", "mean"), msis=("msis", "mean"),
        coverage95=("coverage", "mean"), cpu_s_mean=("cpu_s", "mean"), cpu_s_max=("cpu_s", "max"))
    if "naive2" in table.index:
        ref = table.loc["naive2"]
        table["owa"] = 0.5 * (table["smape"] / ref["smape"] + table["mase"] / ref["mase"])
    print(f"{args.subset}: {train['series_id'].nunique()} series, h={horizon}, m={m}, freq={freq}")
    print(table.round(3).to_string())
    for engine, by_series in labels.items():
        print(f"{engine} models:", pd.Series(by_series).value_counts().head(8).to_dict())
    if args.out:
        per_series.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
