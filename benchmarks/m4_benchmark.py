"""M4 Hourly benchmark: our model families, their ensemble and per-series selection, scored exactly as M4.

Trains on the training part of every series, forecasts the test part, and scores sMAPE, MASE (m =
season length), OWA against Naive2 on the same series, and MSIS / coverage of the 95% interval
(definitions: ``../shared/data/M4_REFERENCE.md``, code: ``ts_kedro.evaluation.metrics``).
``--peers`` runs statsforecast's SeasonalNaive, AutoARIMA and MSTL on the same series and cores.

Examples (from the project root)::

    .venv/bin/python benchmarks/m4_benchmark.py --quick --families seasonal_naive,arima
    .venv/bin/python benchmarks/m4_benchmark.py --families seasonal_naive --peers --peer-models snaive,mstl
    .venv/bin/python benchmarks/m4_benchmark.py --long my_panel.csv --horizon 24 --season-length 24
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

from ts_kedro.evaluation import metrics
from ts_kedro.evaluation.backtest import PeakMemorySampler
from ts_kedro.forecasters import FORECASTERS, ForecasterError, build_forecaster, get_forecaster_class

logger = logging.getLogger("m4_benchmark")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
M4_HOURLY = PROJECT_ROOT.parent / "shared" / "data" / "m4_hourly"
DEFAULT_OUTPUT = PROJECT_ROOT / "data" / "08_reporting" / "benchmarks"
DEFAULT_PARAMS = PROJECT_ROOT / "conf" / "base" / "parameters_training.yml"
PEER_MODELS = ("snaive", "autoarima", "mstl")
LONG_COLUMNS = ["series_id", "timestamp", "value"]


class BenchmarkInputError(ValueError):
    """Benchmark input files that cannot be read as an M4-style train/test pair or a long panel."""


# ---- input ------------------------------------------------------------------------------------------
def _read_any(path: Path) -> pd.DataFrame:
    """A long ``series_id, timestamp, value`` frame from a long CSV or an M4 wide CSV (id then values)."""
    if not path.exists():
        raise BenchmarkInputError(f"input file {path} does not exist")
    header = pd.read_csv(path, nrows=0).columns
    if set(LONG_COLUMNS) <= set(header):
        frame = pd.read_csv(path, usecols=LONG_COLUMNS, parse_dates=["timestamp"], dtype={"series_id": str})
        frame["value"] = frame["value"].astype(float)
        return frame
    wide = pd.read_csv(path, index_col=0, dtype={header[0]: str})
    long = wide.stack().rename("value").reset_index()  # stack drops the padding NaNs of shorter series
    long.columns = ["series_id", "position", "value"]
    long["step"] = long.groupby("series_id").cumcount()
    return long.drop(columns="position").assign(value=lambda f: f["value"].astype(float))


def _wide_timestamps(train: pd.DataFrame, test: pd.DataFrame, starts: pd.Series | None, freq: str):
    """Give wide-format series a time axis: per-series starts if known, else a common arbitrary start."""
    if starts is None:
        logger.warning("no start timestamps for the wide files: every series starts at 2000-01-01 (arbitrary)")
    offsets = pd.tseries.frequencies.to_offset(freq)
    lengths = train.groupby("series_id").size()
    for frame, shift in ((train, None), (test, lengths)):
        begin = frame["series_id"].map(starts) if starts is not None else pd.Timestamp("2000-01-01")
        if starts is not None and begin.isna().any():
            raise BenchmarkInputError(f"no start timestamp for series {frame.loc[begin.isna(), 'series_id'].iloc[0]!r}")
        step = frame["step"] + (frame["series_id"].map(shift) if shift is not None else 0)
        frame["timestamp"] = pd.to_datetime(begin) + step.to_numpy() * pd.Timedelta(offsets)
    return train.drop(columns="step"), test.drop(columns="step")


def load_split(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test long frames from ``--train/--test`` (wide or long) or ``--long`` (last horizon = test)."""
    if args.long:
        panel = _read_any(Path(args.long)).sort_values(["series_id", "timestamp"])
        from_end = panel.groupby("series_id").cumcount(ascending=False)
        return panel[from_end >= args.horizon].reset_index(drop=True), panel[from_end < args.horizon].reset_index(drop=True)
    train, test = _read_any(Path(args.train)), _read_any(Path(args.test))
    if "step" in train.columns or "step" in test.columns:
        starts = None
        if args.starts:
            table = pd.read_csv(args.starts, dtype={0: str})
            starts = pd.Series(pd.to_datetime(table.iloc[:, 1]).to_numpy(), index=table.iloc[:, 0].astype(str))
        if "step" not in train.columns or "step" not in test.columns:
            raise BenchmarkInputError("--train and --test must both be wide or both be long")
        train, test = _wide_timestamps(train, test, starts, args.freq)
    return (train.sort_values(["series_id", "timestamp"]).reset_index(drop=True),
            test.sort_values(["series_id", "timestamp"]).reset_index(drop=True))


