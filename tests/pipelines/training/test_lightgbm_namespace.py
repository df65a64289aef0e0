"""Slice run: feature_engineering's lightgbm_model_input feeding the lightgbm training namespace on real M4 series."""
from __future__ import annotations

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ts_kedro.pipelines.feature_engineering.pipeline import model_input_nodes
from ts_kedro.pipelines.training.pipeline import create_family_pipeline


class KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot release, so the test can read intermediate outputs afterwards."""

    def _release(self) -> None:
        pass


def test_lightgbm_trains_from_the_feature_engineering_rows(small_panel):
    from kedro.pipeline import Pipeline

    pipeline = Pipeline(model_input_nodes(["lightgbm"])) + create_family_pipeline("lightgbm")
    catalog = DataCatalog()
    catalog["primary_panel"] = small_panel
    catalog["params:panel"] = {"freq": "h", "horizon": 24, "levels": [80, 95]}  # calendar fact
    catalog["params:backtest"] = {"n_windows": 2, "step": None, "min_train": None, "calibrate_intervals": True}
    catalog["params:lightgbm.model"] = {"name": "lightgbm", "class": "lightgbm",
                                        "hyperparameters": {"n_estimators": 30, "n_jobs": 1}}
    catalog["future_covariates_horizon"] = pd.DataFrame(columns=["series_id", "timestamp"])  # none known in advance
    catalog["params:data_processing"] = {"source": {}}  # no covariate declared
    for name in pipeline.datasets():
        if name not in catalog:
            catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    rows = catalog.load("lightgbm_model_input")
    model = catalog.load("lightgbm.model")
    stats = catalog.load("lightgbm.model_stats")
    backtest = catalog.load("lightgbm.backtest_forecasts")
    assert model.rows_from_model_input_ and model.n_training_rows_ == len(rows)
    assert model.interval_calibration_  # calibrated on its own backtest
    assert {row["feature"] for row in stats["feature_importance"]} == set(model.feature_names_)
    # every backtest window learnt only from rows whose target precedes its cutoff (no leakage through the table)
    assert backtest["window"].nunique() == 2 and (backtest["served_by"] == "lightgbm").all()
    forecasts = catalog.load("lightgbm.forecasts")
    assert len(forecasts) == 24 * small_panel["series_id"].nunique() and pd.notna(forecasts["mean"]).all()
