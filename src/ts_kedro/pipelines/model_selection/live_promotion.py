"""Promotion on live data: a retrained challenger is judged on the batch that arrives after it, not on its backtest.

``model_selection.registry.promote_after`` says when a Day-N retrain's challenger may replace the champion:

- ``backtest`` (default): at the retrain, when it beats the champion by ``promotion_margin`` on the last backtest
  window (``compare_with_champion``);
- ``next_batch``: the retrain registers the challenger and defers the decision (``defer_promotion``); the next
  Day-N cycle, once new actuals have arrived, scores the challenger's forecasts from its own fit against the
  champion's forecasts from the same data (the champion conditioned on it with ``update``: as it served), both out
  of sample on the same new points, and promotes it when it wins by ``promotion_margin``
  (``judge_pending_challenger``). This is the champion/challenger "shadow" evaluation of MLOps practice: after a
  change, the last backtest window ends before the change for both models, so it says little about which will
  forecast the changed series better; the next batch does.

A pending challenger is marked on its registry version (tag ``LIVE_TAG``: ``pending``, then ``promoted`` or
``kept``), so it is judged once, and a killed cycle judges it on the next one.
"""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ts_kedro.evaluation.backtest import evaluate_backtest
from ts_kedro.forecasters import interval_columns
from ts_kedro.frequency import profile_for_panel
from ts_kedro.pipelines.model_selection.nodes import (
    KEYS,
    SelectionError,
    _comparison_scores,
    champion_series_data_end,
)

logger = logging.getLogger(__name__)

PROMOTE_AFTER = ("backtest", "next_batch")
LIVE_TAG = "live_promotion"  # pending | promoted | kept


def promote_after(registry_params: dict[str, Any]) -> str:
    """``registry.promote_after``, checked (default ``backtest``)."""
    mode = registry_params.get("promote_after") or "backtest"
    if mode not in PROMOTE_AFTER:
        raise SelectionError(f"model_selection.registry.promote_after must be one of {PROMOTE_AFTER}, got {mode!r}")
    return mode


def defer_promotion(name: str, version: int, comparison: dict, registry_params: dict[str, Any]) -> dict:
    """Record that ``version`` waits for the next batch (``promote_after: next_batch``), tagged ``pending``."""
    from ts_kedro.registry import registry

    backtest = (f"; on the last backtest window it scored {comparison['challenger_score']:.4g} against the "
                f"champion's {comparison['champion_score']:.4g}" if comparison.get("comparable") else "")
    decision = registry.record_decision(
        name, version, promoted=False, history_path=registry_params["history_path"],
        reason="deferred: judged against the champion on the next batch of actuals (registry.promote_after: "
               f"next_batch){backtest}")
    registry.get_client().set_model_version_tag(name, str(version), LIVE_TAG, "pending")
    return {**decision, "deferred": True}


def _with_recorded_plan(panel_model, after: pd.DataFrame):
    """The panel model with ``after``'s covariate values as its plan, where a family uses known covariates."""
    if any(m.supports_covariates and m.known_covariates for m in panel_model.family_models.values()):
        return panel_model.with_future_covariates(after)
    return panel_model


