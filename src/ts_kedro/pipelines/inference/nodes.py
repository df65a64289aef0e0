"""Nodes of inference: the champion, conditioned on the Day-N history, forecasts the next horizon."""
from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from ts_kedro.pipelines.data_processing.schema import IS_ANOMALY, IS_IMPUTED, SERIES_ID, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)


class StaleChampionError(RuntimeError):
    """The champion's data ends before the history: its forecasts would cover already observed time."""


def load_champion_model(name: str, tracking_uri: str | None = None):
    """The registry's champion (``name@champion``); a separate function so tests can stand in a model."""
    from ts_kedro.registry.registry import load_champion

    return load_champion(name, tracking_uri)


CONDITIONING = ("update", "refit", "none")


class InferenceConfigError(ValueError):
    """``params:inference`` names an unknown conditioning mode or a bad refit threshold."""


def _conditioning(inference: dict[str, Any]) -> str:
    if "refit_on_history" in inference:
        raise InferenceConfigError(
            "inference.refit_on_history was replaced by inference.conditioning (update | refit | none) in "
            "conf/*/parameters_inference.yml: true is now 'refit', false 'none'; the default 'update' fits nothing")
    mode = inference.get("conditioning", "update")
    if mode not in CONDITIONING:
        raise InferenceConfigError(f"inference.conditioning must be one of {CONDITIONING}, got {mode!r} "
                                   "(conf/*/parameters_inference.yml)")
    threshold = inference.get("refit_after_new_steps")
    if threshold is not None and (isinstance(threshold, bool) or int(threshold) != threshold or threshold < 1):
        raise InferenceConfigError(f"inference.refit_after_new_steps must be null or a positive integer, got "
                                   f"{threshold!r} (conf/*/parameters_inference.yml)")
    return mode


