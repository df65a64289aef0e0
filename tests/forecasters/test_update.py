"""Contract of ``Forecaster.update``: condition a fitted model on newer observations without re-estimating it.

Every family is fitted on the small real panel (3 M4 Hourly series) minus its last ``NEW`` hours and updated
with them. Generic checks: the forecast starts after the new observations, nothing is re-estimated, updating
in two chunks equals one chunk, misuse raises clear errors and leaves the model unchanged. Per family: update
then predict equals the fitted parameters applied to the longer series, computed independently where defined.
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from tests.forecasters.test_forecasters import FREQ, HORIZON, LEVELS, SEASON, SPECS
from ts_kedro.forecasters import FORECASTERS, ForecasterError, build_forecaster
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE

NEW = 12  # new hours after the fit (half a season: the forecast origin moves off the season boundary)
BUILT_IN = ("seasonal_naive", "arima", "ets", "theta", "intermittent", "lstm", "prophet")


def _split(panel: pd.DataFrame, new: int = NEW) -> tuple[pd.DataFrame, pd.DataFrame]:
    ordered = panel.sort_values([SERIES_ID, TIMESTAMP])
    position_from_end = ordered.groupby(SERIES_ID).cumcount(ascending=False)
    head = ordered[position_from_end >= new].reset_index(drop=True)
    tail = ordered[position_from_end < new].reset_index(drop=True)
    return head, tail


@pytest.fixture(scope="module")
def head_and_tail(small_panel):
    return _split(small_panel)


@pytest.fixture(scope="module")
def fitted_on_head(head_and_tail) -> dict:
    head, _ = head_and_tail
    return {family: build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(head)
            for family, spec in SPECS.items()}


@pytest.fixture(scope="module", params=sorted(SPECS))
def updated(request, fitted_on_head, head_and_tail):
    """(family, model fitted on the head, the same model updated with the tail, its forecast)."""
    family = request.param
    original = fitted_on_head[family]
    if not original.supports_update:
        pytest.skip(f"{family} does not implement update (checked by test_family_without_update_refuses_clearly)")
    model = copy.deepcopy(original).update(head_and_tail[1])
    return family, original, model, model.predict(HORIZON, LEVELS)


def test_built_in_families_support_update(fitted_on_head):
    assert set(BUILT_IN) <= set(FORECASTERS)
    assert all(fitted_on_head[family].supports_update for family in BUILT_IN)


def test_family_without_update_refuses_clearly(fitted_on_head, head_and_tail):
    custom = copy.deepcopy(fitted_on_head["custom"])  # the test-only model implements no _update
    assert not custom.supports_update
    with pytest.raises(ForecasterError, match="does not implement update"):
        custom.update(head_and_tail[1])


def test_forecast_starts_after_the_new_observations(updated, small_panel):
    _, _, model, forecast = updated
    ends = small_panel.groupby(SERIES_ID)[TIMESTAMP].max()
    starts = forecast.groupby(SERIES_ID)[TIMESTAMP].min()
    assert (starts == ends + pd.Timedelta(hours=1)).all()
    assert (forecast.groupby(SERIES_ID).size() == HORIZON).all()
    for level in LEVELS:
        assert (forecast[f"lo-{level}"] <= forecast["mean"]).all() and (forecast["mean"] <= forecast[f"hi-{level}"]).all()


def test_update_re_estimates_nothing_and_moves_the_forecast(updated):
    family, original, model, forecast = updated
    assert model.n_parameters() == original.n_parameters()
    before = original.predict(HORIZON, LEVELS)
    assert not np.allclose(before["mean"].to_numpy(), forecast["mean"].to_numpy()), family


def test_two_chunks_equal_one(updated, fitted_on_head, head_and_tail):
    family, _, model, forecast = updated
    if family == "prophet":
        pytest.skip("prophet refits (warm-started) on every update: chunks give two optima, checked separately")
    tail = head_and_tail[1]
    first = tail.groupby(SERIES_ID, group_keys=False).head(5)
    second = tail.drop(first.index)
    chunked = copy.deepcopy(fitted_on_head[family]).update(first).update(second)
    pd.testing.assert_frame_equal(chunked.predict(HORIZON, LEVELS), forecast)


def test_updated_model_pickles(updated):
    _, _, model, forecast = updated
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(model)).predict(HORIZON, LEVELS), forecast)


def test_misuse_raises_clear_errors_and_leaves_the_model_unchanged(fitted_on_head, head_and_tail):
    model = copy.deepcopy(fitted_on_head["theta"])
    before = model.predict(HORIZON, LEVELS)
    tail = head_and_tail[1]
    first_id = tail[SERIES_ID].iloc[0]
    with pytest.raises(ForecasterError, match="not fitted on"):
        model.update(tail.assign(**{SERIES_ID: "no-such-series"}))
    with pytest.raises(ForecasterError, match=f"series {first_id!r} must continue"):
        model.update(tail.iloc[1:])  # the first new hour of one series is missing: a gap
    with pytest.raises(ForecasterError, match="must continue"):
        model.update(pd.concat([tail, tail]))  # duplicated timestamps
    with pytest.raises(ForecasterError, match="NaN"):
        model.update(tail.assign(**{VALUE: np.nan}))
    with pytest.raises(ForecasterError, match="lacks columns"):
        model.update(tail.drop(columns=[VALUE]))
    pd.testing.assert_frame_equal(model.predict(HORIZON, LEVELS), before)
    pd.testing.assert_frame_equal(model.update(tail.iloc[:0]).predict(HORIZON, LEVELS), before)  # empty: no-op
    model.update(tail)
    with pytest.raises(ForecasterError, match="must continue"):
        model.update(tail)  # already seen


def test_refused_series_leaves_the_whole_model_unchanged(fitted_on_head, head_and_tail):
    model = copy.deepcopy(fitted_on_head["arima"])
    log_scale = [sid for sid, state in model.fitted_.items() if state.log_scale]
    assert log_scale, "the real hourly series are positive: arima models them on the log scale"
    before = model.predict(HORIZON, LEVELS)
    tail = head_and_tail[1].copy()
    tail.loc[tail[SERIES_ID] == log_scale[-1], VALUE] = -1.0
    with pytest.raises(ForecasterError, match=f"series {log_scale[-1]!r}: modelled on the log scale") as refused:
        model.update(tail)
    assert refused.value.series_ids == (log_scale[-1],) and "-1.0" in refused.value.reasons[log_scale[-1]]
    assert pickle.loads(pickle.dumps(refused.value)).reasons == refused.value.reasons  # through a worker process
    pd.testing.assert_frame_equal(model.predict(HORIZON, LEVELS), before)


def _with_zero(head_and_tail, series_ids):
    """The tail with one 0 in each of ``series_ids`` (a closed shop's day) and the history that holds it."""
    head, tail = head_and_tail
    tail = tail.copy()
    for series_id in series_ids:
        tail.loc[tail.index[tail[SERIES_ID] == series_id][NEW // 2], VALUE] = 0.0
    return tail, pd.concat([head, tail], ignore_index=True)


@pytest.mark.parametrize("family", ["arima", "ets"])
def test_only_the_refused_series_are_refitted_and_the_others_updated(family, fitted_on_head, head_and_tail):
    """A 0 where ARIMA models the log (or ETS a multiplicative error) refits that series on its history; the other
    series are updated exactly as without it, their parameters kept. Before, the whole family was refitted."""
    fitted = fitted_on_head[family]
    refusing = [sid for sid, state in fitted.fitted_.items()
                if (state.log_scale if family == "arima" else "mul" in (state.spec.error, state.spec.seasonal))]
    assert len(refusing) >= 2, "the real hourly series are positive: modelled on the log / multiplicatively"
    refused = refusing[:1]
    tail, history = _with_zero(head_and_tail, refused)
    with pytest.raises(ForecasterError) as caught:
        copy.deepcopy(fitted).update(tail)
    assert caught.value.series_ids == tuple(refused)

    model = copy.deepcopy(fitted).update_refitting_refused(tail, history=history)
    assert list(model.refitted_on_update_) == refused and "<= 0" in model.refitted_on_update_[refused[0]]
    assert model.series_ids_ == fitted.series_ids_
    ends = history.groupby(SERIES_ID)[TIMESTAMP].max()
    assert (model.last_timestamp_ == ends.reindex(model.last_timestamp_.index)).all()
    got = model.predict(HORIZON, LEVELS)
    others = [sid for sid in fitted.series_ids_ if sid not in refused]
    kept = copy.deepcopy(fitted).restricted_to(others).update(tail[tail[SERIES_ID].isin(others)])
    for sid in others:
        assert model.fitted_[sid].params is kept.fitted_[sid].params or \
            np.array_equal(model.fitted_[sid].params, fitted.fitted_[sid].params)  # not re-estimated
    pd.testing.assert_frame_equal(got[got[SERIES_ID].isin(others)].reset_index(drop=True),
                                  kept.predict(HORIZON, LEVELS), check_exact=False, rtol=1e-6)
    alone = build_forecaster(SPECS[family], freq=FREQ, season_length=SEASON).fit(
        history[history[SERIES_ID].isin(refused)].reset_index(drop=True))
    pd.testing.assert_frame_equal(got[got[SERIES_ID].isin(refused)].reset_index(drop=True),
                                  alone.predict(HORIZON, LEVELS), check_exact=False, rtol=1e-6)


def test_every_refused_series_is_named_at_once_and_the_model_is_unchanged_on_failure(fitted_on_head, head_and_tail):
    fitted = fitted_on_head["arima"]
    tail, history = _with_zero(head_and_tail, fitted.series_ids_)
    with pytest.raises(ForecasterError, match=f"{len(fitted.series_ids_)} series cannot be updated") as caught:
        copy.deepcopy(fitted).update(tail)
    assert set(caught.value.series_ids) == set(fitted.series_ids_)
    model = copy.deepcopy(fitted)
    before = model.predict(HORIZON, LEVELS)
    with pytest.raises(ForecasterError, match="history lacks series"):  # the refit needs their history
        model.update_refitting_refused(tail, history=history[history[SERIES_ID] != fitted.series_ids_[0]])
    pd.testing.assert_frame_equal(model.predict(HORIZON, LEVELS), before)
    assert model.update_refitting_refused(tail, history=history).refitted_on_update_.keys() == set(fitted.series_ids_)


def test_a_global_family_refuses_to_merge_a_series_fit(fitted_on_head, head_and_tail):
    """One network for all series (the LSTM) cannot take one series' own fit: the caller refits the family."""
    lstm = fitted_on_head["lstm"]
    assert not lstm.per_series_state and fitted_on_head["arima"].per_series_state
    with pytest.raises(ForecasterError, match="per-series state"):
        lstm.merged_with(lstm)
    with pytest.raises(ForecasterError, match="same family"):
        fitted_on_head["arima"].merged_with(fitted_on_head["ets"])


def test_a_merged_fit_keeps_the_calibration_and_the_anomaly_treatment(fitted_on_head, head_and_tail):
    fitted = copy.deepcopy(fitted_on_head["theta"])
    fitted.anomaly_treatment = "keep"
    fitted.calibration_scales_ = {sid: 1.0 + i for i, sid in enumerate(fitted.series_ids_)}
    fitted.interval_calibration_ = {"levels": {}, "fit_level": {"served": {80: 1.0}}}
    fresh = fitted.unfitted_copy()
    assert fresh.anomaly_treatment == "keep" and fresh.hyperparameters == fitted.hyperparameters
    first = fitted.series_ids_[0]
    merged = fitted.merged_with(fresh.fit(pd.concat(head_and_tail)[lambda p: p[SERIES_ID] == first]))
    assert merged.calibration_scales_ == fitted.calibration_scales_  # the backtest's calibration, as a refit keeps
    assert "served" not in merged.interval_calibration_["fit_level"]  # recorded anew for the merged fit
    assert "served" in fitted.interval_calibration_["fit_level"]  # the source is untouched
    assert merged.fitted_[first] is not fitted.fitted_[first]
    assert all(merged.fitted_[sid] is fitted.fitted_[sid] for sid in fitted.series_ids_[1:])


# -- per family: update then predict equals the fitted parameters on the longer series ----------------------------
def _values(panel: pd.DataFrame, series_id) -> np.ndarray:
    return panel[panel[SERIES_ID] == series_id].sort_values(TIMESTAMP)[VALUE].to_numpy(float)


def test_seasonal_naive_update_repeats_the_newest_season(fitted_on_head, small_panel, head_and_tail):
    model = copy.deepcopy(fitted_on_head["seasonal_naive"]).update(head_and_tail[1])
    longer = build_forecaster(SPECS["seasonal_naive"], freq=FREQ, season_length=SEASON).fit(small_panel)
    got, expected = model.predict(HORIZON, LEVELS), longer.predict(HORIZON, LEVELS)
    np.testing.assert_allclose(got["mean"], expected["mean"])
    # the residual scale is the fitted parameter: the intervals keep the width of the original fit
    original = fitted_on_head["seasonal_naive"].predict(HORIZON, LEVELS)
    np.testing.assert_allclose(got["hi-80"] - got["lo-80"], original["hi-80"] - original["lo-80"])


@pytest.mark.parametrize("method", ["auto", "OTM", "DOTM"])
def test_theta_update_equals_the_fitted_recursions_on_the_longer_series(method, small_panel, head_and_tail):
    """The level continues as SES with the fitted alpha from the fitted level (statsmodels computes it here);
    a dynamic model's trend line is the least-squares line of the whole longer (adjusted) series; a static
    model's line, alpha, theta and sigma2 stay."""
    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    from ts_kedro.forecasters.theta import running_trend

    spec = {"class": "theta", "hyperparameters": {"method": method, "n_jobs": 1}}
    fitted = build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(head_and_tail[0])
    model = copy.deepcopy(fitted).update(head_and_tail[1])
    for series_id, state in model.fitted_.items():
        before = fitted.fitted_[series_id]
        values = _values(small_panel, series_id)
        m = state.indices.size
        adjusted = values / state.indices[np.arange(values.size) % m] if m else values
        tail = adjusted[before.n_obs:]
        ses = SimpleExpSmoothing(tail, initialization_method="known", initial_level=before.level).fit(
            smoothing_level=state.alpha, optimized=False)
        assert state.n_obs == values.size and tail.size == NEW
        np.testing.assert_allclose(state.level, float(ses.forecast(1)[0]), rtol=1e-10)
        assert (state.alpha, state.theta, state.sigma2, state.method) == \
            (before.alpha, before.theta, before.sigma2, before.method)
        if state.dynamic:
            mean, intercept, slope = (v[-1] for v in running_trend(adjusted))
            np.testing.assert_allclose([state.mean_y, state.intercept, state.slope], [mean, intercept, slope], rtol=1e-8)
        else:
            assert (state.intercept, state.slope) == (before.intercept, before.slope)


def test_standard_theta_update_equals_ses_with_the_fitted_alpha_on_the_longer_series(small_panel, head_and_tail):
    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    spec = {"class": "theta", "hyperparameters": {"method": "standard", "n_jobs": 1}}
    fitted = build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(head_and_tail[0])
    model = copy.deepcopy(fitted).update(head_and_tail[1])
    for series_id, state in model.fitted_.items():
        values = _values(small_panel, series_id)
        m = state.indices.size
        adjusted = values / state.indices[np.arange(values.size) % m] if m else values
        ses = SimpleExpSmoothing(adjusted, initialization_method="known", initial_level=adjusted[0]).fit(
            smoothing_level=state.alpha, optimized=False)
        assert state.n_obs == values.size
        np.testing.assert_allclose(state.level, float(ses.forecast(1)[0]), rtol=1e-10)
        assert state.b0 == fitted.fitted_[series_id].b0


def test_ets_update_equals_the_fitted_parameters_filtered_over_the_longer_series(fitted_on_head, small_panel,
                                                                               head_and_tail):
    model = copy.deepcopy(fitted_on_head["ets"]).update(head_and_tail[1])
    forecast = model.predict(HORIZON, [])
    for series_id, state in fitted_on_head["ets"].fitted_.items():
        values = _values(small_panel, series_id)
        results = state.spec.model(values).smooth(state.params)
        expected = np.asarray(results.forecast(HORIZON), float)
        np.testing.assert_allclose(forecast[forecast[SERIES_ID] == series_id]["mean"], expected, rtol=1e-8)


def test_arima_update_equals_the_fitted_transform_and_statsmodels_append(fitted_on_head, small_panel,
                                                                         head_and_tail):
    from ts_kedro.forecasters.arima import _difference, _fourier_terms

    original = fitted_on_head["arima"]
    model = copy.deepcopy(original).update(head_and_tail[1])
    for series_id, state in model.fitted_.items():
        before = original.fitted_[series_id]
        values = _values(small_panel, series_id)
        modelled = np.log(values) if state.log_scale else values
        seasonal = state.seasonal
        if "differencing" in seasonal:
            spec = seasonal["differencing"]
            expected = _difference(modelled, spec["d"], spec["D"], spec["m"])
        elif seasonal["method"] == "seasonal_difference":
            expected = modelled[seasonal["period"]:] - modelled[:-seasonal["period"]]
        elif seasonal["method"] == "fourier":
            expected = modelled - _fourier_terms(np.arange(values.size, dtype=float), seasonal["periods"],
                                                 seasonal["order"]) @ seasonal["coef"]
        else:
            continue  # mstl: the repeated last cycles are not a transform of the longer series
        np.testing.assert_allclose(state.adjusted, expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(state.params, before.params)
        # filtering the longer series with the fitted parameters is statsmodels' append(refit=False)
        appended = before.statsmodels_model().filter(before.params).append(state.adjusted[len(before.adjusted):])
        refiltered = state.statsmodels_model().filter(state.params)
        np.testing.assert_allclose(refiltered.forecast(HORIZON), appended.forecast(HORIZON), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["croston", "sba", "tsb"])
def test_intermittent_update_equals_a_fit_with_the_same_smoothing_on_the_longer_series(method, m4_sample_panel):
    # intermittent demand from real data: the real hourly values thresholded at their 80th percentile (mostly zeros)
    ids = sorted(m4_sample_panel[SERIES_ID].unique())[:3]
    panel = m4_sample_panel[m4_sample_panel[SERIES_ID].isin(ids)].groupby(SERIES_ID).tail(200).copy()
    cut = panel.groupby(SERIES_ID)[VALUE].transform(lambda v: v.quantile(0.8))
    panel[VALUE] = np.where(panel[VALUE] > cut, panel[VALUE] - cut, 0.0)
    head, tail = _split(panel.reset_index(drop=True), new=30)
    spec = {"class": "intermittent", "hyperparameters": {"method": method, "alpha_grid": [0.2], "n_jobs": 1}}
    model = build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(head).update(tail)
    longer = build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(panel)
    np.testing.assert_allclose(model.predict(HORIZON, [])["mean"], longer.predict(HORIZON, [])["mean"], rtol=1e-10)


def test_intermittent_series_without_demand_is_fitted_when_its_first_demand_arrives():
    # synthetic edge case: a series of zeros, then demand
    stamps = pd.date_range("2024-01-01", periods=60, freq="D")
    values = np.r_[np.zeros(40), np.tile([0.0, 3.0, 0.0, 0.0, 5.0], 4)]
    panel = pd.DataFrame({SERIES_ID: "s", TIMESTAMP: stamps, VALUE: values})
    spec = {"class": "intermittent", "hyperparameters": {"n_jobs": 1}}
    model = build_forecaster(spec, freq="D").fit(panel.iloc[:40])
    assert model.fitted_["s"].method == "zero"
    model.update(panel.iloc[40:])
    longer = build_forecaster(spec, freq="D").fit(panel)
    np.testing.assert_allclose(model.predict(7, [80]).to_numpy()[:, 2:].astype(float),
                               longer.predict(7, [80]).to_numpy()[:, 2:].astype(float))


def test_lstm_update_forecasts_from_the_newest_window(fitted_on_head, small_panel, head_and_tail):
    model = copy.deepcopy(fitted_on_head["lstm"]).update(head_and_tail[1])
    inputs = model.window_inputs(small_panel)  # the lookback windows of the longer series, built independently
    scaled = model.predict_scaled(inputs["tokens"], inputs["last_season"])
    median = scaled[:, :, list(model.quantiles).index(0.5)] * inputs["scale"][:, None]
    forecast = model.predict(HORIZON, [])
    for i, series_id in enumerate(inputs["series_ids"]):
        np.testing.assert_allclose(forecast[forecast[SERIES_ID] == series_id]["mean"], median[i], rtol=1e-5)


def test_prophet_warm_start_matches_a_cold_fit_on_the_longer_series(fitted_on_head, small_panel, head_and_tail):
    model = copy.deepcopy(fitted_on_head["prophet"]).update(head_and_tail[1])
    cold = build_forecaster(SPECS["prophet"], freq=FREQ, season_length=SEASON).fit(small_panel)
    got, expected = model.predict(HORIZON, [])["mean"].to_numpy(), cold.predict(HORIZON, [])["mean"].to_numpy()
    stale = fitted_on_head["prophet"].predict(HORIZON, [])["mean"].to_numpy()
    # the same MAP problem from a different start: L-BFGS stops at nearby optima (within a few % of the level),
    # much nearer the cold fit than the forecast before the update
    gap = np.mean(np.abs(got - expected)) / np.mean(np.abs(expected))
    stale_gap = np.mean(np.abs(stale - expected)) / np.mean(np.abs(expected))
    assert gap < 0.03 and gap < stale_gap / 5


def test_fallback_served_series_update_through_the_fallback(m4_sample_panel):
    ids = sorted(m4_sample_panel[SERIES_ID].unique())[:2]
    panel = m4_sample_panel[m4_sample_panel[SERIES_ID].isin(ids)].groupby(SERIES_ID).tail(200).copy()
    short = panel[SERIES_ID] == ids[1]
    panel = pd.concat([panel[~short], panel[short].tail(40)]).reset_index(drop=True)  # too short for the lstm
    head, tail = _split(panel)
    spec = SPECS["lstm"]
    model = build_forecaster(spec, freq=FREQ, season_length=SEASON).fit(head)
    assert model.served_by_[ids[1]] != "lstm"
    model.update(tail)
    forecast = model.predict(HORIZON, [])
    starts = forecast.groupby(SERIES_ID)[TIMESTAMP].min()
    assert (starts == panel.groupby(SERIES_ID)[TIMESTAMP].max() + pd.Timedelta(hours=1)).all()
    fallback = model.fallback_model_
    served = fallback if ids[1] in fallback.fitted_series_ids_ else fallback.fallback_model_
    assert served.last_timestamp_[ids[1]] == panel[panel[SERIES_ID] == ids[1]][TIMESTAMP].max()


def test_restricted_view_predicts_and_updates_its_series_like_the_whole_model(updated, fitted_on_head,
                                                                             head_and_tail):
    family, original, model, forecast = updated
    kept = original.series_ids_[1:]
    view = original.restricted_to(kept)
    assert view.series_ids_ == kept
    whole = original.predict(HORIZON, LEVELS)
    pd.testing.assert_frame_equal(view.predict(HORIZON, LEVELS),
                                  whole[whole[SERIES_ID].isin(kept)].reset_index(drop=True), check_exact=False,
                                  rtol=1e-6)
    tail = head_and_tail[1]
    if family != "prophet":  # prophet's warm start is deterministic too, but slow: covered by the whole-model test
        narrowed = view.update(tail[tail[SERIES_ID].isin(kept)]).predict(HORIZON, LEVELS)
        pd.testing.assert_frame_equal(narrowed, forecast[forecast[SERIES_ID].isin(kept)].reset_index(drop=True),
                                      check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(original.predict(HORIZON, LEVELS), whole)  # the original is untouched
    with pytest.raises(ForecasterError, match="were not fitted"):
        original.restricted_to(["no-such-series"])
