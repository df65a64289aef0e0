"""Fast checks of benchmarks/m4_benchmark.py on a few real M4 Hourly series (no slow family is fitted)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from ts_kedro.evaluation import metrics
from ts_kedro.forecasters.base import Forecaster


class DriftForecaster(Forecaster):
    """Test double: random-walk-with-drift point forecast and ±2·sd bands, a second family for ensembles."""

    name = "drift"

    def _fit(self, panel):
        grouped = panel.sort_values(["series_id", "timestamp"]).groupby("series_id")["value"]
        self.last_ = grouped.last()
        self.drift_ = grouped.apply(lambda v: (v.iloc[-1] - v.iloc[0]) / (len(v) - 1))
        self.sd_ = grouped.apply(lambda v: float(np.std(np.diff(v.to_numpy()))))

    def _predict(self, horizon, levels):
        steps = np.arange(1, horizon + 1)
        frames = []
        for sid in self.series_ids_:
            mean = self.last_[sid] + self.drift_[sid] * steps
            frame = pd.DataFrame({"series_id": sid, "timestamp": self.future_index(sid, horizon), "mean": mean})
            for level in levels:
                frame[f"lo-{level}"] = mean - 2 * self.sd_[sid] * np.sqrt(steps)
                frame[f"hi-{level}"] = mean + 2 * self.sd_[sid] * np.sqrt(steps)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def benchmark(project_root):
    spec = importlib.util.spec_from_file_location("m4_benchmark", project_root / "benchmarks" / "m4_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_match_metrics_and_files_are_written(benchmark, shared_data, tmp_path):
    folder = shared_data / "m4_hourly"
    result = benchmark.main([
        "--n-series", "5", "--families", f"seasonal_naive,{__name__}.DriftForecaster,not_a_family",
        "--output-dir", str(tmp_path), "--params", "",
        "--train", str(folder / "Hourly-train.csv"), "--test", str(folder / "Hourly-test.csv"),
        "--starts", str(folder / "Hourly-start-timestamps.csv"),
    ])
    assert result["series_ids"] == ["H1", "H104", "H207", "H311", "H414"]  # evenly spaced, numeric order
    train = pd.read_csv(folder / "Hourly-train.csv", index_col=0)
    test = pd.read_csv(folder / "Hourly-test.csv", index_col=0)
    series = [(train.loc[s].dropna().to_numpy(), test.loc[s].to_numpy()) for s in result["series_ids"]]
    naive2_smape = np.mean([metrics.smape(y, metrics.naive2(x, 48, 24)) for x, y in series])
    snaive_mase = np.mean([metrics.mase(y, metrics.seasonal_naive_forecast(x, 48, 24), x, 24) for x, y in series])
    models = result["models"]
    assert models["Naive2 (M4 benchmark)"]["smape"] == pytest.approx(naive2_smape)
    assert models["seasonal_naive"]["mase"] == pytest.approx(snaive_mase)
    assert {"ensemble (median)", "per-series selection", f"{__name__}.DriftForecaster"} <= set(models)
    assert "not_a_family" in result["skipped"]
    assert sum(result["selection_counts"].values()) == 5
    assert 0 <= models["ensemble (median)"]["coverage"] <= 1
    written = sorted(p.suffix for p in tmp_path.iterdir())
    assert written == [".json", ".md"]
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["models"]["seasonal_naive"]["owa"] == pytest.approx(models["seasonal_naive"]["owa"])


def test_long_input_holds_out_last_horizon(benchmark, shared_data, tmp_path):
    folder = shared_data / "m4_hourly"
    train = pd.read_csv(folder / "Hourly-train-long.csv")
    few = train[train["series_id"].isin(["H1", "H2"])]
    few.to_csv(tmp_path / "panel.csv", index=False)
    result = benchmark.main(["--long", str(tmp_path / "panel.csv"), "--horizon", "24", "--families", "seasonal_naive",
                             "--params", "", "--output-dir", str(tmp_path / "out")])
    values = few[few["series_id"] == "H1"]["value"].to_numpy(float)
    x, y = values[:-24], values[-24:]
    assert result["n_series"] == 2 and result["horizon"] == 24
    per_h1 = metrics.smape(y, metrics.seasonal_naive_forecast(x, 24, 24))
    values2 = few[few["series_id"] == "H2"]["value"].to_numpy(float)
    per_h2 = metrics.smape(values2[-24:], metrics.seasonal_naive_forecast(values2[:-24], 24, 24))
    assert result["models"]["seasonal_naive"]["smape"] == pytest.approx((per_h1 + per_h2) / 2)


def test_wrong_horizon_is_reported(benchmark, shared_data, tmp_path):
    folder = shared_data / "m4_hourly"
    with pytest.raises(benchmark.BenchmarkInputError, match="48 test points, expected --horizon 24"):
        benchmark.main(["--horizon", "24", "--families", "seasonal_naive", "--n-series", "2",
                        "--output-dir", str(tmp_path), "--train", str(folder / "Hourly-train-long.csv"),
                        "--test", str(folder / "Hourly-test-long.csv")])
