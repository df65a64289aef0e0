"""LightGBM family specifics on real data: rows from feature_engineering's model_input, yearly data, covariates."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import ForecasterError
from ts_kedro.forecasters.gradient_boosting import LightGBMForecaster

HYPER = {"n_estimators": 30, "n_jobs": 1}


def test_fit_from_a_longer_model_input_equals_fit_from_the_truncated_panel(small_panel):
    """A backtest window reuses the whole history's model_input: the rows whose target is inside its panel."""
    model = LightGBMForecaster(freq="h", season_length=24, horizon=24, **HYPER)  # calendar fact
    table = model.training_table(small_panel)
    rank = small_panel.groupby("series_id").cumcount(ascending=False)
    cut = small_panel[rank >= 24].reset_index(drop=True)  # calendar fact
    from_rows = LightGBMForecaster(freq="h", season_length=24, horizon=24, max_training_rows=10**7,  # calendar fact
                                   **HYPER).fit(cut, model_input=table)
    rebuilt = LightGBMForecaster(freq="h", season_length=24, horizon=24, max_training_rows=10**7,  # calendar fact
                                 **HYPER).fit(cut)
    assert from_rows.rows_from_model_input_ and not rebuilt.rows_from_model_input_
    assert from_rows.n_training_rows_ == rebuilt.n_training_rows_
    pd.testing.assert_frame_equal(from_rows.predict(24, [80]), rebuilt.predict(24, [80]))
    # a model_input of another specification is refused with a clear error
    with pytest.raises(ForecasterError, match="model_input lacks columns"):
        LightGBMForecaster(freq="h", season_length=24, horizon=24, **HYPER).fit(  # calendar fact
            cut, model_input=table.drop(columns=["lag_1"]))


def test_yearly_m3_series_train_without_seasonal_terms(shared_data):
    train = pd.read_csv(shared_data / "m3" / "M3_yearly_train_long.csv", parse_dates=["timestamp"])
    ids = train["series_id"].drop_duplicates().iloc[:40]
    train = train[train["series_id"].isin(ids)].reset_index(drop=True)
    model = LightGBMForecaster(freq="YS", horizon=6, **HYPER).fit(train)
    assert model.season_length == 1 and model.spec_.periods == () and model.spec_.calendar_features == ()
    forecast = model.predict(6, [80, 95])
    assert len(forecast) == 6 * 40 and np.isfinite(forecast["mean"]).all()
    importance = model.feature_importance()
    assert set(importance["feature"]) == set(model.feature_names_) and importance["gain"].sum() == pytest.approx(1)
    assert (importance["mean_abs_shap"] >= 0).all() and importance["mean_abs_shap"].max() > 0


def test_known_covariate_needs_future_values_and_names_the_first_missing_one(small_panel):
    panel = small_panel.copy()
    panel["promo"] = (panel["timestamp"].dt.dayofweek >= 5).astype(float)  # synthetic flag on real series
    model = LightGBMForecaster(freq="h", season_length=24, horizon=24, known_covariates=["promo"],  # calendar fact
                               **HYPER).fit(panel)
    with pytest.raises(ForecasterError, match="promo.*first missing timestamp"):
        model.predict(24, [80])
    sid = panel["series_id"].iloc[0]
    future = pd.concat([pd.DataFrame({"series_id": s, "timestamp": model.future_index(s, 24), "promo": 0.0})
                        for s in model.series_ids_], ignore_index=True)
    gap = future.drop(index=future.index[(future["series_id"] == sid)][5])
    with pytest.raises(ForecasterError, match=f"promo.*{sid}.*{model.future_index(sid, 24)[5]}"):
        model.set_future_covariates(gap).predict(24, [80])
    assert len(model.set_future_covariates(future).predict(24, [80])) == 24 * 3


def test_seasonal_diff_scaling_keeps_enough_history_for_update_and_predict(small_panel):
    """``scaling: seasonal_diff`` reads max(m, horizon) seasonal differences before the origin: the history a fitted
    model keeps (and moves forward on update) must give the rows the whole series gives."""
    from ts_kedro.pipelines.feature_engineering.model_input import origin_rows

    rank = small_panel.groupby("series_id").cumcount(ascending=False)
    # the daily period only, so the scale window (48 differences, 72 values) is the longest reach of any feature
    model = LightGBMForecaster(freq="h", season_length=24, horizon=48, scaling="seasonal_diff",  # calendar fact
                               seasonal_periods=[24], **HYPER).fit(small_panel[rank >= 10].reset_index(drop=True))
    assert model.spec_.scale_window == 48 and model.spec_.history_needed == 48 + 24
    model.update(small_panel[rank < 10].reset_index(drop=True))
    x, level, scale, ids = model.forecast_rows(48)
    sid = ids[0]
    group = small_panel[small_panel["series_id"] == sid]
    values = group["value"].to_numpy(float)
    stamps = pd.DatetimeIndex(group["timestamp"]).append(model.future_index(sid, 48))
    expected = origin_rows(values, stamps, np.full(48, values.size - 1), np.arange(1, 49), model.spec_)
    np.testing.assert_allclose(x[:48], expected[0])
    np.testing.assert_allclose(scale[:48], expected[2])
    with pytest.raises(ForecasterError, match="scaling must be level or seasonal_diff"):
        LightGBMForecaster(freq="h", season_length=24, horizon=48, scaling="mase")  # calendar fact


def test_interval_boosters_take_their_own_tree_count_and_the_point_model_is_the_median(small_panel):
    """``quantile_n_estimators`` sizes only the interval bounds' boosters (the point booster keeps ``n_estimators``);
    the default point objective is l1, and a bad count is refused with the key named."""
    model = LightGBMForecaster(freq="h", season_length=24, horizon=24, n_estimators=20,  # calendar fact
                               quantile_n_estimators=5, n_jobs=1).fit(small_panel)
    assert model.objective == "l1"
    trees = {key: booster.num_trees() for key, booster in model.boosters_.items()}
    assert trees.pop("mean") == 20 and len(trees) == 4 and set(trees.values()) == {5}
    same = LightGBMForecaster(freq="h", season_length=24, horizon=24, n_estimators=20, n_jobs=1)  # calendar fact
    assert same.quantile_n_estimators == 20
    with pytest.raises(ForecasterError, match="quantile_n_estimators"):
        LightGBMForecaster(freq="h", season_length=24, horizon=24, quantile_n_estimators=0)  # calendar fact
