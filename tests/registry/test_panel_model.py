"""Unit tests of SelectedPanelModel: routing by choice, the ensemble median, request validation, pickling."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import Forecaster
from ts_kedro.forecasters.seasonal_naive import SeasonalNaive
from ts_kedro.registry import InferenceInputError, PanelModelError, SelectedPanelModel


class LastValuePlusOffset(Forecaster):
    """Test family with a known forecast: last observed value + ``offset``, bounds at +-``width``*level/100.

    Lets the tests know exactly which family answered a series and what the ensemble median must be.
    """

    name = "last_value_plus_offset"

    @property
    def min_length(self) -> int:
        return 1

    def _fit(self, panel):
        self.last_ = panel.sort_values("timestamp").groupby("series_id")["value"].last().to_dict()

    def _predict(self, horizon, levels):
        offset, width = self.hyperparameters["offset"], self.hyperparameters["width"]
        frames = []
        for series_id in self.fitted_series_ids_:
            mean = np.full(horizon, self.last_[series_id] + offset)
            frame = pd.DataFrame({"series_id": series_id, "timestamp": self.future_index(series_id, horizon), "mean": mean})
            for level in levels:
                frame[f"lo-{level}"] = mean - width * level / 100
                frame[f"hi-{level}"] = mean + width * level / 100
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def families(small_panel):
    return {
        "low": LastValuePlusOffset(freq="h", offset=0.0, width=10.0).fit(small_panel),
        "mid": LastValuePlusOffset(freq="h", offset=5.0, width=1.0).fit(small_panel),
        "high": LastValuePlusOffset(freq="h", offset=100.0, width=4.0).fit(small_panel),
    }


@pytest.fixture(scope="module")
def panel_model(families, small_panel):
    first, second, third = sorted(small_panel["series_id"].unique())
    return SelectedPanelModel(
        families,
        choice={first: "low", second: "high", third: "ensemble"},
        ensemble_members=["low", "mid", "high"],
        levels=[80, 95],
        max_horizon=48,
        metadata={"selection_metric": "smape"},
    )


def test_each_series_is_answered_by_its_chosen_family(panel_model, small_panel):
    first, second, _ = panel_model.series_ids
    last = small_panel.sort_values("timestamp").groupby("series_id")["value"].last()

    forecast = panel_model.predict([second, first], horizon=6)

    assert forecast["series_id"].tolist() == [second] * 6 + [first] * 6  # request order kept
    by_series = forecast.set_index("series_id")
    assert np.allclose(by_series.loc[first, "mean"], last[first])  # "low": offset 0
    assert np.allclose(by_series.loc[second, "mean"], last[second] + 100.0)  # "high": offset 100
    assert set(by_series.loc[first, "model"]) == {"low"} and set(by_series.loc[second, "model"]) == {"high"}
    assert list(forecast.columns) == ["series_id", "timestamp", "mean", "lo-80", "hi-80", "lo-95", "hi-95", "model"]
    expected_times = pd.date_range(small_panel.loc[small_panel.series_id == first, "timestamp"].max(), periods=7, freq="h")[1:]
    assert list(by_series.loc[first, "timestamp"]) == list(expected_times)


def test_ensemble_is_the_median_of_members_mean_and_bounds(panel_model, families):
    third = panel_model.series_ids[2]
    forecast = panel_model.predict([third], horizon=4, levels=[80])

    members = [families[m].predict(4, [80]) for m in ("low", "mid", "high")]
    members = [m[m["series_id"] == third] for m in members]
    for column in ("mean", "lo-80", "hi-80"):
        expected = np.median(np.column_stack([m[column].to_numpy() for m in members]), axis=1)
        assert np.allclose(forecast[column].to_numpy(), expected), column
    # each bound is its own median (lo from "mid", hi from "low" here), and the order survives
    assert (forecast["lo-80"] <= forecast["mean"]).all() and (forecast["mean"] <= forecast["hi-80"]).all()
    assert set(forecast["model"]) == {"ensemble"} and "lo-95" not in forecast.columns


def test_default_request_covers_all_series_at_max_horizon_and_per_series_horizons(panel_model):
    everything = panel_model.predict()
    assert everything.groupby("series_id").size().to_dict() == {s: 48 for s in panel_model.series_ids}

    first, second, third = panel_model.series_ids
    mixed = panel_model.predict([first, third], horizon={first: 3, third: 48})
    assert mixed.groupby("series_id").size().to_dict() == {first: 3, third: 48}


@pytest.mark.parametrize(
    "make_request, message",
    [
        (lambda ids: {"series_ids": [ids[0], "NOT_A_SERIES"]}, "unknown series_id 'NOT_A_SERIES'"),
        (lambda ids: {"series_ids": ids[:1], "horizon": 0}, "horizon must be an integer from 1 to 48"),
        (lambda ids: {"series_ids": ids[:1], "horizon": 49}, "got 49 for series_id"),
        (lambda ids: {"series_ids": ids[:1], "horizon": 2.5}, "got 2.5 for series_id"),
        (lambda ids: {"series_ids": ids[:1], "levels": [90]}, "choose distinct levels among [80, 95]"),
        (lambda ids: {"series_ids": []}, "no series_id requested"),
    ],
)
def test_bad_requests_raise_inference_input_error_naming_the_fault(panel_model, make_request, message):
    with pytest.raises(InferenceInputError) as error:
        panel_model.predict(**make_request(panel_model.series_ids))
    assert message in str(error.value)


def test_duplicate_series_in_request_is_rejected(panel_model):
    first = panel_model.series_ids[0]
    with pytest.raises(InferenceInputError, match="more than once"):
        panel_model.predict([first, first], horizon=2)


def test_construction_rejects_inconsistent_selections(families, small_panel):
    first, second, _ = sorted(small_panel["series_id"].unique())
    with pytest.raises(PanelModelError, match=r"families \['lstm'\] that are not in family_models"):
        SelectedPanelModel(families, {first: "lstm"}, [], [80], 12)
    with pytest.raises(PanelModelError, match="ensemble_members is empty"):
        SelectedPanelModel(families, {first: "ensemble"}, [], [80], 12)
    with pytest.raises(PanelModelError, match="max_horizon must be a positive integer"):
        SelectedPanelModel(families, {first: "low"}, [], [80], 0)
    with pytest.raises(PanelModelError, match="not fitted"):
        SelectedPanelModel({"low": LastValuePlusOffset(freq="h", offset=0, width=1)}, {first: "low"}, [], [80], 12)
    only_first = LastValuePlusOffset(freq="h", offset=0, width=1).fit(small_panel[small_panel.series_id == first])
    with pytest.raises(PanelModelError, match=f"series '{second}' is routed to 'ensemble' but family 'narrow'"):
        SelectedPanelModel({"low": families["low"], "narrow": only_first}, {second: "ensemble"}, ["low", "narrow"], [80], 12)


def test_pickle_round_trip_with_a_real_family_keeps_forecasts(small_panel):
    naive = SeasonalNaive(freq="h", season_length=24).fit(small_panel)
    model = SelectedPanelModel({"seasonal_naive": naive}, {s: "seasonal_naive" for s in naive.series_ids_}, [], [80, 95], 48)
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(restored.predict(horizon=24), model.predict(horizon=24))
    direct = naive.predict(24, [80, 95])
    pd.testing.assert_frame_equal(model.predict(horizon=24).drop(columns="model"), direct, check_like=False)


def test_a_refit_keeps_each_family_s_anomaly_treatment(small_panel):
    """``anomalies: keep`` is set per model block on the fitted object, not as a hyperparameter: a Day-N refit (or a
    family refitted because it cannot update) builds the family with it, not with the class default ``impute``."""
    naive = SeasonalNaive(freq="h", season_length=24)
    naive.anomaly_treatment = "keep"
    naive.fit(small_panel)
    model = SelectedPanelModel({"seasonal_naive": naive}, {s: "seasonal_naive" for s in naive.series_ids_}, [], [80], 48)
    assert model.refit(small_panel).family_models["seasonal_naive"].anomaly_treatment == "keep"
    assert SeasonalNaive.anomaly_treatment == "impute"


def test_with_future_covariates_gives_the_new_plan_to_the_covariate_families_only(small_panel):
    """Day-N inference's step after ``update``: a family with ``supports_covariates`` forecasts from the new plan,
    one without it is shared untouched, and the loaded model keeps its old plan."""
    from tests.forecasters.plan_echo import PlanEcho

    plan = small_panel.assign(timestamp=small_panel["timestamp"] + pd.Timedelta(days=14))  # the next 336 hours
    panel = small_panel.assign(price=small_panel["value"])
    echo = PlanEcho(freq="h", known_covariates=["price"]).fit(panel).set_future_covariates(
        plan.rename(columns={"value": "price"}))
    naive = SeasonalNaive(freq="h", season_length=24).fit(panel)
    assert list(naive.ignored_covariates_) == ["price"]
    first, second, third = sorted(small_panel["series_id"].unique())
    model = SelectedPanelModel({"echo": echo, "naive": naive}, {first: "echo", second: "echo", third: "naive"},
                               [], [80], 48)
    new_plan = plan.assign(price=plan["value"] * 2)[["series_id", "timestamp", "price"]]
    replanned = model.with_future_covariates(new_plan)
    assert replanned.family_models["naive"] is naive and replanned.family_models["echo"] is not echo
    served = replanned.predict([first], horizon=48)
    expected = new_plan[new_plan["series_id"] == first]["price"].to_numpy()[:48]
    assert served["mean"].to_numpy() == pytest.approx(expected)
    assert model.predict([first], horizon=48)["mean"].to_numpy() == pytest.approx(expected / 2)


def test_ensemble_calibration_adjusts_the_ensemble_series_only_and_survives_derived_models(panel_model, families,
                                                                                          small_panel):
    """``ensemble_calibration`` (evaluation.conformal.ensemble_adjustments) moves the median's bounds by q times
    the width at each step; series served by one family keep that family's intervals; every model derived from
    this one (restricted_to, refit, with_future_covariates, a pickle round trip) keeps it; a pickle from before the attribute
    existed still predicts, uncalibrated."""
    first, second, third = panel_model.series_ids
    q = {80: [-0.1] * 48, 95: [0.5] * 48}
    calibrated = panel_model.derived(ensemble_calibration={"method": "test", "levels": q})
    plain, adjusted = panel_model.predict(horizon=3), calibrated.predict(horizon=3)
    mine = adjusted["series_id"] == third
    pd.testing.assert_frame_equal(plain[~mine], adjusted[~mine])
    before, after = plain[mine], adjusted[mine]
    for level, share in ((80, -0.1), (95, 0.5)):
        width = before[f"hi-{level}"] - before[f"lo-{level}"]
        np.testing.assert_allclose(after[f"lo-{level}"], before[f"lo-{level}"] - share * width)
        np.testing.assert_allclose(after[f"hi-{level}"], before[f"hi-{level}"] + share * width)
    np.testing.assert_allclose(after["mean"], before["mean"])
    assert (after["lo-80"] <= after["mean"]).all() and (after["mean"] <= after["hi-80"]).all()
    # a narrowing never crosses the median: the bound stops at the mean
    crossing = panel_model.derived(ensemble_calibration={"levels": {80: [-0.45] * 48}}).predict([third], horizon=3)
    np.testing.assert_allclose(crossing["lo-80"], crossing["mean"])

    derived = [calibrated.restricted_to([third]), calibrated.refit(small_panel),
               calibrated.with_future_covariates(small_panel.iloc[:0]), pickle.loads(pickle.dumps(calibrated))]
    for model in derived:
        assert model.ensemble_calibration == calibrated.ensemble_calibration
    pd.testing.assert_frame_equal(derived[0].predict([third], horizon=3).reset_index(drop=True),
                                  adjusted[mine].reset_index(drop=True))

    old = pickle.loads(pickle.dumps(panel_model))
    del old.__dict__["ensemble_calibration"]  # as pickled before this attribute existed
    pd.testing.assert_frame_equal(old.predict(horizon=3), plain)
    assert old.derived().ensemble_calibration is None
