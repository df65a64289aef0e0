"""Family check of the ARIMA forecaster against statsforecast's AutoARIMA on M3 and M4 Hourly.

Per series: train on the training part, forecast the official test part, score sMAPE and MASE
(``ts_kedro.evaluation.metrics``; MASE scale = seasonal naive of lag m on the training part) and the CPU
seconds of the fit. Our ARIMA is built as the pipeline builds it: ``build_forecaster`` with the defaults of the
panel's frequency profile (``derive_profile``). statsforecast is optional and not in the project's environment:
``--sf-python`` names an interpreter that has it (any environment with pandas and statsforecast); its
forecasts are made there in a subprocess and scored here.

Subsets (data in ``../shared/data``; ``--n-series`` takes the first N in file order, ``hourly`` takes 40 evenly
spaced M4 ids H1, H12, ..., H414 as benchmarks/m4_benchmark.py --quick does):

=========  ==========================  =========  ====  ==
subset     files                       freq       h     m
=========  ==========================  =========  ====  ==
quarterly  m3/M3_quarterly_*_long.csv  QS         8     4
monthly    m3/M3_monthly_*_long.csv    MS         18    12
yearly     m3/M3_yearly_*_long.csv     YS         6     1
hourly     m4_hourly/Hourly-*-long.csv h          48    24
=========  ==========================  =========  ====  ==

Examples::

    .venv/bin/python benchmarks/family_check_arima.py quarterly --sf-python /path/to/python
    .venv/bin/python benchmarks/family_check_arima.py monthly --n-series 300 --hyperparameters '{"log_transform": false}'
    .venv/bin/python benchmarks/family_check_arima.py hourly --engines ours
    .venv/bin/python benchmarks/family_check_arima.py hourly --n-series 414 --engines ours --concentrated-scale

``--concentrated-scale`` fits every candidate ARMA with the innovation variance concentrated out of the
likelihood (statsmodels' ``concentrate_scale=True``, as R's ``arima`` does), then filters the ordinary model at
those estimates, in place of the product's ``_fit_arima`` (this process only; measured, not adopted:
docs/benchmarks.md, "ARIMA with the variance concentrated out").

Prints one table (mean over series of sMAPE, MASE, CPU s per series) and writes the per-series scores to
``--out`` (CSV).
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
    "quarterly": ("m3/M3_quarterly_train_long.csv", "m3/M3_quarterly_test_long.csv", "QS"),
    "monthly": ("m3/M3_monthly_train_long.csv", "m3/M3_monthly_test_long.csv", "MS"),
    "yearly": ("m3/M3_yearly_train_long.csv", "m3/M3_yearly_test_long.csv", "YS"),
    "hourly": ("m4_hourly/Hourly-train-long.csv", "m4_hourly/Hourly-test-long.csv", "h"),
}
HOURLY_QUICK = 40  # the evenly spaced subset of benchmarks/m4_benchmark.py --quick


def load(subset: str, n_series: int | None, data: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    train_file, test_file, freq = SUBSETS[subset]
    train = pd.read_csv(data / train_file, parse_dates=["timestamp"])
    test = pd.read_csv(data / test_file, parse_dates=["timestamp"])
    ids = list(dict.fromkeys(train["series_id"]))
    if subset == "hourly":
        ids = sorted(ids, key=lambda s: (len(s), s))
        count = n_series or HOURLY_QUICK
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, count).round().astype(int)]
    elif n_series:
        ids = ids[:n_series]
    keep = set(ids)
    train = train[train["series_id"].isin(keep)].reset_index(drop=True)
    test = test[test["series_id"].isin(keep)].reset_index(drop=True)
    return train, test, freq


def concentrated_fit_arima(adjusted: np.ndarray, order: tuple[int, int, int], trend: str,
                           seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0), exog: np.ndarray | None = None):
    """``_fit_arima`` with sigma2 concentrated out of the likelihood, returning the ordinary model filtered at the
    estimates (same parameter vector, log-likelihood and criteria); white noise (sigma2 alone) as before."""
    import warnings

    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ARIMA(adjusted, exog=exog, order=order, seasonal_order=seasonal_order, trend=trend)
        concentrated = ARIMA(adjusted, exog=exog, order=order, seasonal_order=seasonal_order, trend=trend,
                             concentrate_scale=True)
        if concentrated.k_params == 0:
            result = model.fit()
        else:
            fitted = concentrated.fit()
            result = model.filter(np.r_[np.asarray(fitted.params, float), float(fitted.scale)])
    if not np.all(np.isfinite(result.params)) or not np.isfinite(result.llf):
        raise FloatingPointError(f"non-finite estimates for ARIMA{order}{seasonal_order}")
    return result


def ours(train: pd.DataFrame, freq: str, horizon: int, hyperparameters: dict) -> tuple[pd.DataFrame, dict, dict]:
    """Forecasts, CPU seconds per series and the model label per series of the project's ARIMA."""
    sys.path.insert(0, str(ROOT / "src"))
    from ts_kedro.forecasters import build_forecaster
    from ts_kedro.frequency import derive_profile

    lengths = train.groupby("series_id").size()
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": [95]}, lengths)
    model = build_forecaster({"class": "arima", "hyperparameters": hyperparameters}, freq=freq,
                             season_length=profile.season_length, profile_defaults=profile.forecaster_defaults())
    model.fit(train)
    forecast = model.predict(horizon, [95])
    seconds = {sid: state.fit_seconds for sid, state in model.fitted_.items()}
    labels = {sid: state.label for sid, state in model.fitted_.items()}
    labels.update({sid: f"fallback:{family}" for sid, family in model.served_by_.items() if family != "arima"})
    return forecast, seconds, labels


