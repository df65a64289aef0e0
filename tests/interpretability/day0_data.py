"""A small but real Day-0 run built in-process for the interpretability and reporting tests.

Three real M4 Hourly series (last 528 hours) and two real candidate families that are cheap to backtest: the daily
seasonal naive (``seasonal_naive``, season 24) and the weekly seasonal naive (``weekly_naive``, season 168), plus
their median ensemble; then model_selection's own scoring and selection nodes.
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from ts_kedro.pipelines.model_selection.nodes import build_candidate_backtests, score_candidates, select_models
from ts_kedro.pipelines.training.nodes import backtest_model, fit_model

PANEL_PARAMS = {"freq": "h", "season_length": 24, "horizon": 48, "levels": [80, 95]}
BACKTEST_PARAMS = {"n_windows": 2, "step": 48}
SELECTION_PARAMS = {"primary_metric": "smape", "tie_tolerance": 0.0, "secondary_weights": {}, "per_series": True,
                    "ensemble": {"enabled": True, "members": None, "exclude": []}}
FAMILIES = {"seasonal_naive": 24, "weekly_naive": 168}


def real_panel(raw_csv, n_series: int = 3, length: int = 528) -> pd.DataFrame:
    """The first ``n_series`` series of the shipped M4 sample, last ``length`` hours, canonical columns."""
    panel = pd.read_csv(raw_csv, parse_dates=["timestamp"])
    panel["value"] = panel["value"].astype(float)
    ids = sorted(panel["series_id"].unique())[:n_series]
    panel = panel[panel["series_id"].isin(ids)].sort_values(["series_id", "timestamp"])
    panel = panel.groupby("series_id", group_keys=False).tail(length).reset_index(drop=True)
    return panel.assign(is_imputed=False, is_anomaly=False)


@lru_cache(maxsize=2)
def build_day0(raw_csv) -> dict:
    """Backtests, candidates, scores, selection and the champion's future forecasts of the two naive families."""
    panel = real_panel(raw_csv)
    backtests, stats, models = {}, {}, {}
    for family, season in FAMILIES.items():
        spec = {"name": family, "class": "seasonal_naive", "hyperparameters": {}}
        params = {**PANEL_PARAMS, "season_length": season}
        backtests[family], _ = backtest_model(panel, spec, params, BACKTEST_PARAMS)
        models[family], _, stats[family] = fit_model(panel, spec, params)
    candidates = build_candidate_backtests(SELECTION_PARAMS["ensemble"], PANEL_PARAMS, **backtests)
    scores = score_candidates(candidates, panel, PANEL_PARAMS)
    selection, report = select_models(scores, SELECTION_PARAMS, **stats)
    future = []
    for series_id, model in selection["choice"].items():
        names = list(FAMILIES) if model == "ensemble" else [model]
        parts = [models[name].predict(48, [80, 95]) for name in names]
        forecast = pd.concat(parts).groupby(["series_id", "timestamp"], as_index=False).median()
        future.append(forecast[forecast["series_id"] == series_id].assign(model=model))
    forecasts = pd.concat(future, ignore_index=True)
    return {"panel": panel, "candidate_backtests": candidates, "candidate_scores": scores, "selection": selection,
            "forecasts": forecasts}
