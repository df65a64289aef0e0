"""Score the intermittent family (auto and each method) against naive peers on the real carparts panel.

Data: ``../shared/data/carparts_intermittent/carparts.csv`` (wide: ``Part`` then month columns ``Jan-98`` ...
``Mar-02``), the complete series only (2509 of 2674). The last ``--horizon`` months (default: one season of the
monthly grid, the customary h = 12) are the test part; everything is fitted on the rest.

Scores (means over series): MAE, RMSE, MASE with the seasonal-naive scale of the training part at m = the season
length (and at m = 1), both from ``ts_kedro.evaluation.metrics``; series whose training part has no variation at
that lag have no MASE and are counted. Coverage of the 80 % and 95 % intervals. Peers: seasonal naive and naive
(the project's ``seasonal_naive`` family with the season length and with 1), the zero forecast, and, when
statsforecast is importable, its CrostonOptimized, TSB, ADIDA and IMAPA.

Also scored: ``holdout choice``, the rule ``method="auto"`` does not use: per series, the method with the lowest MAE
on the last ``--horizon`` training months when fitted on the months before them, refitted on the whole training part.

    .venv/bin/python benchmarks/family_check_intermittent.py            # all 2509 series, ~1 min on one core
    .venv/bin/python benchmarks/family_check_intermittent.py --n-series 200
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ts_kedro.evaluation.metrics import coverage, mae, rmse, seasonal_scale
from ts_kedro.forecasters import build_forecaster
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.frequency import season_length_for

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "carparts_intermittent" / "carparts.csv"
FREQ = "MS"
METHODS = ("auto", "croston", "sba", "tsb", "adida")
LEVELS = [80, 95]


def load_carparts(path: Path, n_series: int | None) -> pd.DataFrame:
    """The complete series as a long panel (``series_id, timestamp, value``), months as month starts."""
    wide = pd.read_csv(path, dtype={"Part": str}).set_index("Part")
    wide = wide.dropna()
    if n_series:
        wide = wide.iloc[np.linspace(0, len(wide) - 1, n_series).round().astype(int)]
    wide.columns = pd.to_datetime(wide.columns, format="%b-%y")
    long = wide.rename_axis(SERIES_ID).reset_index().melt(id_vars=SERIES_ID, var_name=TIMESTAMP, value_name=VALUE)
    long[TIMESTAMP] = pd.to_datetime(long[TIMESTAMP])
    long[VALUE] = long[VALUE].astype(float)
    return long.sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True)


def split_last(panel: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rank = panel.groupby(SERIES_ID).cumcount(ascending=False)
    return panel[rank >= horizon].reset_index(drop=True), panel[rank < horizon].reset_index(drop=True)


def score(name: str, forecast: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, m: int, seconds: float) -> dict:
    merged = test.merge(forecast, on=[SERIES_ID, TIMESTAMP], how="left", validate="one_to_one")
    if merged["mean"].isna().any():
        raise RuntimeError(f"{name}: forecast misses test points")
    history = {sid: g[VALUE].to_numpy() for sid, g in train.groupby(SERIES_ID)}
    rows = []
    for sid, group in merged.groupby(SERIES_ID):
        y, yhat = group[VALUE].to_numpy(), group["mean"].to_numpy()
        row = {"mae": float(mae(y, yhat)), "rmse": float(rmse(y, yhat))}
        for lag, key in ((m, "mase"), (1, "mase_m1")):
            row[key] = row["mae"] / seasonal_scale(history[sid], lag)
        for level in LEVELS:
            if f"lo-{level}" in group:
                row[f"cov{level}"] = float(coverage(y, group[f"lo-{level}"].to_numpy(), group[f"hi-{level}"].to_numpy()))
        rows.append(row)
    table = pd.DataFrame(rows)
    out = {"model": name, "MAE": table["mae"].mean(), "RMSE": table["rmse"].mean(),
           f"MASE(m={m})": table["mase"].mean(), "MASE(m=1)": table["mase_m1"].mean(),
           "no MASE": int(table["mase"].isna().sum())}
    for level in LEVELS:
        out[f"cov{level}"] = table[f"cov{level}"].mean() if f"cov{level}" in table else np.nan
    out["seconds"] = seconds
    return out


def fit_predict(spec: dict, train: pd.DataFrame, horizon: int, season_length: int):
    started = time.perf_counter()
    model = build_forecaster(spec, freq=FREQ, season_length=season_length)
    forecast = model.fit(train).predict(horizon, LEVELS)
    return model, forecast, time.perf_counter() - started


def holdout_choice(train: pd.DataFrame, horizon: int, season_length: int, n_jobs: int,
                   full_forecasts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per series, the method (of croston/sba/tsb/adida) with the lowest MAE on the training part's last months."""
    inner, holdout = split_last(train, horizon)
    errors = {}
    for method in METHODS[1:]:
        spec = {"class": "intermittent", "hyperparameters": {"method": method, "n_jobs": n_jobs}}
        _, forecast, _ = fit_predict(spec, inner, horizon, season_length)
        merged = holdout.merge(forecast, on=[SERIES_ID, TIMESTAMP])
        errors[method] = (merged[VALUE] - merged["mean"]).abs().groupby(merged[SERIES_ID]).mean()
    best = pd.DataFrame(errors).idxmin(axis=1)
    parts = [full_forecasts[method][full_forecasts[method][SERIES_ID].isin(best.index[best == method])]
             for method in METHODS[1:]]
    print("holdout choice:", best.value_counts().to_dict())
    return pd.concat(parts, ignore_index=True)


