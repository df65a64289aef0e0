"""Nodes of inference: the champion forecasts the next horizon from the end of the Day-N history."""
from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"


class StaleChampionError(RuntimeError):
    """The champion's data ends before the history: its forecasts would cover already observed time."""


def load_champion_model(name: str, tracking_uri: str | None = None):
    """The registry's champion (``name@champion``); a separate function so tests can stand in a model."""
    from ts_kedro.registry.registry import load_champion

    return load_champion(name, tracking_uri)


def forecast_with_champion(
    history_primary_panel: pd.DataFrame, inference: dict[str, Any], panel: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Forecast ``panel.horizon`` steps after each series' history end with the champion.

    With ``inference.refit_on_history`` the champion's families are refitted (same configuration) on the
    history first, so the forecast starts after the newest actuals; without it a champion whose data ends
    before the history is refused (``StaleChampionError``).

    Returns:
        ``champion_forecasts`` (``series_id, timestamp, mean, lo-L, hi-L, model`` plus the champion's backtest
        metric and score, which monitoring compares realized errors with) and ``inference_summary``.
    """
    started = time.perf_counter()
    champion = load_champion_model(inference["registered_model_name"], inference.get("tracking_uri"))
    loaded = time.perf_counter()
    served = [s for s in champion.series_ids if s in set(history_primary_panel[SERIES_ID])]
    if not served:
        raise StaleChampionError("the champion serves none of the history's series: retrain (Day 0) first")
    history = history_primary_panel[history_primary_panel[SERIES_ID].isin(served)]
    if inference.get("refit_on_history", True):
        champion = champion.refit(history)
    else:
        model_end = pd.Timestamp(champion.metadata.get("data_window_end", history[TIMESTAMP].max()))
        if model_end < history[TIMESTAMP].max():
            raise StaleChampionError(
                f"the champion's data ends at {model_end} but the history reaches {history[TIMESTAMP].max()}: "
                "set inference.refit_on_history: true or retrain before forecasting")
    fitted = time.perf_counter()
    horizon = min(int(panel["horizon"]), champion.max_horizon)
    levels = [level for level in panel["levels"] if level in champion.levels]
    forecasts = champion.predict(series_ids=served, horizon=horizon, levels=levels)
    predicted = time.perf_counter()
    forecasts["champion_metric"] = champion.metadata.get("primary_metric", "smape")
    forecasts["champion_backtest_score"] = float(champion.metadata.get("selected_score", float("nan")))
    summary = {
        "n_series": len(served), "horizon": horizon, "levels": levels, "rows": int(len(forecasts)),
        "load_seconds": loaded - started, "refit_seconds": fitted - loaded, "predict_seconds": predicted - fitted,
        "latency_seconds": predicted - started, "refit_on_history": bool(inference.get("refit_on_history", True)),
        "forecast_start": str(forecasts[TIMESTAMP].min()), "forecast_end": str(forecasts[TIMESTAMP].max()),
    }
    logger.info("forecast %d series x %d steps in %.2fs (predict %.3fs)", len(served), horizon,
                summary["latency_seconds"], summary["predict_seconds"])
    return forecasts, summary


def inference_metrics(inference_summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """MLflow metrics of the run, in kedro-mlflow's ``{name: {"value": v, "step": 0}}`` form."""
    keys = ("latency_seconds", "predict_seconds", "refit_seconds", "n_series")
    return {key: {"value": float(inference_summary[key]), "step": 0} for key in keys}


def evaluate_inference_alerts(inference_summary: dict[str, Any], monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts from the latency rule(s) of ``monitoring.alert_rules``."""
    from ts_kedro.pipelines.monitoring.nodes import evaluate_alert_rules

    return evaluate_alert_rules({"latency_seconds": inference_summary["latency_seconds"]}, monitoring["alert_rules"])
