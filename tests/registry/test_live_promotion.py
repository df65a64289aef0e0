"""``registry.promote_after: next_batch``: a retrained challenger waits, and is promoted on the next batch only
when its forecasts beat the champion's there (real M4 Hourly series, real next hours, a SQLite registry).

Two configurations are registered in both orders (a daily and a weekly seasonal naive, each fitted on the Day-0
history): whichever forecasts the real next 48 hours better must end as champion, whatever the order, and the
scores the judgement records must be the sMAPE and MASE of the two forecasts computed here by hand.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation import metrics
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.pipelines.model_selection.live_promotion import LIVE_TAG, judge_pending_challenger
from ts_kedro.pipelines.model_selection.nodes import register_and_promote
from ts_kedro.registry import SelectedPanelModel, registry

PANEL = {"freq": "h", "horizon": 48, "levels": [80, 95]}
SELECTION = {"primary_metric": "owa"}
HOURS = 48


@pytest.fixture(scope="module")
def history(m4_sample_panel, shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Day 0: three real series' training parts; then their real next 48 hours (the M4 test part)."""
    ids = sorted(m4_sample_panel["series_id"].unique())[:3]
    day0 = m4_sample_panel[m4_sample_panel["series_id"].isin(ids)].groupby("series_id").tail(24 * 28)
    test = pd.read_csv(shared_data / "m4_hourly" / "Hourly-test-long.csv", parse_dates=["timestamp"])
    after = test[test["series_id"].isin(ids)].astype({"value": float})
    mark = {"is_imputed": False}
    return day0.assign(**mark).reset_index(drop=True), after.assign(**mark).reset_index(drop=True)


def _model(day0: pd.DataFrame, season: int) -> SelectedPanelModel:
    ids = sorted(day0["series_id"].unique())
    family = SeasonalNaive(freq="h", season_length=season).fit(day0)
    return SelectedPanelModel({"naive": family}, {sid: "naive" for sid in ids}, [], [80, 95], HOURS,
                              {"data_window_end": str(day0["timestamp"].max()), "selection_metric": "owa"})


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """This test's own SQLite store as the process-wide tracking and registry URI, as kedro-mlflow sets it in a
    run (an earlier test in the same process may have set another one, and an active experiment: the environment
    variable alone loses)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # set_*_uri write these: undone at teardown
    # nor the experiment an earlier test made active (it does not exist in this store)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    # the process-wide URIs as they were (usually unset): restoring them with set_tracking_uri(previous) would
    # pin a later test to that URI whatever its own MLFLOW_TRACKING_URI says
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _registry(tmp_path, mode: str) -> dict:
    return {"registered_model_name": f"live_promotion_test_{tmp_path.name}", "promotion_margin": 0.02,
            "history_path": str(tmp_path / "history.jsonl"), "promote_after": mode}


def _realized(model: SelectedPanelModel, after: pd.DataFrame, day0: pd.DataFrame) -> tuple[float, float]:
    """Mean sMAPE and MASE over series of the model's forecasts from Day 0 on the next hours."""
    forecast = model.predict(series_ids=model.series_ids, horizon=HOURS, levels=[80, 95])
    smapes, mases = [], []
    for sid, rows in forecast.groupby("series_id"):
        actual = after[after["series_id"] == sid].set_index("timestamp")["value"].reindex(rows["timestamp"]).to_numpy()
        insample = day0[day0["series_id"] == sid]["value"].to_numpy()
        smapes.append(metrics.smape(actual, rows["mean"].to_numpy()))
        mases.append(metrics.mase(actual, rows["mean"].to_numpy(), insample, 24))
    return float(np.mean(smapes)), float(np.mean(mases))