def statsforecast_peers(train: pd.DataFrame, horizon: int) -> list[tuple[str, pd.DataFrame, float]]:
    try:
        from statsforecast import StatsForecast
        from statsforecast.models import ADIDA, IMAPA, TSB, CrostonOptimized
    except ImportError as exc:
        print(f"statsforecast peers skipped: {exc}")
        return []
    frame = train.rename(columns={SERIES_ID: "unique_id", TIMESTAMP: "ds", VALUE: "y"})
    models = [CrostonOptimized(), TSB(alpha_d=0.2, alpha_p=0.2), ADIDA(), IMAPA()]
    StatsForecast(models=models, freq=FREQ, n_jobs=1).forecast(df=frame.groupby("unique_id").head(24), h=horizon)  # not a period: a warm-up
    started = time.perf_counter()
    out = StatsForecast(models=models, freq=FREQ, n_jobs=1).forecast(df=frame, h=horizon)
    seconds = time.perf_counter() - started
    out = out.reset_index() if "unique_id" not in out.columns else out
    peers = []
    for model in models:
        column = repr(model)
        part = out.rename(columns={"unique_id": SERIES_ID, "ds": TIMESTAMP, column: "mean"})
        peers.append((f"statsforecast {column}", part[[SERIES_ID, TIMESTAMP, "mean"]], seconds / len(models)))
    return peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-series", type=int, default=None, help="evenly spaced subset (default: all complete)")
    parser.add_argument("--horizon", type=int, default=None, help="default: one season of the monthly grid")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    m = season_length_for(FREQ)
    horizon = args.horizon or m
    panel = load_carparts(args.data, args.n_series)
    train, test = split_last(panel, horizon)
    print(f"{panel[SERIES_ID].nunique()} series, {train.groupby(SERIES_ID).size().iloc[0]} training months, "
          f"h={horizon}, MASE m={m}")
    rows, forecasts = [], {}
    for method in METHODS:
        spec = {"class": "intermittent", "hyperparameters": {"method": method, "n_jobs": args.n_jobs}}
        model, forecast, seconds = fit_predict(spec, train, horizon, m)
        forecasts[method] = forecast
        rows.append(score(f"intermittent {method}", forecast, train, test, m, seconds))
        if method == "auto":
            print("SBC classes:", pd.Series(model.classes_).value_counts().to_dict())
    started = time.perf_counter()
    choice = holdout_choice(train, horizon, m, args.n_jobs, forecasts)
    rows.append(score("intermittent holdout choice", choice, train, test, m, time.perf_counter() - started))
    for name, season in (("seasonal naive", m), ("naive", 1)):
        _, forecast, seconds = fit_predict({"class": "seasonal_naive"}, train, horizon, season)
        rows.append(score(name, forecast, train, test, m, seconds))
    zero = test[[SERIES_ID, TIMESTAMP]].assign(mean=0.0)
    rows.append(score("zero forecast", zero, train, test, m, 0.0))
    for name, forecast, seconds in statsforecast_peers(train, horizon):
        rows.append(score(name, forecast, train, test, m, seconds))
    table = pd.DataFrame(rows).set_index("model")
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table)


if __name__ == "__main__":
    main()