def statsforecast_forecasts(train: pd.DataFrame, freq: str, horizon: int, m: int, python: str) -> tuple[pd.DataFrame, dict]:
    """AutoARIMA(season_length=m) forecasts made by ``python`` (which must have statsforecast)."""
    with tempfile.TemporaryDirectory() as tmp:
        train.to_csv(Path(tmp) / "train.csv", index=False)
        done = subprocess.run([python, __file__, "--sf-worker", tmp, "--freq", freq, "--horizon", str(horizon),
                               "--season", str(m)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"statsforecast worker failed: {done.stderr[-2000:]}")
        forecast = pd.read_csv(Path(tmp) / "forecast.csv", parse_dates=["timestamp"])
        seconds = json.loads((Path(tmp) / "seconds.json").read_text())
    return forecast, seconds


def _sf_worker(folder: str, freq: str, horizon: int, m: int) -> None:
    """Runs in the statsforecast interpreter: fit every series alone (CPU seconds per series), one process."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA

    train = pd.read_csv(Path(folder) / "train.csv", parse_dates=["timestamp"])
    train = train.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    groups = list(train.groupby("unique_id", sort=False))
    # numba compilation happens on the first fit: warm up on one series and do not count it
    StatsForecast(models=[AutoARIMA(season_length=m)], freq=freq, n_jobs=1).forecast(df=groups[0][1], h=horizon)
    frames, seconds = [], {}
    for sid, frame in groups:
        started = time.process_time()
        out = StatsForecast(models=[AutoARIMA(season_length=m)], freq=freq, n_jobs=1).forecast(df=frame, h=horizon)
        seconds[str(sid)] = time.process_time() - started
        frames.append(out.reset_index() if "unique_id" not in out.columns else out)
    forecast = pd.concat(frames, ignore_index=True).rename(columns={"unique_id": "series_id", "ds": "timestamp",
                                                                    "AutoARIMA": "mean"})
    forecast[["series_id", "timestamp", "mean"]].to_csv(Path(folder) / "forecast.csv", index=False)
    (Path(folder) / "seconds.json").write_text(json.dumps(seconds))


def score(name: str, forecast: pd.DataFrame, test: pd.DataFrame, insample: dict, m: int) -> pd.DataFrame:
    from ts_kedro.evaluation.metrics import mase, smape

    joined = test.merge(forecast[["series_id", "timestamp", "mean"]], on=["series_id", "timestamp"], how="left")
    if joined["mean"].isna().any():
        raise RuntimeError(f"{name}: forecast misses {int(joined['mean'].isna().sum())} test points")
    rows = []
    for sid, group in joined.groupby("series_id", sort=False):
        y, yhat = group["value"].to_numpy(float), group["mean"].to_numpy(float)
        rows.append({"series_id": sid, "engine": name, "smape": float(smape(y, yhat)),
                     "mase": float(mase(y, yhat, insample[sid], m))})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subset", nargs="?", choices=sorted(SUBSETS))
    parser.add_argument("--n-series", type=int, default=None, help="first N series (hourly: N evenly spaced)")
    parser.add_argument("--engines", default="ours,statsforecast,snaive")
    parser.add_argument("--hyperparameters", default="{}", help="JSON for our ArimaForecaster (n_jobs default 1)")
    parser.add_argument("--sf-python", default=sys.executable, help="interpreter with statsforecast installed")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="per-series scores (CSV)")
    parser.add_argument("--concentrated-scale", action="store_true",
                        help="fit with sigma2 concentrated out (a variant measured, not shipped; n_jobs 1)")
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
    from ts_kedro.evaluation.metrics import seasonal_naive_forecast
    from ts_kedro.frequency import season_length_for

    train, test, freq = load(args.subset, args.n_series, args.data)
    horizon = int(test.groupby("series_id").size().iloc[0])
    m = season_length_for(freq)
    insample = {sid: g["value"].to_numpy(float) for sid, g in train.groupby("series_id", sort=False)}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    scores, seconds, labels = [], {}, {}
    for engine in engines:
        started = time.process_time()
        if engine == "ours":
            hyper = {"n_jobs": 1, **json.loads(args.hyperparameters)}
            if args.concentrated_scale:
                import ts_kedro.forecasters.arima as arima_module

                hyper["n_jobs"] = 1  # the replaced function lives in this process only
                arima_module._fit_arima = concentrated_fit_arima
            forecast, seconds[engine], labels = ours(train, freq, horizon, hyper)
        elif engine == "statsforecast":
            try:
                forecast, seconds[engine] = statsforecast_forecasts(train, freq, horizon, m, args.sf_python)
            except RuntimeError as exc:
                print(f"statsforecast skipped: {exc}", file=sys.stderr)
                continue
        elif engine == "snaive":
            rows = []
            for sid, values in insample.items():
                stamps = test.loc[test["series_id"] == sid, "timestamp"].to_numpy()
                rows.append(pd.DataFrame({"series_id": sid, "timestamp": stamps,
                                          "mean": seasonal_naive_forecast(values, horizon, m)}))
            forecast, seconds[engine] = pd.concat(rows, ignore_index=True), {}
        else:
            parser.error(f"unknown engine {engine!r}")
        scores.append(score(engine, forecast, test, insample, m))
        print(f"{engine}: done in {time.process_time() - started:.1f} s CPU (this process)", file=sys.stderr)
    per_series = pd.concat(scores, ignore_index=True)
    per_series["cpu_s"] = [seconds.get(e, {}).get(s, np.nan) for e, s in zip(per_series["engine"],
                                                                              per_series["series_id"])]
    per_series["model"] = [labels.get(s, "") if e == "ours" else "" for e, s in zip(per_series["engine"],
                                                                                   per_series["series_id"])]
    table = per_series.groupby("engine", sort=False).agg(series=("series_id", "size"), smape=("smape", "mean"),
                                                         mase=("mase", "mean"), cpu_s_mean=("cpu_s", "mean"),
                                                         cpu_s_max=("cpu_s", "max"))
    print(f"{args.subset}: {train['series_id'].nunique()} series, h={horizon}, m={m}, freq={freq}")
    print(table.round(3).to_string())
    if "ours" in engines and labels:
        kinds = pd.Series([label.split("(")[0] for label in labels.values()]).value_counts().to_dict()
        print(f"our models: {kinds}")
    if args.out:
        per_series.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