def _natural_order(ids) -> list[str]:
    """M4 ids in numeric order (H2 before H10)."""
    return sorted(ids, key=lambda s: (len(s), s))


def choose_series(train: pd.DataFrame, test: pd.DataFrame, n_series: int | None, horizon: int):
    """Evenly spaced subset of ``n_series`` ids (deterministic), and checks that every test has ``horizon`` points."""
    counts = test.groupby("series_id").size()
    wrong = counts[counts != horizon]
    if not wrong.empty:
        raise BenchmarkInputError(f"series {wrong.index[0]!r} has {wrong.iloc[0]} test points, expected --horizon {horizon}")
    missing = set(train["series_id"]) ^ set(test["series_id"])
    if missing:
        raise BenchmarkInputError(f"series {sorted(missing)[:5]} are in only one of train/test")
    ids = _natural_order(counts.index)
    if n_series and n_series < len(ids):
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, n_series).round().astype(int)]
    keep = set(ids)
    return ids, train[train["series_id"].isin(keep)].reset_index(drop=True), test[test["series_id"].isin(keep)].reset_index(drop=True)


# ---- scoring ---------------------------------------------------------------------------------------
def score(forecast: pd.DataFrame, test: pd.DataFrame, insample: dict[str, np.ndarray], m: int, level: int | None):
    """M4 aggregates (mean over series of per-series values) of one forecast frame; also per-series sMAPE."""
    joined = test.merge(forecast, on=["series_id", "timestamp"], how="left", validate="one_to_one")
    if joined["mean"].isna().any():
        raise BenchmarkInputError(f"forecast misses test timestamps, e.g. series {joined.loc[joined['mean'].isna(), 'series_id'].iloc[0]!r}")
    rows = []
    for sid, group in joined.groupby("series_id", sort=False):
        y, yhat = group["value"].to_numpy(float), group["mean"].to_numpy(float)
        row = {"series_id": sid, "smape": metrics.smape(y, yhat), "mase": metrics.mase(y, yhat, insample[sid], m)}
        if level is not None and f"lo-{level}" in group:
            lo, hi = group[f"lo-{level}"].to_numpy(float), group[f"hi-{level}"].to_numpy(float)
            row["msis"] = metrics.msis(y, lo, hi, insample[sid], m, alpha=1 - level / 100)
            row["coverage"] = metrics.coverage(y, lo, hi)
        rows.append(row)
    per_series = pd.DataFrame(rows)
    return {c: float(per_series[c].mean()) for c in per_series.columns if c != "series_id"}, per_series


def naive2_forecast(train: pd.DataFrame, test: pd.DataFrame, insample: dict[str, np.ndarray], m: int) -> pd.DataFrame:
    """M4's Naive2 on the test timestamps (point forecast only)."""
    frames = [
        pd.DataFrame({"series_id": sid, "timestamp": group["timestamp"].to_numpy(),
                      "mean": metrics.naive2(insample[sid], len(group), m)})
        for sid, group in test.groupby("series_id", sort=False)
    ]
    return pd.concat(frames, ignore_index=True)


