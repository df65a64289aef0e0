"""Family check of the global LightGBM forecaster on M4 Hourly and M3 (monthly, quarterly, yearly): accuracy, coverage, wall time.

One engine: the family is backtested, fitted and calibrated by the training pipeline's own nodes
(``pipelines.training.nodes.backtest_model`` and ``fit_model``, with the frequency profile of the panel), then
its forecast is scored on the official test part with ``ts_kedro.evaluation.metrics``: sMAPE, MASE (seasonal
naive scale of lag m on the training part), OWA against Naive2 on the aggregated means (M4's rule, see
``../shared/data/M4_REFERENCE.md``), the coverage of the 80 % and 95 % intervals and MSIS (95 %), before
(``raw``: the quantile boosters) and after the conformal calibration on the backtest (``calibrated``).

=========  ==============================================  ====  ====  ==
subset     files (../shared/data)                          freq  h     m
=========  ==============================================  ====  ====  ==
hourly     m4_hourly/Hourly-{train,test}-long.csv          h     48    24
monthly    m3/M3_monthly_{train,test}_long.csv             MS    18    12
quarterly  m3/M3_quarterly_{train,test}_long.csv           QS    8     4
yearly     m3/M3_yearly_{train,test}_long.csv              YS    6     1
=========  ==============================================  ====  ====  ==

    .venv/bin/python benchmarks/family_check_lightgbm.py hourly                # all 414 series
    .venv/bin/python benchmarks/family_check_lightgbm.py monthly --n-series 300
    .venv/bin/python benchmarks/family_check_lightgbm.py hourly --set objective=l1 --set n_estimators=500

Prints one line per variant and writes the per-series scores to ``--out`` (CSV) when given.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import yaml

from ts_kedro.evaluation.metrics import coverage, mae, msis, naive2, owa, seasonal_scale, smape
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE
from ts_kedro.pipelines.training.nodes import backtest_model, fit_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SUBSETS = {
    "hourly": {"train": "m4_hourly/Hourly-train-long.csv", "test": "m4_hourly/Hourly-test-long.csv",
               "freq": "h", "horizon": 48, "m": 24},  # dataset fact
    "monthly": {"train": "m3/M3_monthly_train_long.csv", "test": "m3/M3_monthly_test_long.csv",
                "freq": "MS", "horizon": 18, "m": 12},  # dataset fact
    "quarterly": {"train": "m3/M3_quarterly_train_long.csv", "test": "m3/M3_quarterly_test_long.csv",
                  "freq": "QS", "horizon": 8, "m": 4},  # dataset fact
    "yearly": {"train": "m3/M3_yearly_train_long.csv", "test": "m3/M3_yearly_test_long.csv",
               "freq": "YS", "horizon": 6, "m": 1},  # dataset fact
}
LEVELS = [80, 95]


def load(subset: str, n_series: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    setup = SUBSETS[subset]
    train = pd.read_csv(DATA / setup["train"], parse_dates=[TIMESTAMP], dtype={SERIES_ID: str})
    test = pd.read_csv(DATA / setup["test"], parse_dates=[TIMESTAMP], dtype={SERIES_ID: str})
    if n_series:
        ids = train[SERIES_ID].drop_duplicates().iloc[:n_series]
        train, test = train[train[SERIES_ID].isin(ids)], test[test[SERIES_ID].isin(ids)]
    order = [SERIES_ID, TIMESTAMP]
    return train.sort_values(order).reset_index(drop=True), test.sort_values(order).reset_index(drop=True)


def score(forecast: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, m: int) -> pd.DataFrame:
    """Per-series sMAPE, MASE, coverage and MSIS of ``forecast`` on ``test``, and Naive2's sMAPE and MASE."""
    merged = test.merge(forecast, on=[SERIES_ID, TIMESTAMP], how="left", validate="one_to_one")
    if merged["mean"].isna().any():
        raise RuntimeError("the forecast misses test points")
    history = {sid: g[VALUE].to_numpy(float) for sid, g in train.groupby(SERIES_ID)}
    rows = []
    for sid, group in merged.groupby(SERIES_ID):
        y, yhat, insample = group[VALUE].to_numpy(float), group["mean"].to_numpy(float), history[sid]
        scale = seasonal_scale(insample, m)
        reference = naive2(insample, len(y), m)
        row = {SERIES_ID: sid, "smape": float(smape(y, yhat)), "mase": float(mae(y, yhat)) / scale,
               "smape_naive2": float(smape(y, reference)), "mase_naive2": float(mae(y, reference)) / scale,
               "msis95": msis(y, group["lo-95"].to_numpy(float), group["hi-95"].to_numpy(float), insample, m)}
        for level in LEVELS:
            row[f"cov{level}"] = float(coverage(y, group[f"lo-{level}"].to_numpy(float),
                                                group[f"hi-{level}"].to_numpy(float)))
        rows.append(row)
    return pd.DataFrame(rows)


def summary(name: str, table: pd.DataFrame, seconds: float) -> dict:
    means = table.drop(columns=SERIES_ID).mean()
    return {"variant": name, "n_series": len(table), "sMAPE": means["smape"], "MASE": means["mase"],
            "OWA": owa(means["smape"], means["mase"], means["smape_naive2"], means["mase_naive2"]),
            "cov80": means["cov80"], "cov95": means["cov95"], "MSIS95": means["msis95"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subset", choices=sorted(SUBSETS))
    parser.add_argument("--n-series", type=int, default=None, help="first N series in file order (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a LightGBM hyperparameter (YAML value), e.g. objective=l1")
    parser.add_argument("--n-windows", type=int, default=2, help="backtest windows for the calibration")
    parser.add_argument("--out", type=Path, default=None, help="CSV of per-series scores")
    args = parser.parse_args()
    setup = SUBSETS[args.subset]
    train, test = load(args.subset, args.n_series)
    hyper = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    spec = {"name": "lightgbm", "class": "lightgbm", "hyperparameters": hyper}
    panel_params = {"freq": setup["freq"], "horizon": setup["horizon"], "levels": LEVELS}
    backtest_params = {"n_windows": args.n_windows, "step": None, "min_train": None, "calibrate_intervals": True}

    started = time.perf_counter()
    backtest, _ = backtest_model(train, spec, panel_params, backtest_params)
    backtest_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model, calibrated, stats = fit_model(train, spec, panel_params, backtest_params, backtest)
    fit_seconds = time.perf_counter() - started
    raw_model = model
    calibration = model.interval_calibration_
    raw_model.interval_calibration_ = None  # the quantile boosters' own intervals
    raw = raw_model.predict(setup["horizon"], LEVELS)
    model.interval_calibration_ = calibration

    tables = {"raw": score(raw, train, test, setup["m"]), "calibrated": score(calibrated, train, test, setup["m"])}
    rows = [summary(f"lightgbm {name}", table, backtest_seconds + fit_seconds) for name, table in tables.items()]
    print(f"{args.subset}: {train[SERIES_ID].nunique()} series, {model.n_training_rows_} training rows, "
          f"{len(model.feature_names_)} features, served_by {stats['served_by']}, backtest {backtest_seconds:.0f} s, "
          f"fit+calibrate+predict {fit_seconds:.0f} s, hyperparameters {hyper or 'defaults'}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    importance = model.feature_importance().head(10)
    print("top features (gain share, mean |SHAP|):")
    print(importance.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        pd.concat([t.assign(variant=n) for n, t in tables.items()]).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
