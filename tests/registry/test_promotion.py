"""Promotion rule, rollback stack and history on an embedded SQLite registry (no server, no model files).

Versions are registered straight from a source path: promotion only reads and moves aliases and tags,
so it does not need the model files (the server test covers logging real models).
"""
from __future__ import annotations

import json
import math

import pytest
from mlflow import MlflowClient

from ts_kedro.registry import registry

MODEL = "promotion_test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite registry per module (creating its schema is the slow part); each test uses its own model."""
    root = tmp_path_factory.mktemp("registry")
    return f"sqlite:///{root / 'mlflow.db'}", root


@pytest.fixture
def model(store, request):
    """A registered model with four versions, named after the test."""
    uri, root = store
    name = f"{MODEL}_{request.node.name}"[:200]
    client = MlflowClient(uri, uri)
    client.create_registered_model(name)
    for _ in range(4):
        client.create_model_version(name, source=(root / "unused_model").as_uri())
    return name, uri, root / f"{request.node.name}.jsonl"


def promote(model, version, champion_score, challenger_score, margin=0.02, higher_is_better=False):
    name, uri, history = model
    return registry.promote_if_better(
        name, version, champion_score, challenger_score, margin, higher_is_better=higher_is_better,
        metric="smape", history_path=history, tracking_uri=uri,
    )


def champion(model):
    return registry.get_alias_version(model[0], "champion", model[1])


def test_relative_improvement_signs_and_zero_champion():
    assert registry.relative_improvement(10.0, 9.0) == pytest.approx(0.1)
    assert registry.relative_improvement(10.0, 11.0) == pytest.approx(-0.1)
    assert registry.relative_improvement(0.5, 0.6, higher_is_better=True) == pytest.approx(0.2)
    assert registry.relative_improvement(0.0, 0.1) == -math.inf  # a perfect champion cannot be beaten
    assert registry.relative_improvement(0.0, 0.1, higher_is_better=True) == math.inf


def test_margin_is_relative_and_must_be_reached(model):
    assert promote(model, 1, None, None)["promoted"]
    assert not promote(model, 2, 10.0, 9.85)["promoted"]  # 1.5 % < 2 %
    assert registry.get_alias_version(model[0], "challenger", model[1]) == 2
    assert promote(model, 2, 10.0, 9.8)["promoted"]  # exactly 2 % reaches the margin
    assert champion(model) == 2 and registry.get_alias_version(model[0], "challenger", model[1]) is None
    # higher-is-better scores (e.g. coverage-based) flip the direction
    assert not promote(model, 3, 0.80, 0.81, higher_is_better=True)["promoted"]  # 1.25 %
    assert promote(model, 3, 0.80, 0.90, higher_is_better=True)["promoted"]
    assert champion(model) == 3


def test_a_tie_on_points_is_broken_by_the_interval_score(model):
    name, uri, history = model

    def with_intervals(version, champion_score, challenger_score, champion_interval, challenger_interval):
        return registry.promote_if_better(
            name, version, champion_score, challenger_score, 0.02, metric="owa", history_path=history,
            tracking_uri=uri, champion_interval_score=champion_interval, challenger_interval_score=challenger_interval)

    assert with_intervals(1, None, None, None, None)["promoted"]
    # same points (a retrained seasonal naive), intervals 1.5 % better: under the margin, kept
    kept = with_intervals(2, 1.0, 1.0, 10.0, 9.85)
    assert not kept["promoted"] and "a tie on points, broken by the interval score" in kept["reason"]
    assert kept["interval_improvement"] == pytest.approx(0.015)
    # same points, intervals 20 % better: promoted, and the record says why
    won = with_intervals(2, 1.0, 1.0, 10.0, 8.0)
    assert won["promoted"] and champion(model) == 2
    assert won["champion_interval_score"] == 10.0 and won["challenger_interval_score"] == 8.0
    # better points under the margin plus better intervals: promoted
    assert with_intervals(3, 1.0, 0.99, 10.0, 9.0)["promoted"] and champion(model) == 3
    # points worse by the margin or more never win on intervals, however good
    worse = with_intervals(4, 1.0, 1.02, 10.0, 1.0)
    assert not worse["promoted"] and champion(model) == 3 and "tie" not in worse["reason"]
    # points 0.5 % worse: a tie, but the intervals must gain 2 % beyond that loss
    assert not with_intervals(4, 1.0, 1.005, 10.0, 9.78)["promoted"]  # 2.2 % - 0.5 % = 1.7 %
    paid = with_intervals(4, 1.0, 1.005, 10.0, 9.7)  # 3 % - 0.5 % = 2.5 %
    assert paid["promoted"] and champion(model) == 4 and "less the point loss 0.5000%" in paid["reason"]
    # without interval scores the rule is the point rule alone
    assert not promote(model, 3, 1.0, 1.0)["promoted"]
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["promoted"] for r in records] == [True, False, True, True, False, False, True, False]