# ---- our families ----------------------------------------------------------------------------------
def family_specs(families: list[str], params_path: Path | None, overrides: dict) -> dict[str, dict]:
    """Model spec per family: ``<family>.model`` of the training parameters file, then JSON overrides."""
    configured = {}
    if params_path and params_path.exists():
        configured = yaml.safe_load(params_path.read_text()) or {}
    specs = {}
    for family in families:
        spec = dict((configured.get(family) or {}).get("model") or {"class": family, "hyperparameters": {}})
        spec.setdefault("class", family)
        spec["hyperparameters"] = {**(spec.get("hyperparameters") or {}), **overrides.get(family, {})}
        specs[family] = spec
    return specs


def available(families: list[str]) -> tuple[list[str], dict[str, str]]:
    """Families whose class imports now; the others with the reason (another engineer may still be writing them)."""
    ok, skipped = [], {}
    for family in families:
        try:
            get_forecaster_class(FORECASTERS.get(family, family))
            ok.append(family)
        except ForecasterError as exc:
            skipped[family] = str(exc)
    return ok, skipped


def run_family(spec: dict, train: pd.DataFrame, horizon: int, freq: str, m: int, level: int):
    """Fit on the whole training part and predict ``horizon`` steps, with wall time and peak memory."""
    forecaster = build_forecaster(spec, freq=freq, season_length=m)
    with PeakMemorySampler() as memory:
        started = time.perf_counter()
        forecaster.fit(train)
        fitted = time.perf_counter()
        forecast = forecaster.predict(horizon, [level])
        predicted = time.perf_counter()
    stats = {"fit_s": fitted - started, "predict_s": predicted - fitted, "peak_rss_mb": memory.peak_mb}
    return forecast, stats