def judge_pending_challenger(history_primary_panel: pd.DataFrame, panel_params: dict[str, Any],
                             registry_params: dict[str, Any], selection_params: dict[str, Any]) -> dict:
    """Promote a challenger that waits for live evidence (``promote_after: next_batch``) when it wins on new data.

    The new points are each series' observed actuals after the challenger's training data ended (its
    ``series_data_end``), at most its horizon. The challenger forecasts them from its own fit; the champion from
    the same data (``update``, no re-estimation). Both are scored on exactly those points with the primary metric
    (OWA against seasonal naive from the same history, like the backtest) and ``promote_if_better`` decides with
    ``promotion_margin`` (and the interval score as tie-break), recording the decision in the promotion history.
    Fewer than half a horizon of new points per series: the challenger stays pending.

    Returns:
        What was judged: ``{judged, reason, challenger_version, champion_version, scores, decision}``.
    """
    from ts_kedro.registry import registry

    if promote_after(registry_params) != "next_batch":
        return {"judged": False, "reason": "registry.promote_after is backtest: promotions are decided at the retrain"}
    name = registry_params["registered_model_name"]
    client = registry.get_client()
    champion_version = registry.get_alias_version(name, registry.CHAMPION)
    challenger_version = registry.get_alias_version(name, registry.CHALLENGER)
    if champion_version is None or challenger_version is None:
        return {"judged": False, "reason": "no challenger waits for a decision"}
    tags = client.get_model_version(name, str(challenger_version)).tags or {}
    if tags.get(LIVE_TAG) != "pending":
        return {"judged": False, "reason": f"challenger version {challenger_version} was already decided"}
    champion = registry.load_panel_model(name, champion_version)
    challenger = registry.load_panel_model(name, challenger_version)
    profile = profile_for_panel(history_primary_panel, panel_params)
    ends = champion_series_data_end(challenger, challenger.series_ids)
    panel = history_primary_panel[history_primary_panel["series_id"].astype(str).isin(ends)]
    end = panel["series_id"].astype(str).map(ends)
    observed = ~panel["is_imputed"] if "is_imputed" in panel else pd.Series(True, index=panel.index)
    horizon = min(challenger.max_horizon, profile.horizon)
    new = panel[(panel["timestamp"] > end) & observed]
    new = new[new.groupby("series_id").cumcount() < horizon]
    counts = new.groupby("series_id").size()
    needed = max(1, profile.horizon // 2)
    ready = sorted(str(s) for s in counts.index[counts >= needed] if str(s) in champion.series_ids)
    base = {"challenger_version": challenger_version, "champion_version": champion_version}
    if not ready:
        return {**base, "judged": False,
                "reason": f"challenger version {challenger_version} waits: no series has {needed} new observed "
                          f"actuals after its training data yet"}
    levels = panel_params["levels"]
    served = champion.update(panel[(panel["timestamp"] <= end) & panel["series_id"].astype(str).isin(ready)],
                             note="live_promotion_cutoff")
    # families with covariates known in advance forecast the new points from their recorded values (as planned)
    served, challenger = (_with_recorded_plan(model, panel[panel["timestamp"] > end]) for model in (served, challenger))
    challenger_forecast = challenger.predict(series_ids=ready, horizon=horizon, levels=levels)
    champion_forecast = served.predict(series_ids=ready, horizon=horizon, levels=levels)
    values = ["mean", *interval_columns(levels)]
    actuals = new[new["series_id"].astype(str).isin(ready)][["series_id", "timestamp", "value"]].rename(
        columns={"value": "actual"}).assign(series_id=lambda f: f["series_id"].astype(str))
    frames = []
    for forecast in (challenger_forecast, champion_forecast):
        frame = forecast[["series_id", "timestamp", *values]].assign(series_id=lambda f: f["series_id"].astype(str))
        frame = frame.merge(actuals, on=["series_id", "timestamp"])
        frame["cutoff"] = pd.to_datetime(frame["series_id"].map(ends))
        frame["window"] = 0
        frames.append(frame[[*KEYS, *values, "actual"]])
    common = frames[0][KEYS].merge(frames[1][KEYS], on=KEYS)
    frames = [frame.merge(common, on=KEYS) for frame in frames]
    history = panel.assign(series_id=panel["series_id"].astype(str))
    _, challenger_scores = evaluate_backtest(frames[0], history, profile.season_length, levels)
    _, champion_scores = evaluate_backtest(frames[1], history, profile.season_length, levels)
    metric = selection_params.get("primary_metric", "owa")
    scores = _comparison_scores(challenger_scores, champion_scores, metric)
    decision = registry.promote_if_better(
        name, challenger_version, champion_score=scores["champion_score"],
        challenger_score=scores["challenger_score"], margin=float(registry_params["promotion_margin"]),
        history_path=registry_params["history_path"], champion_interval_score=scores.get("champion_interval_score"),
        challenger_interval_score=scores.get("challenger_interval_score"))
    client.set_model_version_tag(name, str(challenger_version), LIVE_TAG,
                                 "promoted" if decision.get("promoted") else "kept")
    logger.info("live promotion of version %s: %s", challenger_version, decision.get("reason"))
    return {**base, "judged": True, "n_series": len(ready), "n_points": int(len(common)), "primary_metric": metric,
            **scores, "decision": decision,
            "reason": f"judged on {len(common)} new points of {len(ready)} series: {decision.get('reason')}"}
