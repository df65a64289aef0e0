"""Family check of Prophet and the LSTM against seasonal naive on M3 quarterly/monthly and the M4 Hourly sample.

Per subset: train on the training part, forecast the official test part, score sMAPE and MASE per series
(``ts_kedro.evaluation.metrics``; MASE scale = seasonal naive of lag m on the training part) and report the means.
Every family is built as the pipeline builds it: ``build_forecaster`` with the defaults of the panel's frequency
profile (``derive_profile``: season, LSTM lookback, Prophet seasonalities, horizon). Series a family cannot fit are
served by its fallback (ETS; seasonal naive when ets.py is not there): the "own" column counts the series the
family forecast itself.

=========  ======================================================  ====  ==
subset     files (../shared/data unless noted)                     h     m
=========  ======================================================  ====  ==
quarterly  m3/M3_quarterly_{train,test}_long.csv (first N, QS)     8     4
monthly    m3/M3_monthly_{train,test}_long.csv (first N, MS)       18    12
yearly     m3/M3_yearly_{train,test}_long.csv (first N, YS)        6     1
hourly     data/01_raw/m4_hourly_sample.csv (24 series) with
           m4_hourly/Hourly-test-long.csv                          48    24
=========  ======================================================  ====  ==

Examples::

    .venv/bin/python benchmarks/family_check_prophet_lstm.py quarterly --n-series 200
    .venv/bin/python benchmarks/family_check_prophet_lstm.py hourly --families lstm seasonal_naive
    .venv/bin/python benchmarks/family_check_prophet_lstm.py monthly --hyperparameters '{"prophet": {"seasonality_mode": "additive"}}'

Prints one table (mean sMAPE, MASE, series served by the family itself, wall seconds of fit + predict).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SUBSETS = {
    "quarterly": (DATA / "m3/M3_quarterly_train_long.csv", DATA / "m3/M3_quarterly_test_long.csv", "QS", 8),
    "monthly": (DATA / "m3/M3_monthly_train_long.csv", DATA / "m3/M3_monthly_test_long.csv", "MS", 18),
    "yearly": (DATA / "m3/M3_yearly_train_long.csv", DATA / "m3/M3_yearly_test_long.csv", "YS", 6),
    "hourly": (ROOT / "data/01_raw/m4_hourly_sample.csv", DATA / "m4_hourly/Hourly-test-long.csv", "h", 48),  # dataset fact: M4 Hourly h
}
DEFAULT_HYPERPARAMETERS = {"prophet": {"n_jobs": 1}, "lstm": {"device": "cpu", "seed": 42}}


def load(subset: str, n_series: int | None) -> tuple[pd.DataFrame, pd.DataFrame, str, int]:
    train_file, test_file, freq, horizon = SUBSETS[subset]
    train = pd.read_csv(train_file, parse_dates=["timestamp"])
    test = pd.read_csv(test_file, parse_dates=["timestamp"])
    ids = list(dict.fromkeys(train["series_id"]))
    if n_series:
        ids = ids[:n_series]
    train = train[train["series_id"].isin(ids)].reset_index(drop=True)
    test = test[test["series_id"].isin(ids)].reset_index(drop=True)
    train["value"] = train["value"].astype(float)
    return train, test, freq, horizon


def run(subset: str, n_series: int | None, families: list[str], hyperparameters: dict) -> pd.DataFrame:
    sys.path.insert(0, str(ROOT / "src"))
    from ts_kedro.evaluation.metrics import mase, smape
    from ts_kedro.forecasters import ForecasterError, build_forecaster, get_forecaster_class
    from ts_kedro.frequency import derive_profile

    train, test, freq, horizon = load(subset, n_series)
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": [80, 95]},
                             train.groupby("series_id").size())
    m = profile.season_length
    print(f"{subset}: {train['series_id'].nunique()} series, freq {freq}, h {horizon}, m {m}, "
          f"lstm lookback {profile.lstm_input_size}, prophet seasonalities {profile.prophet_seasonalities}")
    insample = {sid: g["value"].to_numpy(float) for sid, g in train.groupby("series_id", sort=False)}
    rows = []
    for family in families:
        spec = {"class": family, "hyperparameters": {**DEFAULT_HYPERPARAMETERS.get(family, {}),
                                                      **hyperparameters.get(family, {})}}
        model = build_forecaster(spec, freq=freq, season_length=m, profile_defaults=profile.forecaster_defaults())
        if model.fallback is not None:
            try:
                get_forecaster_class(model.fallback)
            except ForecasterError:
                print(f"  {family}: fallback {model.fallback!r} not importable here, using seasonal_naive")
                model.fallback = "seasonal_naive"
        started = time.perf_counter()
        forecast = model.fit(train).predict(horizon, [80, 95])
        seconds = time.perf_counter() - started
        joined = test.merge(forecast, on=["series_id", "timestamp"], how="left", validate="one_to_one")
        if joined["mean"].isna().any():
            raise RuntimeError(f"{family}: forecast misses {int(joined['mean'].isna().sum())} test points")
        for sid, group in joined.groupby("series_id", sort=False):
            y, yhat = group["value"].to_numpy(float), group["mean"].to_numpy(float)
            rows.append({"family": family, "series_id": sid, "smape": float(smape(y, yhat)),
                         "mase": float(mase(y, yhat, insample[sid], m)),
                         "cover95": float(((y >= group["lo-95"]) & (y <= group["hi-95"])).mean()),
                         "own": model.served_by_[sid] == model.name, "seconds": seconds})
    scores = pd.DataFrame(rows)
    table = scores.groupby("family", sort=False).agg(smape=("smape", "mean"), mase=("mase", "mean"),
                                                     cover95=("cover95", "mean"), own=("own", "sum"),
                                                     n=("own", "size"), seconds=("seconds", "first"))
    print(table.round(3).to_string())
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subset", choices=sorted(SUBSETS))
    parser.add_argument("--n-series", type=int, default=200, help="first N series in file order (0 = all)")
    parser.add_argument("--families", nargs="+", default=["seasonal_naive", "prophet", "lstm"])
    parser.add_argument("--hyperparameters", default="{}", help='JSON {family: {name: value}} on top of defaults')
    parser.add_argument("--out", help="CSV of per-series scores")
    args = parser.parse_args(argv)
    scores = run(args.subset, args.n_series or None, args.families, json.loads(args.hyperparameters))
    if args.out:
        scores.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