def forecast_with_champion(
    history_primary_panel: pd.DataFrame, inference: dict[str, Any], panel: dict[str, Any],
    future_covariates: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Forecast ``panel.horizon`` steps after each series' history end with the champion.

    ``future_covariates``: the new horizon's values of the covariates known in advance (``history_future_covariates``,
    checked by data_processing's ``select_future_covariates`` against the history's end); the families that use
    them (``supports_covariates`` with ``known_covariates``) forecast from it. The history's covariate columns
    reach the families' ``update``, and so do its anomaly flags: a family fitted around flagged anomalies updates
    (or refits) around them too.

    ``inference.conditioning`` says how the champion reaches the history's end:

    - ``update`` (default): its fitted families are conditioned on the points after their data end
      (``SelectedPanelModel.update``: filters run forward, new last values and input windows; nothing is
      re-estimated, Prophet alone re-optimises from its previous parameters). A family that cannot take the new
      points is refitted and the summary names it. With ``refit_after_new_steps`` set, a champion whose data
      end is that many steps or more behind the history is refitted instead (a standing schedule for
      re-estimating parameters between retrains).
    - ``refit``: every family is fitted afresh on the history (same configuration and per-series choice).
    - ``none``: forecast from the champion's own data end; refused when that is older than the history.

    New parameters and a new selection come from the retrain pipeline (on drift), which registers a challenger.

    Returns:
        ``champion_forecasts`` (``series_id, timestamp, mean, lo-L, hi-L, model`` plus the champion's backtest
        metric and score, which monitoring compares realized errors with) and ``inference_summary``.
    """
    started = time.perf_counter()
    mode = _conditioning(inference)
    champion = load_champion_model(inference["registered_model_name"], inference.get("tracking_uri"))
    loaded = time.perf_counter()
    in_history = set(history_primary_panel[SERIES_ID])  # built once: inside the comprehension it is per series
    served = [s for s in champion.series_ids if s in in_history]
    if not served:
        raise StaleChampionError("the champion serves none of the history's series: retrain (Day 0) first")
    if len(served) < len(champion.series_ids):
        # a part of the panel (a partition, or series gone from the history): condition and forecast a view of
        # those series only, not a deep copy of every series' state (``restricted_to``, as serving does)
        champion = champion.restricted_to(served)
    history = history_primary_panel[history_primary_panel[SERIES_ID].isin(served)]
    covariates = [c for c in history.columns if c not in (SERIES_ID, TIMESTAMP, VALUE, IS_IMPUTED, IS_ANOMALY)]
    # the flags stay: an update (or refit) treats flagged anomalies as the Day-0 fit did (forecasters/anomalies.py)
    flags = [IS_ANOMALY] if IS_ANOMALY in history.columns else []
    history = history[[SERIES_ID, TIMESTAMP, VALUE, *covariates, *flags]].reset_index(drop=True)
    model_end = pd.Timestamp(champion.metadata.get("data_window_end", history[TIMESTAMP].max()))
    behind = len(pd.date_range(model_end, history[TIMESTAMP].max(), freq=panel["freq"])) - 1
    threshold = inference.get("refit_after_new_steps")
    if mode == "update" and threshold is not None and behind >= int(threshold):
        logger.info("the champion's data end %s is %d steps behind the history (refit_after_new_steps=%s): "
                    "refitting instead of updating", model_end, behind, threshold)
        mode = "refit"
    refitted_families: dict[str, str] = {}
    refitted_series: dict[str, dict[str, str]] = {}
    if mode == "refit":
        champion = champion.refit(history)
        refitted_families = {family: "conditioning: refit" for family in champion.family_models}
    elif mode == "update":
        champion = champion.update(history)
        refitted_families = dict(champion.metadata.get("refitted_families", {}))
        refitted_series = {family: {str(sid): reason for sid, reason in series.items()}
                           for family, series in champion.metadata.get("refitted_series", {}).items()}
    elif model_end < history[TIMESTAMP].max():
        raise StaleChampionError(
            f"the champion's data ends at {model_end} but the history reaches {history[TIMESTAMP].max()}: "
            "set inference.conditioning: update (or refit), or retrain before forecasting")
    if future_covariates is not None and len(future_covariates):
        champion = champion.with_future_covariates(future_covariates)
    fitted = time.perf_counter()
    horizon = min(int(panel["horizon"]), champion.max_horizon)
    levels = [level for level in panel["levels"] if level in champion.levels]
    forecasts = champion.predict(series_ids=served, horizon=horizon, levels=levels)
    predicted = time.perf_counter()
    forecasts["champion_metric"] = champion.metadata.get("primary_metric", "smape")
    forecasts["champion_backtest_score"] = float(champion.metadata.get("selected_score", float("nan")))
    summary = {
        "n_series": len(served), "horizon": horizon, "levels": levels, "rows": int(len(forecasts)),
        "load_seconds": loaded - started, "condition_seconds": fitted - loaded, "predict_seconds": predicted - fitted,
        "latency_seconds": predicted - started, "conditioning": mode, "new_steps": behind,
        "refitted_families": refitted_families, "refitted_series": refitted_series,
        "forecast_start": str(forecasts[TIMESTAMP].min()), "forecast_end": str(forecasts[TIMESTAMP].max()),
    }
    logger.info("forecast %d series x %d steps in %.2fs (%s over %d new steps %.3fs, predict %.3fs)", len(served),
                horizon, summary["latency_seconds"], mode, behind, summary["condition_seconds"],
                summary["predict_seconds"])
    return forecasts, summary


def inference_metrics(inference_summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """MLflow metrics of the run, in kedro-mlflow's ``{name: {"value": v, "step": 0}}`` form."""
    keys = ("latency_seconds", "predict_seconds", "condition_seconds", "n_series", "new_steps")
    metrics = {key: {"value": float(inference_summary[key]), "step": 0} for key in keys}
    metrics["refitted_families"] = {"value": float(len(inference_summary["refitted_families"])), "step": 0}
    # series refitted inside an updated family (their update refused), summed over families; older summaries lack it
    refitted_series = sum(len(series) for series in inference_summary.get("refitted_series", {}).values())
    metrics["refitted_series"] = {"value": float(refitted_series), "step": 0}
    return metrics


def evaluate_inference_alerts(inference_summary: dict[str, Any], monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts from the latency rule(s) of ``monitoring.alert_rules``."""
    from ts_kedro.pipelines.monitoring.alert_rules import evaluate_alert_rules

    return evaluate_alert_rules({"latency_seconds": inference_summary["latency_seconds"]}, monitoring["alert_rules"])
