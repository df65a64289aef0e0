"""Covariates in the data contract: known_in_advance vs observed, and the future values a known one needs (Stallion)."""
from __future__ import annotations

import pandas as pd
import pytest

from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError
from ts_kedro.pipelines.data_processing.schema import SourceSpec, check_future_covariates


@pytest.fixture(scope="module")
def stallion(shared_data) -> pd.DataFrame:
    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    return raw.assign(series_id=raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                      timestamp=pd.to_datetime(raw["date"]))


def test_covariate_kinds_are_declared_per_column_and_a_wrong_kind_is_named():
    spec = SourceSpec.from_params({"timestamp_column": "date", "target_column": "volume",
                                   "covariates": {"price_actual": "known_in_advance", "avg_max_temp": "observed"}})
    assert spec.covariates == ["price_actual", "avg_max_temp"] and spec.known_in_advance() == ["price_actual"]
    assert SourceSpec.from_params({"covariates": ["avg_max_temp"]}).known_in_advance() == []
    with pytest.raises(DataProcessingConfigError, match="covariates.avg_max_temp: kind 'forecast'"):
        SourceSpec.from_params({"covariates": {"avg_max_temp": "forecast"}})


def test_missing_future_values_name_covariate_series_and_first_missing_timestamp(stallion):
    history = stallion[stallion["timestamp"] < "2017-07-01"]
    future = stallion[stallion["timestamp"] >= "2017-07-01"][["series_id", "timestamp", "price_actual"]]
    last = history.groupby("series_id")["timestamp"].max()
    rows = check_future_covariates(future, ["price_actual"], last, horizon=6, freq="MS")
    assert len(rows) == 6 * stallion["series_id"].nunique() and rows["price_actual"].notna().all()
    sid = last.index[3]
    gap = future.drop(index=future.index[(future["series_id"] == sid) & (future["timestamp"] >= "2017-10-01")])
    with pytest.raises(SchemaError, match=rf"'price_actual' of series '{sid}' is missing from 2017-10-01"):
        check_future_covariates(gap, ["price_actual"], last, horizon=6, freq="MS")
    with pytest.raises(SchemaError, match=r"column\(s\) \['discount_in_percent'\] missing"):
        check_future_covariates(future, ["price_actual", "discount_in_percent"], last, horizon=6, freq="MS")
    with pytest.raises(SchemaError, match="future_covariates: missing"):
        check_future_covariates(None, ["price_actual"], last, horizon=6, freq="MS")
