"""A constant series (a part that never sold: all zeros) is kept and forecast: the families pass it down their
fallback chain to seasonal naive, which forecasts the constant. Real car-parts series beside it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import build_forecaster

FAMILIES = ["arima", "ets", "theta", "intermittent", "prophet"]


@pytest.fixture(scope="module")
def panel(project_root) -> pd.DataFrame:
    real = pd.read_csv(project_root / "tests" / "data" / "samples" / "carparts_monthly.csv", parse_dates=["timestamp"],
                       dtype={"series_id": str})
    real = real[real["series_id"].isin(sorted(real["series_id"].unique())[:2])]
    stamps = real.loc[real["series_id"] == real["series_id"].iloc[0], "timestamp"]
    flat = pd.DataFrame({"series_id": "never_sold", "timestamp": stamps.to_numpy(), "value": 0.0})  # synthetic
    return pd.concat([real, flat], ignore_index=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_constant_series_is_forecast_by_the_fallback_chain(family, panel):
    model = build_forecaster({"class": family, "hyperparameters": {"n_jobs": 1}}, freq="MS", horizon=12)
    model.fit(panel)
    if model.fallback is None:  # intermittent: a series of zeros is its own case (forecast 0), no fallback
        assert model.served_by_["never_sold"] == family
    else:
        assert model.served_by_["never_sold"] == "seasonal_naive"
        assert "constant series" in model.fallback_reasons_["never_sold"]
        assert set(model.fitted_series_ids_) == set(panel["series_id"]) - {"never_sold"}
    forecast = model.predict(12, [80, 95])
    flat = forecast[forecast["series_id"] == "never_sold"]
    assert len(flat) == 12 and np.allclose(flat[["mean", "lo-95", "hi-95"]].to_numpy(), 0.0)
    assert forecast["mean"].notna().all()