def validation_split(train: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training part minus its last ``horizon`` points per series, and those points (the validation window)."""
    from_end = train.groupby("series_id").cumcount(ascending=False)
    return train[from_end >= horizon].reset_index(drop=True), train[from_end < horizon].reset_index(drop=True)


def owa_contributions(forecast: pd.DataFrame, actual: pd.DataFrame, insample: dict[str, np.ndarray], m: int,
                      reference: dict) -> pd.Series:
    """Per-series share of OWA: 0.5 (sMAPE_i / sMAPE_Naive2 + MASE_i / MASE_Naive2), Naive2 aggregated over series.

    OWA is linear in the per-series values, so picking per series the candidate with the lowest contribution
    minimises the OWA of the chosen forecasts on that window.
    """
    _, per_series = score(forecast, actual, insample, m, None)
    per_series = per_series.set_index("series_id")
    return 0.5 * (per_series["smape"] / reference["smape"] + per_series["mase"] / reference["mase"])


def ensemble(forecasts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Median across families of every column (mean and each bound): a robust combination, no weights to fit."""
    stacked = pd.concat(forecasts.values(), ignore_index=True)
    return stacked.groupby(["series_id", "timestamp"], sort=False).median(numeric_only=True).reset_index()


def combinations(families: list[str]) -> list[tuple[str, ...]]:
    """Every subset of two or more families (11 for four): the candidate ensembles."""
    return [combo for size in range(2, len(families) + 1) for combo in itertools.combinations(families, size)]


def ensemble_name(combo: tuple[str, ...]) -> str:
    return "median(" + "+".join(combo) + ")"


def select_per_series(forecasts: dict[str, pd.DataFrame], validation: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each series takes the full-training forecast of the candidate with the lowest validation error."""
    choice = validation.idxmin(axis=1).rename("candidate")
    parts = [forecasts[name][forecasts[name]["series_id"].isin(choice.index[choice == name])] for name in forecasts]
    return pd.concat(parts, ignore_index=True), choice


# ---- peers -----------------------------------------------------------------------------------------
def run_peers(train: pd.DataFrame, horizon: int, m: int, freq: str, level: int, names: list[str], n_jobs: int):
    """statsforecast peers on the same series and cores; each timed separately after a one-series JIT warm-up."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoARIMA, SeasonalNaive

    makers = {
        "snaive": lambda: SeasonalNaive(season_length=m, alias="peer"),
        "autoarima": lambda: AutoARIMA(season_length=m, alias="peer"),
        "mstl": lambda: MSTL(season_length=[m, 7 * m], alias="peer"),
    }
    frame = train.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    first = frame[frame["unique_id"] == frame["unique_id"].iloc[0]]
    results = {}
    for name in names:
        warm = time.perf_counter()
        StatsForecast(models=[makers[name]()], freq=freq, n_jobs=1).forecast(df=first, h=horizon, level=[level])
        warm_s = time.perf_counter() - warm
        with PeakMemorySampler() as memory:
            started = time.perf_counter()
            out = StatsForecast(models=[makers[name]()], freq=freq, n_jobs=n_jobs).forecast(df=frame, h=horizon, level=[level])
            seconds = time.perf_counter() - started
        out = out.reset_index() if "unique_id" not in out.columns else out
        forecast = out.rename(columns={"unique_id": "series_id", "ds": "timestamp", "peer": "mean",
                                       f"peer-lo-{level}": f"lo-{level}", f"peer-hi-{level}": f"hi-{level}"})
        results[name] = (forecast, {"fit_predict_s": seconds, "warmup_s": warm_s, "peak_rss_mb": memory.peak_mb})
        logger.info("peer %s: %.1f s (warm-up %.1f s)", name, seconds, warm_s)
    return results


# ---- report ----------------------------------------------------------------------------------------
def markdown_report(result: dict) -> str:
    level = result["level"]
    lines = [
        f"# M4-style benchmark: {result['dataset']} ({result['n_series']} series{', QUICK subset' if result['quick'] else ''})",
        "",
        f"- date (UTC): {result['date']}; command: `{result['command']}`",
        f"- machine: {result['machine']['cpu_count']} logical cores ({result['machine']['usable_cores']} usable), "
        f"{result['machine']['memory_gb']:.0f} GB RAM, {result['machine']['platform']}, Python {result['machine']['python']}",
        f"- horizon {result['horizon']}, MASE/MSIS season length {result['season_length']}, interval level {level}%",
        f"- peak RSS of the whole run (process + children): {result['peak_rss_mb']:.0f} MB",
        "",
        f"| model | sMAPE | MASE | OWA | MSIS-{level} | coverage-{level} | fit s | predict s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        fmt = lambda key, spec: format(row[key], spec) if row.get(key) is not None and not pd.isna(row.get(key)) else "–"
        lines.append(
            f"| {name} | {fmt('smape', '.3f')} | {fmt('mase', '.3f')} | {fmt('owa', '.3f')} | {fmt('msis', '.3f')} | "
            f"{fmt('coverage', '.3f')} | {fmt('fit_s', '.1f')} | {fmt('predict_s', '.1f')} |"
        )
    lines += ["", "Stage wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["stages_s"].items())]
    if result.get("skipped"):
        lines += ["", "Skipped families: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items())]
    if result.get("ratios"):
        lines += ["", "| ours vs peer | OWA ratio (ours/peer) | time ratio (ours/peer) |", "|---|---|---|"]
        lines += [f"| {r['ours']} vs {r['peer']} | {r['owa_ratio']:.3f} | {r['time_ratio']:.3g} |" for r in result["ratios"]]
    if result.get("validation_owa"):
        lines += ["", "Validation-window OWA of every candidate (lowest first): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in result["validation_owa"].items())]
    for label, key in (("per-series selection", "selection_counts"),
                       ("per-series selection (+ ensembles)", "selection_counts_with_ensembles")):
        if result.get(key):
            lines += ["", f"{label}, counts: " + ", ".join(f"{k} {v}" for k, v in result[key].items())]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(M4_HOURLY / "Hourly-train-long.csv"), help="train CSV, wide (M4) or long")
    parser.add_argument("--test", default=str(M4_HOURLY / "Hourly-test-long.csv"), help="test CSV, wide (M4) or long")
    parser.add_argument("--long", help="one long CSV whose last --horizon points per series are the test part")
    parser.add_argument("--starts", help="CSV series_id,start for wide files (e.g. Hourly-start-timestamps.csv)")
    parser.add_argument("--dataset", default="M4 Hourly", help="name shown in the report")
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--season-length", type=int, default=24)
    parser.add_argument("--freq", default="h")
    parser.add_argument("--level", type=int, default=95)
    parser.add_argument("--families", default="seasonal_naive,arima,prophet,lstm")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="YAML with <family>.model specs")
    parser.add_argument("--hyperparameters", default="{}", help='JSON overrides, e.g. {"arima": {"n_jobs": 2}}')
    parser.add_argument("--quick", action="store_true", help="evenly spaced subset of --n-series series (default 40)")
    parser.add_argument("--n-series", type=int, help="subset size (implies a subset even without --quick)")
    parser.add_argument("--no-selection", action="store_true", help="skip the validation fit for per-series selection")
    parser.add_argument("--peers", action="store_true", help="also run statsforecast peers on the same series")
    parser.add_argument("--peer-models", default=",".join(PEER_MODELS), help=f"subset of {PEER_MODELS}")
    parser.add_argument("--n-jobs", type=int, default=-1, help="cores for the peers (-1: all usable)")
    parser.add_argument("--output-dir", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--save-forecasts", action="store_true",
                        help="also write every family's test and validation forecasts (<stem>_forecasts.csv.gz)")
    args = parser.parse_args(argv)
    if args.quick and not args.n_series:
        args.n_series = 40
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    m, h, level = args.season_length, args.horizon, args.level
    stages: dict[str, float] = {}
    models: dict[str, dict] = {}
    run_memory = PeakMemorySampler().__enter__()

    started = time.perf_counter()
    train, test = load_split(args)
    ids, train, test = choose_series(train, test, args.n_series, h)
    insample = {sid: g["value"].to_numpy(float) for sid, g in train.groupby("series_id", sort=False)}
    stages["load"] = time.perf_counter() - started
    logger.info("loaded %d series (%d train rows) in %.1f s", len(ids), len(train), stages["load"])

    reference, _ = score(naive2_forecast(train, test, insample, m), test, insample, m, None)
    owa = lambda s: metrics.owa(s["smape"], s["mase"], reference["smape"], reference["mase"])
    models["Naive2 (M4 benchmark)"] = {**reference, "owa": 1.0}

    requested = [f.strip() for f in args.families.split(",") if f.strip()]
    families, skipped = available(requested)
    for family, reason in skipped.items():
        logger.warning("family %s skipped: %s", family, reason)
    specs = family_specs(families, Path(args.params) if args.params else None, json.loads(args.hyperparameters))
    forecasts = {}
    for family in families:
        try:
            forecast, stats = run_family(specs[family], train, h, args.freq, m, level)
        except Exception as exc:  # report a failing family and go on: the benchmark covers the others
            logger.exception("family %s failed", family)
            skipped[family] = f"failed: {type(exc).__name__}: {exc}"
            continue
        forecasts[family] = forecast
        scores, _ = score(forecast, test, insample, m, level)
        models[family] = {**scores, "owa": owa(scores), **stats}
        stages[f"{family} fit"], stages[f"{family} predict"] = stats["fit_s"], stats["predict_s"]
        logger.info("%s: sMAPE %.3f MASE %.3f OWA %.3f", family, scores["smape"], scores["mase"], models[family]["owa"])

    selection_counts, validation_owa, valid_forecasts = {}, {}, {}
    if len(forecasts) >= 2:
        fit_all = sum(models[f]["fit_s"] for f in forecasts)
        predict_all = sum(models[f]["predict_s"] for f in forecasts)
        candidates = {**forecasts, **{ensemble_name(c): ensemble({f: forecasts[f] for f in c})
                                      for c in combinations(list(forecasts))}}
        combined, _ = score(candidates[ensemble_name(tuple(forecasts))], test, insample, m, level)
        models["ensemble (median)"] = {**combined, "owa": owa(combined), "fit_s": fit_all,
                                              "predict_s": predict_all}
        if not args.no_selection:
            # every family again on the training part minus its last h points: the validation window decides
            started = time.perf_counter()
            fit_part, valid_part = validation_split(train, h)
            valid_insample = {sid: g["value"].to_numpy(float) for sid, g in fit_part.groupby("series_id", sort=False)}
            valid_reference, _ = score(naive2_forecast(fit_part, valid_part, valid_insample, m), valid_part,
                                       valid_insample, m, None)
            valid_forecasts = {}
            for family in forecasts:
                family_started = time.perf_counter()
                valid_forecasts[family], _ = run_family(specs[family], fit_part, h, args.freq, m, level)
                stages[f"{family} validation fit+predict"] = time.perf_counter() - family_started
            valid_candidates = {**valid_forecasts, **{ensemble_name(c): ensemble({f: valid_forecasts[f] for f in c})
                                                      for c in combinations(list(valid_forecasts))}}
            contributions = pd.DataFrame({name: owa_contributions(frame, valid_part, valid_insample, m, valid_reference)
                                          for name, frame in valid_candidates.items()})
            validation_owa = contributions.mean().sort_values().to_dict()
            cost = {"fit_s": fit_all + sum(stages[f"{f} validation fit+predict"] for f in forecasts),
                    "predict_s": predict_all}
            # one candidate for all series: the lowest OWA on the validation window
            best = min(validation_owa, key=validation_owa.get)
            scores_best, _ = score(candidates[best], test, insample, m, level)
            models[f"selected on validation: {best}"] = {**scores_best, "owa": owa(scores_best), **cost}
            # per series among the families only, and among families and all their ensembles
            for label, names in (("per-series selection", list(forecasts)),
                                 ("per-series selection (+ ensembles)", list(candidates))):
                chosen, choice = select_per_series({n: candidates[n] for n in names}, contributions[names])
                selected, _ = score(chosen, test, insample, m, level)
                models[label] = {**selected, "owa": owa(selected), **cost}
                selection_counts[label] = choice.value_counts().to_dict()
            stages["selection"] = time.perf_counter() - started

    ratios = []
    if args.peers:
        n_jobs = usable if args.n_jobs == -1 else args.n_jobs
        names = [p.strip() for p in args.peer_models.split(",") if p.strip()]
        unknown = set(names) - set(PEER_MODELS)
        if unknown:
            raise SystemExit(f"unknown --peer-models {sorted(unknown)}; choose from {PEER_MODELS}")
        for name, (forecast, stats) in run_peers(train, h, m, args.freq, level, names, n_jobs).items():
            scores, _ = score(forecast, test, insample, m, level)
            label = f"peer: statsforecast {name}"
            models[label] = {**scores, "owa": owa(scores), "fit_s": stats["fit_predict_s"], "predict_s": None,
                             "warmup_s": stats["warmup_s"], "peak_rss_mb": stats["peak_rss_mb"]}
            stages[f"peer {name}"] = stats["fit_predict_s"]
            for ours, row in models.items():
                if ours.startswith("peer") or ours.startswith("Naive2"):
                    continue
                ours_s = row["fit_s"] + (row["predict_s"] or 0)
                ratios.append({"ours": ours, "peer": name, "owa_ratio": row["owa"] / models[label]["owa"],
                               "time_ratio": ours_s / stats["fit_predict_s"]})

    run_memory.__exit__(None, None, None)
    machine = {"cpu_count": os.cpu_count(), "usable_cores": usable, "memory_gb": psutil.virtual_memory().total / 1e9,
               "platform": platform.platform(), "python": platform.python_version()}
    result = {
        "dataset": args.dataset, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "quick": bool(args.n_series), "n_series": len(ids), "series_ids": ids, "horizon": h, "season_length": m,
        "level": level, "machine": machine, "peak_rss_mb": run_memory.peak_mb, "stages_s": stages, "models": models,
        "skipped": skipped, "ratios": ratios, "selection_counts": selection_counts.get("per-series selection", {}),
        "selection_counts_with_ensembles": selection_counts.get("per-series selection (+ ensembles)", {}),
        "validation_owa": validation_owa,
        "family_specs": specs,
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"m4_benchmark_{'quick' if args.n_series else 'full'}_{dt.datetime.now():%Y%m%dT%H%M%S}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float))
    report = markdown_report(result)
    (out / f"{stem}.md").write_text(report)
    # the families' forecasts (test and validation window), so other combinations can be scored without refitting
    frames = [frame.assign(model=name, window=window)
              for window, group in (("test", forecasts), ("validation", valid_forecasts)) for name, frame in group.items()]
    if frames and args.save_forecasts:
        pd.concat(frames, ignore_index=True).to_csv(out / f"{stem}_forecasts.csv.gz", index=False)
    print(report)
    logger.info("wrote %s.{json,md} in %s", stem, out)
    return result


if __name__ == "__main__":
    main()