@pytest.mark.parametrize("first_season", [24, 168])
def test_the_challenger_waits_and_wins_only_on_the_next_batch(tmp_path, tracking, history, first_season):
    day0, after = history
    params = _registry(tmp_path, "next_batch")
    name = params["registered_model_name"]
    champion, challenger = _model(day0, first_season), _model(day0, 24 * 7 if first_season == 24 else 24)
    first = register_and_promote(champion, {"primary_metric": "owa", "champion_exists": False,
                                            "challenger_backtest_score": 1.0}, params)
    assert first["promoted"] and first["champion_version_after"] == 1
    # the retrain: registered, not promoted, tagged pending (its backtest comparison is only reported)
    deferred = register_and_promote(challenger, {"primary_metric": "owa", "champion_exists": True, "comparable": True,
                                                 "challenger_score": 0.5, "champion_score": 1.0}, params)
    assert not deferred["promoted"] and deferred["deferred"] and "next_batch" in deferred["reason"]
    client = registry.get_client()
    assert registry.get_alias_version(name, "champion") == 1
    assert client.get_model_version(name, "2").tags[LIVE_TAG] == "pending"

    waiting = judge_pending_challenger(day0, PANEL, params, SELECTION)  # no new actuals yet
    assert not waiting["judged"] and "waits" in waiting["reason"]

    judged = judge_pending_challenger(pd.concat([day0, after], ignore_index=True), PANEL, params, SELECTION)
    assert judged["judged"] and judged["n_points"] == 3 * HOURS
    smape_new, mase_new = _realized(challenger, after, day0)
    smape_old, mase_old = _realized(champion, after, day0)
    assert judged["challenger_smape"] == pytest.approx(smape_new) and judged["champion_smape"] == pytest.approx(smape_old)
    assert judged["challenger_mase"] == pytest.approx(mase_new) and judged["champion_mase"] == pytest.approx(mase_old)
    wins = 0.5 * (smape_new / smape_old + mase_new / mase_old) <= 1 - params["promotion_margin"]
    assert judged["decision"]["promoted"] == wins
    assert registry.get_alias_version(name, "champion") == (2 if wins else 1)
    assert client.get_model_version(name, "2").tags[LIVE_TAG] == ("promoted" if wins else "kept")
    # judged once: the next cycle finds nothing pending; the history holds both decisions, in order
    assert not judge_pending_challenger(pd.concat([day0, after]), PANEL, params, SELECTION)["judged"]
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(r["challenger_version"], r["promoted"]) for r in lines] == [(1, True), (2, False), (2, wins)]


def test_one_order_promotes_and_the_other_keeps(history):
    """The two runs above take both paths: on these hours one configuration beats the other by more than the 2 %
    margin, so registered second it is promoted, and registered first it keeps its title."""
    day0, after = history
    (smape_d, mase_d), (smape_w, mase_w) = (_realized(_model(day0, 24), after, day0),
                                            _realized(_model(day0, 24 * 7), after, day0))
    daily_over_weekly = 0.5 * (smape_d / smape_w + mase_d / mase_w)  # the daily one as challenger
    weekly_over_daily = 0.5 * (smape_w / smape_d + mase_w / mase_d)
    assert min(daily_over_weekly, weekly_over_daily) <= 0.98 < max(daily_over_weekly, weekly_over_daily)


def test_with_backtest_promotion_nothing_waits(tmp_path, tracking, history):
    params = _registry(tmp_path, "backtest")
    assert judge_pending_challenger(history[0], PANEL, params, SELECTION) == {
        "judged": False, "reason": "registry.promote_after is backtest: promotions are decided at the retrain"}
    with pytest.raises(Exception, match="promote_after must be one of"):
        register_and_promote(_model(history[0], 24), {"primary_metric": "owa", "champion_exists": False,
                                                      "challenger_backtest_score": 1.0},
                             {**params, "promote_after": "sometimes"})


def test_a_challenger_with_covariates_known_in_advance_is_judged_on_their_recorded_values(tmp_path, tracking,
                                                                                          history):
    """A challenger family that reads a covariate known in advance forecasts the new points from the values the
    history recorded for them (as they were planned). SYNTHETIC covariate: ``plan`` equals the real value, so the
    challenger (PlanEcho: mean = the plan) forecasts the new hours exactly and must win."""
    from tests.forecasters.plan_echo import PlanEcho

    day0, after = (frame.assign(plan=frame["value"]) for frame in history)
    params = _registry(tmp_path, "next_batch")
    ids = sorted(day0["series_id"].unique())
    echo = PlanEcho(freq="h", known_covariates=["plan"]).fit(day0)
    challenger = SelectedPanelModel({"plan_echo": echo}, {sid: "plan_echo" for sid in ids}, [], [80, 95], HOURS,
                                    {"data_window_end": str(day0["timestamp"].max()), "selection_metric": "owa"})
    register_and_promote(_model(day0[["series_id", "timestamp", "value", "is_imputed"]], 24),
                         {"primary_metric": "owa", "champion_exists": False, "challenger_backtest_score": 1.0}, params)
    register_and_promote(challenger, {"primary_metric": "owa", "champion_exists": True, "comparable": False,
                                      "reason": "test"}, params)
    judged = judge_pending_challenger(pd.concat([day0, after], ignore_index=True), PANEL, params, SELECTION)
    assert judged["judged"] and judged["n_points"] == 3 * HOURS
    assert judged["challenger_smape"] == 0.0 and judged["decision"]["promoted"]
    assert registry.get_alias_version(params["registered_model_name"], "champion") == 2