def test_bad_scores_and_requests_are_refused_without_a_record(model):
    name, uri, history = model
    promote(model, 1, None, None)
    with pytest.raises(registry.RegistryError, match="both champion_score and challenger_score"):
        promote(model, 2, None, 9.0)
    with pytest.raises(registry.RegistryError, match="challenger_score must be finite"):
        promote(model, 2, 10.0, float("nan"))
    with pytest.raises(registry.RegistryError, match="margin must be a finite number >= 0"):
        promote(model, 2, 10.0, 9.0, margin=-0.1)
    with pytest.raises(registry.RegistryError, match="already is the champion"):
        promote(model, 1, 10.0, 9.0)
    with pytest.raises(registry.RegistryError, match="version 99 .* does not exist"):
        promote(model, 99, 10.0, 9.0)
    with pytest.raises(registry.RegistryError, match="moves only through promote_if_better"):
        registry.set_alias(name, "champion", 2, uri)
    assert len(history.read_text().splitlines()) == 1 and champion(model) == 1


def test_rollback_walks_back_through_champions_then_errors(model):
    name, uri, history = model
    for version, (old, new) in zip((1, 2, 3), ((None, None), (10.0, 9.0), (9.0, 8.0))):
        assert promote(model, version, old, new)["promoted"]
    assert champion(model) == 3

    assert registry.rollback(name, history, uri)["champion_version_after"] == 2
    assert registry.rollback(name, history, uri)["champion_version_after"] == 1  # twice goes further back
    with pytest.raises(registry.RegistryError, match="nothing earlier to roll back to"):
        registry.rollback(name, history, uri)
    assert champion(model) == 1

    # promoting after a rollback pushes again; rollback then returns to the restored champion
    assert promote(model, 4, 10.0, 5.0)["promoted"]
    assert registry.rollback(name, history, uri)["champion_version_after"] == 1

    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["event"] for r in records] == ["promotion"] * 3 + ["rollback"] * 2 + ["promotion", "rollback"]
    assert registry.champion_stack(registry.read_history(name, uri)) == [1]


def test_rollback_refuses_when_the_alias_was_moved_by_hand(model):
    name, uri, history = model
    promote(model, 1, None, None)
    promote(model, 2, 10.0, 9.0)
    MlflowClient(uri, uri).set_registered_model_alias(name, "champion", "4")
    with pytest.raises(registry.RegistryError, match="champion is version 4 but the promotion history ends with 2"):
        registry.rollback(name, history, uri)


def test_record_decision_keeps_the_champion_and_explains_why(model):
    name, uri, history = model
    promote(model, 1, None, None)
    registry.set_alias(name, "challenger", 2, uri)
    decision = registry.record_decision(
        name, 2, promoted=False, reason="no common recent window", history_path=history, tracking_uri=uri
    )
    assert not decision["promoted"] and "no common recent window" in decision["reason"]
    assert champion(model) == 1 and registry.get_alias_version(name, "challenger", uri) == 2
    with pytest.raises(registry.RegistryError, match="promote with promote_if_better"):
        registry.record_decision(name, 2, promoted=True, reason="x", history_path=history, tracking_uri=uri)
    tags = MlflowClient(uri, uri).get_model_version(name, "2").tags
    assert json.loads(tags["promotion_history.000002"]) == decision
