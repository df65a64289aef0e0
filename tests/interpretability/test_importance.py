"""Feature importance of real fitted models on real M4 series (small fits so the file stays fast)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import build_forecaster
from ts_kedro.interpretability import (
    InterpretabilityError,
    arima_coefficients,
    feature_label,
    lightgbm_feature_importance,
    lstm_permutation_importance,
    prophet_component_shares,
)


def _fit(family, panel, **hyperparameters):
    model = build_forecaster({"class": family, "hyperparameters": hyperparameters}, freq="h", season_length=24)
    return model.fit(panel)


@pytest.fixture(scope="module")
def lstm_model_and_panel(request):
    panel = request.getfixturevalue("m4_sample_panel")
    panel = panel[panel["series_id"].isin(sorted(panel["series_id"].unique())[:8])]
    panel = panel.groupby("series_id", group_keys=False).tail(336).reset_index(drop=True)
    model = _fit("lstm", panel, horizon=24, input_size=72, hidden_size=16, max_epochs=8, patience=8,
                 max_windows_per_series=80, seed=3, device="cpu")
    return model, panel


def test_lstm_permutation_importance_ranks_the_input_groups(lstm_model_and_panel):
    model, panel = lstm_model_and_panel
    importance = lstm_permutation_importance(model, panel, n_repeats=5, seed=0)
    assert set(importance["group"]) == {"last_season", "earlier_seasons", "calendar"}
    assert (importance["n_windows"] == 8).all()
    # 72-hour lookback = 3 daily tokens: 24 last-season values, 48 earlier ones, 4 calendar inputs per token
    assert importance.set_index("group")["n_inputs"].to_dict() == {"last_season": 24, "earlier_seasons": 48,
                                                                   "calendar": 12}
    # the last season also sets the seasonal-naive baseline the network corrects: shuffling it must hurt most
    assert importance.iloc[0]["group"] == "last_season"
    assert importance.iloc[0]["importance"] > 0
    assert importance["importance"].to_numpy() == pytest.approx(
        importance["permuted_error"] - importance["baseline_error"])


def test_lstm_permutation_importance_is_reproducible_and_checks_its_inputs(lstm_model_and_panel):
    model, panel = lstm_model_and_panel
    first = lstm_permutation_importance(model, panel, n_repeats=3, seed=1)
    again = lstm_permutation_importance(model, panel, n_repeats=3, seed=1)
    assert first.equals(again)
    with pytest.raises(InterpretabilityError, match="at least 2 series"):
        lstm_permutation_importance(model, panel[panel["series_id"] == panel["series_id"].iloc[0]])
    with pytest.raises(InterpretabilityError, match="expected a fitted LSTMForecaster"):
        lstm_permutation_importance(object(), panel)


def test_arima_coefficients_carry_the_fitted_parameters_and_valid_p_values(small_panel):
    one_series = small_panel[small_panel["series_id"] == small_panel["series_id"].iloc[0]]
    model = _fit("arima", one_series, max_p=1, max_q=1, n_jobs=1)
    table = arima_coefficients(model, alpha=0.05)
    state = model.fitted_[one_series["series_id"].iloc[0]]
    assert table["coef"].to_numpy() == pytest.approx(state.params)
    assert table["term"].iloc[-1] == "sigma2"
    assert table["p_value"].between(0, 1).all()
    assert (table["significant"] == (table["p_value"] < 0.05)).all()
    assert table["order"].iloc[0] == str(state.order)
    with pytest.raises(InterpretabilityError, match="alpha must lie in"):
        arima_coefficients(model, alpha=1.5)


def test_prophet_component_shares_sum_to_one_per_series(m4_sample_panel):
    # 400 hours (> 2 weeks) so that Prophet fits the weekly seasonality too
    one_series = m4_sample_panel[m4_sample_panel["series_id"] == m4_sample_panel["series_id"].iloc[0]].tail(400)
    model = _fit("prophet", one_series, n_jobs=1, uncertainty_samples=20)
    shares = prophet_component_shares(model)
    assert set(shares["component"]) == {"trend", "daily", "weekly"}  # 16 days of hourly data: no yearly
    assert shares["share"].sum() == pytest.approx(1.0)
    assert (shares.loc[shares["component"] != "trend", "mode"] == "multiplicative").all()
    # hourly M4 series are dominated by the daily cycle
    assert shares.set_index("component")["share"].idxmax() == "daily"
    assert np.isfinite(shares["variance"]).all()


def test_lstm_importance_on_yearly_data_has_no_calendar_group(project_root):
    """M3 yearly (season 1): no calendar term varies from year to year, so no empty calendar group is reported."""
    panel = pd.read_csv(project_root / "tests" / "data" / "samples" / "m3_yearly.csv", parse_dates=["timestamp"],
                        dtype={"series_id": str})
    model = build_forecaster({"class": "lstm", "hyperparameters": {"horizon": 6, "hidden_size": 8, "max_epochs": 3,
                                                                    "seed": 1, "device": "cpu"}}, freq="YS")
    model.fit(panel)
    importance = lstm_permutation_importance(model, panel, n_repeats=2, seed=0)
    assert set(importance["group"]) <= {"last_season", "earlier_seasons"} and "last_season" in set(importance["group"])
    assert (importance["n_inputs"] > 0).all()


@pytest.fixture(scope="module")
def lightgbm_model(request):
    """Three real M4 Hourly series, 30 trees: fitted in about 3 s."""
    return _fit("lightgbm", request.getfixturevalue("small_panel"), horizon=24, n_estimators=30, n_jobs=1)


def test_lightgbm_importance_gives_gain_and_shap_per_feature_and_horizon_bucket(lightgbm_model):
    model = lightgbm_model
    own = model.feature_importance()  # what the training node stores in lightgbm.model_stats
    table = lightgbm_feature_importance(model, own, n_buckets=3)
    assert list(dict.fromkeys(table["horizon_bucket"])) == ["all", "1-8", "9-16", "17-24"]
    overall = table[table["horizon_bucket"] == "all"].set_index("feature")
    assert set(overall.index) == set(model.feature_names_) and len(table) == 4 * len(model.feature_names_)
    # the gain and, on these 72 forecast rows (below the model's own cap), the SHAP of the model's summary:
    # the table and model_stats.json tell the same story
    own = own.set_index("feature")
    assert overall["gain_share"].to_numpy() == pytest.approx(own.loc[overall.index, "gain"].to_numpy())
    assert overall["mean_abs_shap"].to_numpy() == pytest.approx(own.loc[overall.index, "mean_abs_shap"].to_numpy())
    assert overall["gain_share"].sum() == pytest.approx(1.0)
    # every bucket explains its own steps of every series: recomputed here from the booster on the forecast rows
    x, _, _, _ = model.forecast_rows(24)
    last_steps = x[x[:, model.feature_names_.index("horizon")] >= 17]
    expected = np.abs(model.boosters_["mean"].predict(last_steps, pred_contrib=True)[:, :-1]).mean(axis=0)
    bucket = table[table["horizon_bucket"] == "17-24"].set_index("feature").loc[model.feature_names_]
    assert bucket["mean_abs_shap"].to_numpy() == pytest.approx(expected)
    assert (bucket["n_rows"] == 3 * 8).all() and (bucket["n_series"] == 3).all() and bucket["gain_share"].isna().all()
    assert table.groupby("horizon_bucket")["shap_share"].sum().to_numpy() == pytest.approx(1.0)
    # hourly M4 series: the same hour one day before the target is what the forecasts rest on most
    assert overall["mean_abs_shap"].idxmax() == "seasonal_24"


def test_lightgbm_importance_samples_whole_series_above_max_rows_and_checks_its_inputs(lightgbm_model):
    gain = lightgbm_model.feature_importance()
    table = lightgbm_feature_importance(lightgbm_model, gain, n_buckets=1, max_rows=50, seed=3)
    assert set(table["horizon_bucket"]) == {"all"}
    assert (table["n_series"] == 2).all() and (table["n_rows"] == 2 * 24).all()  # 50 rows: two whole series
    pd.testing.assert_frame_equal(table, lightgbm_feature_importance(lightgbm_model, gain, 1, max_rows=50, seed=3))
    with pytest.raises(InterpretabilityError, match="n_buckets and max_rows must be >= 1"):
        lightgbm_feature_importance(lightgbm_model, gain, n_buckets=0)
    with pytest.raises(InterpretabilityError, match="expected a fitted LightGBMForecaster"):
        lightgbm_feature_importance(object(), gain)
    with pytest.raises(InterpretabilityError, match="different training runs"):  # stats of another fit
        lightgbm_feature_importance(lightgbm_model, gain[gain["feature"] != "lag_1"])


def test_feature_labels_read_as_words():
    assert [feature_label(name) for name in ("lag_1", "lag_168", "seasonal_24", "roll_std_168", "day_of_year_cos",
                                             "log_scale", "cov_price")] == [
        "lag 1 (value at origin)", "lag 168", "seasonal naive, period 24", "std of last 168 values",
        "day of year (cos)", "series scale (log)", "covariate price"]


def test_a_one_series_panel_gets_an_empty_lstm_importance_and_a_note_not_a_failed_run(lstm_model_and_panel):
    """A user's panel of one series (real M4 series here): nothing to permute across, so the reporting node
    returns the table's columns without rows and the plot states why, instead of stopping `kedro run`."""
    from matplotlib.figure import Figure

    from ts_kedro.interpretability import LSTM_IMPORTANCE_COLUMNS, TooFewWindowsError
    from ts_kedro.pipelines.reporting.nodes import lstm_importance, plot_lstm_importance

    model, panel = lstm_model_and_panel
    one = panel[panel["series_id"] == panel["series_id"].iloc[0]]
    with pytest.raises(TooFewWindowsError, match="needs at least 2 series"):
        lstm_permutation_importance(model, one, n_repeats=2)
    reporting = {"importance": {"lstm": {"n_repeats": 2, "seed": 0}}}
    table = lstm_importance(model, one, reporting)
    assert table.empty and list(table.columns) == LSTM_IMPORTANCE_COLUMNS
    figure = plot_lstm_importance(table)
    assert isinstance(figure, Figure)
    assert "fewer than two series" in " ".join(t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text")))
    # the table of a real panel keeps those columns
    assert set(lstm_importance(model, panel, reporting).columns) == set(LSTM_IMPORTANCE_COLUMNS)
