"""A small real Stallion sample (../shared/data/stallion_covariates) for the covariate tests."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE


def stallion_sample(shared_data: Path, covariates: list[str], n_series: int = 3) -> pd.DataFrame:
    """The first ``n_series`` (agency/sku) series with positive volumes (2013-01 .. 2017-12), long format with
    ``covariates`` as float columns, sorted by series and time."""
    raw = pd.read_parquet(shared_data / "stallion_covariates" / "stallion.parquet")
    raw = raw.assign(**{SERIES_ID: raw["agency"].astype(str) + "/" + raw["sku"].astype(str),
                        TIMESTAMP: pd.to_datetime(raw["date"]).astype("datetime64[ns]"),
                        VALUE: raw["volume"].astype(float)})
    positive = raw.groupby(SERIES_ID, observed=True)[VALUE].min()
    keep = sorted(positive[positive > 0].index)[:n_series]
    panel = raw[raw[SERIES_ID].isin(keep)][[SERIES_ID, TIMESTAMP, VALUE, *covariates]]
    panel = panel.astype({SERIES_ID: str, **{c: float for c in covariates}})
    return panel.sort_values([SERIES_ID, TIMESTAMP]).reset_index(drop=True)
