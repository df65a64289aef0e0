"""Where the ARIMA family's CPU goes, and what concentrating sigma2 out of the likelihood does to one fit.

The per-fit side of ``family_check_arima.py --concentrated-scale`` (docs/benchmarks.md, "ARIMA with the variance
concentrated out: measured, not adopted"). Real data only; CPU seconds of this process.

1. **Where the time goes**: the product's ``ArimaForecaster`` as the pipeline builds it (``build_forecaster`` with
   the frequency profile's defaults, ``n_jobs`` 1) on 30 evenly spaced M3 monthly series, each ``_fit_arima`` call
   timed: the share of the family's CPU spent in seasonal ARMA fits.
2. **One fit, both ways**: on 20 of those series' differenced series (``(1 - B)(1 - B^m) y``), five orders each,
   the shipped ``_fit_arima`` against ``family_check_arima.concentrated_fit_arima``: CPU, and how often each
   reaches the higher log-likelihood.
3. **The M4 Hourly series whose forecasts got worse** (H65, H202): the family fitted both ways; the log-likelihood
   of each fit's parameters under the same model.

    .venv/bin/python benchmarks/arima_concentrated_fits.py
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import ts_kedro.forecasters.arima as arima_module  # noqa: E402
from family_check_arima import concentrated_fit_arima, load  # noqa: E402

from ts_kedro.forecasters import build_forecaster  # noqa: E402
from ts_kedro.frequency import derive_profile  # noqa: E402

SHIPPED = arima_module._fit_arima
N_SERIES = 30
ORDERS = [((2, 0, 2), (1, 1)), ((1, 0, 0), (1, 0)), ((0, 0, 1), (0, 1)), ((1, 0, 1), (0, 1)), ((1, 0, 1), (0, 0))]


def family(train: pd.DataFrame, test: pd.DataFrame, freq: str):
    """The ARIMA family as the pipeline builds it for this panel (profile defaults), one process."""
    horizon = int(test.groupby("series_id").size().iloc[0])
    profile = derive_profile({"freq": freq, "horizon": horizon, "levels": [95]}, train.groupby("series_id").size())
    return build_forecaster({"class": "arima", "hyperparameters": {"n_jobs": 1}}, freq=freq,
                            season_length=profile.season_length, profile_defaults=profile.forecaster_defaults())


def m3_monthly() -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``N_SERIES`` evenly spaced M3 monthly series (sorted ids), training and test parts."""
    train, test, freq = load("monthly", None, DATA)
    ids = sorted(train["series_id"].unique())
    keep = {ids[i] for i in np.linspace(0, len(ids) - 1, N_SERIES).round().astype(int)}
    return train[train["series_id"].isin(keep)], test[test["series_id"].isin(keep)], freq


def where_the_time_goes(train: pd.DataFrame, test: pd.DataFrame, freq: str) -> int:
    spent = {"all": 0.0, "seasonal": 0.0, "fits": 0, "seasonal_fits": 0}

    def timed(adjusted, order, trend, seasonal_order=(0, 0, 0, 0), exog=None):
        started = time.process_time()
        try:
            return SHIPPED(adjusted, order, trend, seasonal_order, exog)
        finally:
            seconds = time.process_time() - started
            spent["all"] += seconds
            spent["fits"] += 1
            if seasonal_order[3] > 1:
                spent["seasonal"] += seconds
                spent["seasonal_fits"] += 1

    arima_module._fit_arima = timed
    try:
        started = time.process_time()
        model = family(train, test, freq).fit(train)
        total = time.process_time() - started
    finally:
        arima_module._fit_arima = SHIPPED
    print(f"1. {train['series_id'].nunique()} M3 monthly series: family fit {total:.1f} CPU s; "
          f"{spent['fits']} ARMA fits {spent['all']:.1f} s; {spent['seasonal_fits']} seasonal ones "
          f"{spent['seasonal']:.1f} s = {spent['seasonal'] / total:.0%} of the family's CPU")
    return int(model.season_length)


def one_fit_both_ways(train: pd.DataFrame, m: int, count: int = 20) -> None:
    seconds = {"shipped": 0.0, "concentrated": 0.0}
    differences = []
    for _, series in list(train.groupby("series_id", sort=True))[:count]:
        y = series["value"].to_numpy(float)
        w = np.diff(y[m:] - y[:-m])
        for order, (P, Q) in ORDERS:
            seasonal_order = (P, 0, Q, m) if P + Q else (0, 0, 0, 0)
            llf = {}
            for name, fit in (("shipped", SHIPPED), ("concentrated", concentrated_fit_arima)):
                started = time.process_time()
                llf[name] = fit(w, order, "n", seasonal_order).llf
                seconds[name] += time.process_time() - started
            differences.append(llf["concentrated"] - llf["shipped"])
    d = np.array(differences)
    print(f"2. {len(d)} fits: shipped {seconds['shipped']:.1f} CPU s, concentrated {seconds['concentrated']:.1f} s "
          f"({seconds['concentrated'] / seconds['shipped'] - 1:+.0%}); concentrated log-likelihood higher in "
          f"{int((d > 0.01).sum())}, lower in {int((d < -0.01).sum())}, mean difference {d.mean():+.2f}")


def m4_series(ids: tuple[str, ...] = ("H65", "H202")) -> None:
    train, test, freq = load("hourly", 414, DATA)  # all 414: the profile of the whole panel
    for series_id in ids:
        panel = train[train["series_id"] == series_id]
        states = {}
        for name, fit in (("shipped", SHIPPED), ("concentrated", concentrated_fit_arima)):
            arima_module._fit_arima = fit
            try:
                states[name] = family(train, test, freq).fit(panel).fitted_[series_id]
            finally:
                arima_module._fit_arima = SHIPPED
        model = states["shipped"].statsmodels_model()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            llf = {name: model.filter(state.params).llf for name, state in states.items()}
        print(f"3. {series_id}: {states['shipped'].label} / {states['concentrated'].label}; log-likelihood of the "
              f"shipped fit {llf['shipped']:.1f}, of the concentrated fit {llf['concentrated']:.1f}")


def main() -> None:
    warnings.simplefilter("ignore")
    train, test, freq = m3_monthly()
    m = where_the_time_goes(train, test, freq)
    one_fit_both_ways(train, m)
    m4_series()


if __name__ == "__main__":
    main()
