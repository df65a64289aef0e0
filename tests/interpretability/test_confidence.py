"""Confidence scores on a small real Day-0 run (real M4 series, real naive backtests, real selection)."""
from __future__ import annotations

import numpy as np
import pytest

from ts_kedro.interpretability import InterpretabilityError, attach_confidence, confidence_scores

LEVELS = [80, 95]


def test_one_score_per_series_in_unit_interval_for_the_chosen_model(day0):
    scores = confidence_scores(day0["candidate_backtests"], day0["selection"], day0["panel"], LEVELS)
    assert sorted(scores["series_id"]) == sorted(day0["panel"]["series_id"].unique())
    assert scores["confidence"].between(0, 1).all()
    assert dict(zip(scores["series_id"], scores["model"])) == day0["selection"]["choice"]
    assert (scores["n_points"] == 96).all()  # 2 windows x 48 steps


def test_score_follows_the_documented_formula(day0):
    backtests, panel = day0["candidate_backtests"], day0["panel"]
    series_id = "H103"
    model = day0["selection"]["choice"][series_id]
    points = backtests[(backtests["series_id"] == series_id) & (backtests["model"] == model)]
    scale = panel.loc[panel["series_id"] == series_id, "value"].abs().mean()
    calibration, widths = [], []
    for level in LEVELS:
        inside = (points["actual"] >= points[f"lo-{level}"]) & (points["actual"] <= points[f"hi-{level}"])
        nominal = level / 100
        calibration.append(max(0, 1 - abs(inside.mean() - nominal) / max(nominal, 1 - nominal)))
        widths.append((points[f"hi-{level}"] - points[f"lo-{level}"]).mean() / scale)
    expected = np.mean(calibration) / (1 + np.mean(widths))
    scores = confidence_scores(backtests, day0["selection"], panel, LEVELS).set_index("series_id")
    assert scores.loc[series_id, "confidence"] == pytest.approx(expected)


def test_wider_intervals_with_the_same_coverage_lower_confidence(day0):
    backtests = day0["candidate_backtests"]
    base = confidence_scores(backtests, day0["selection"], day0["panel"], LEVELS).set_index("series_id")
    # synthetic edge case: every interval made twice as wide around the mean (coverage can only grow)
    wider = backtests.copy()
    for level in LEVELS:
        for side in ("lo", "hi"):
            column = f"{side}-{level}"
            wider[column] = wider["mean"] + 2 * (wider[column] - wider["mean"])
    widened = confidence_scores(wider, day0["selection"], day0["panel"], LEVELS).set_index("series_id")
    assert (widened["sharpness"] < base["sharpness"]).all()
    assert (widened["confidence"] < base["confidence"]).all()


def test_coverage_at_the_nominal_level_is_calibrated_and_misses_cost_linearly(day0):
    backtests = day0["candidate_backtests"].copy()
    choice = day0["selection"]["choice"]
    rows = backtests["model"] == backtests["series_id"].map(choice)
    # synthetic edge case: intervals that contain the actual on exactly the first 80% of each series' points
    chosen = backtests[rows].copy()
    rank = chosen.groupby("series_id").cumcount() / chosen.groupby("series_id")["actual"].transform("size")
    inside = rank < 0.8
    chosen["lo-80"] = np.where(inside, chosen["actual"] - 1, chosen["actual"] + 1)
    chosen["hi-80"] = np.where(inside, chosen["actual"] + 1, chosen["actual"] + 2)
    backtests.loc[rows, ["lo-80", "hi-80"]] = chosen[["lo-80", "hi-80"]]
    scores = confidence_scores(backtests, day0["selection"], day0["panel"], [80])
    # 96 points per series: the closest achievable coverage is 77/96, off nominal by 0.2/96
    assert scores["coverage-80"].tolist() == pytest.approx([77 / 96] * len(scores))
    assert scores["calibration-80"].tolist() == pytest.approx([1 - (77 / 96 - 0.8) / 0.8] * len(scores))
    inside_nowhere = backtests.assign(**{"lo-80": backtests["actual"] + 1, "hi-80": backtests["actual"] + 2})
    assert (confidence_scores(inside_nowhere, day0["selection"], day0["panel"], [80])["confidence"] == 0).all()


def test_missing_backtest_of_the_chosen_model_is_a_clear_error(day0):
    backtests = day0["candidate_backtests"]
    choice = day0["selection"]["choice"]
    without = backtests[~((backtests["series_id"] == "H1") & (backtests["model"] == choice["H1"]))]
    with pytest.raises(InterpretabilityError, match="series 'H1': no backtest rows"):
        confidence_scores(without, day0["selection"], day0["panel"], LEVELS)


def test_a_series_too_short_for_a_backtest_window_scores_zero_unvalidated(day0):
    """model_selection's unvalidated_series (no backtest window: forecast by the overall choice) have no rows to
    score; reporting stopped on them ("no backtest rows") on a panel with a new 8-month product."""
    backtests = day0["candidate_backtests"]
    selection = {**day0["selection"], "unvalidated_series": ["H1"]}
    without = backtests[backtests["series_id"] != "H1"]
    scores = confidence_scores(without, selection, day0["panel"], LEVELS).set_index("series_id")
    assert scores.loc["H1", "confidence"] == 0 and scores.loc["H1", "n_points"] == 0
    assert not scores.loc["H1", "validated"] and np.isnan(scores.loc["H1", "coverage-80"])
    assert scores.drop(index="H1")["validated"].all()
    full = confidence_scores(backtests, day0["selection"], day0["panel"], LEVELS).set_index("series_id")
    assert scores.drop(index="H1")["confidence"].tolist() == full.drop(index="H1")["confidence"].tolist()
    attached = attach_confidence(day0["forecasts"], scores.reset_index())
    assert (attached.loc[attached["series_id"] == "H1", "confidence"] == 0).all()


def test_missing_interval_column_names_the_dataset(day0):
    with pytest.raises(InterpretabilityError, match="candidate_backtests lacks columns \\['lo-99', 'hi-99'\\]"):
        confidence_scores(day0["candidate_backtests"], day0["selection"], day0["panel"], [99])


def test_attach_confidence_adds_the_series_score_to_every_forecast_row(day0):
    scores = confidence_scores(day0["candidate_backtests"], day0["selection"], day0["panel"], LEVELS)
    attached = attach_confidence(day0["forecasts"], scores)
    assert len(attached) == len(day0["forecasts"])
    assert list(attached.columns) == [*day0["forecasts"].columns, "confidence"]
    by_series = attached.groupby("series_id")["confidence"].nunique()
    assert (by_series == 1).all()
    assert attached.set_index("series_id")["confidence"].groupby(level=0).first().to_dict() == pytest.approx(
        scores.set_index("series_id")["confidence"].to_dict())


def test_attach_confidence_refuses_forecasts_of_unscored_series(day0):
    scores = confidence_scores(day0["candidate_backtests"], day0["selection"], day0["panel"], LEVELS)
    with pytest.raises(InterpretabilityError, match="without a confidence score"):
        attach_confidence(day0["forecasts"], scores[scores["series_id"] != "H120"])
