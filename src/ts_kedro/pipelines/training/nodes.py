"""Training nodes shared by every model family: backtest, score, fit on the full history, forecast."""
from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from ts_kedro.evaluation.backtest import PeakMemorySampler, evaluate_backtest, rolling_origin_backtest
from ts_kedro.forecasters import Forecaster, build_forecaster

logger = logging.getLogger(__name__)

MLFLOW_METRICS = ("rmse", "mae", "mape", "smape", "mase")


def _factory(model_spec: dict[str, Any], panel_params: dict[str, Any]):
    return lambda: build_forecaster(
        model_spec, freq=panel_params["freq"], season_length=panel_params["season_length"], horizon=panel_params["horizon"]
    )


def backtest_model(
    panel: pd.DataFrame, model_spec: dict[str, Any], panel_params: dict[str, Any], backtest_params: dict[str, Any]
) -> tuple[pd.DataFrame, dict]:
    """Rolling-origin backtest of one family on the panel.

    Args:
        panel: canonical long panel.
        model_spec: ``{class, hyperparameters}`` of the family.
        panel_params: ``params:panel`` (freq, season_length, horizon, levels).
        backtest_params: ``params:backtest`` (n_windows, step); each window forecasts the panel horizon.

    Returns:
        Backtest forecasts with actuals, and the timings of fitting and predicting.
    """
    horizon = int(panel_params["horizon"])
    forecasts, timings = rolling_origin_backtest(
        _factory(model_spec, panel_params),
        panel,
        horizon=horizon,
        n_windows=int(backtest_params["n_windows"]),
        step=int(backtest_params.get("step") or horizon),
        levels=panel_params["levels"],
    )
    logger.info(
        "%s backtest: %d windows, fit %.1fs, predict %.2fs",
        model_spec["class"], backtest_params["n_windows"], timings["fit_seconds_total"], timings["predict_seconds_total"],
    )
    return forecasts, timings


def evaluate_model(
    backtest_forecasts: pd.DataFrame,
    backtest_timings: dict,
    model_stats: dict,
    panel: pd.DataFrame,
    panel_params: dict[str, Any],
) -> tuple[dict, dict]:
    """Score the backtest per series and overall.

    Returns:
        The metrics report (aggregate, per-series rows, timings, model stats) and the same aggregate metrics in
        kedro-mlflow's ``{name: {value, step}}`` form.
    """
    per_series, aggregate = evaluate_backtest(
        backtest_forecasts, panel, panel_params["season_length"], panel_params["levels"]
    )
    report = {
        "family": model_stats["family"],
        "aggregate": aggregate,
        "timings": {k: v for k, v in backtest_timings.items() if not isinstance(v, list)},
        "model": model_stats,
        "per_series": per_series.assign(cutoff=per_series["cutoff"].astype(str)).to_dict(orient="records"),
    }
    keys = [*MLFLOW_METRICS, *(f"coverage-{level}" for level in panel_params["levels"]),
            *(f"msis-{level}" for level in panel_params["levels"])]
    mlflow_metrics = {
        f"backtest_{key.replace('-', '_')}": {"value": float(aggregate[key]), "step": 0}
        for key in keys if key in aggregate and pd.notna(aggregate[key])
    }
    mlflow_metrics.update(
        {
            "fit_seconds": {"value": float(model_stats["fit_seconds"]), "step": 0},
            "predict_seconds_per_series": {"value": float(model_stats["predict_seconds_per_series"]), "step": 0},
            "n_parameters": {"value": float(model_stats["n_parameters"]), "step": 0},
            "peak_rss_mb": {"value": float(model_stats["peak_rss_mb"]), "step": 0},
        }
    )
    logger.info(
        "%s backtest: sMAPE %.3f MASE %.3f %s",
        model_stats["family"], aggregate["smape"], aggregate["mase"],
        " ".join(f"coverage-{lv} {aggregate.get(f'coverage-{lv}', float('nan')):.3f}" for lv in panel_params["levels"]),
    )
    return report, mlflow_metrics


def fit_model(
    panel: pd.DataFrame, model_spec: dict[str, Any], panel_params: dict[str, Any]
) -> tuple[Forecaster, pd.DataFrame, dict]:
    """Fit the family on the whole history and forecast the next horizon.

    Returns:
        The fitted model, its future forecasts, and its statistics (fit and predict time, parameter count, peak
        memory) that model selection uses as secondary criteria.
    """
    model = _factory(model_spec, panel_params)()
    with PeakMemorySampler() as memory:
        started = time.perf_counter()
        model.fit(panel)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        forecasts = model.predict(int(panel_params["horizon"]), panel_params["levels"])
        predict_seconds = time.perf_counter() - started
    n_series = max(len(model.series_ids_), 1)
    stats = {
        "family": model_spec.get("name") or model.name,
        "class": model_spec["class"],
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "predict_seconds_per_series": predict_seconds / n_series,
        "n_parameters": int(model.n_parameters()),
        "peak_rss_mb": memory.peak_mb,
        "n_series": n_series,
    }
    logger.info("%s fitted on %d series in %.1fs (predict %.2fs)", stats["family"], n_series, fit_seconds, predict_seconds)
    return model, forecasts, stats
