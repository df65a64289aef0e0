"""Would a forecast-bias test see the replay's trend change? Reads a finished ``day_n_replay.py`` arm.

For each cycle, the forecasts live when its batch arrived (Day 0's ``forecasts``, then each cycle's newest
``champion_forecasts``) against the actuals of that batch (the arm's final ``history_primary_panel``, observed
points only). Per point ``z = (actual - mean) / s`` with ``s`` the 80 % interval's half-width over 1.2816 (the
conformal intervals' own scale); per series the mean z; over series a two-sided t-test of mean z = 0 (series taken
as independent, as monitoring's interval test does), and the share of points above the forecast.

    .venv/bin/python benchmarks/replay_bias.py <workdir>/day_n_replay_<tag>/product

Prints one line per cycle. Nothing in the product reads this; it measures a test before anyone ships it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy import stats

Z80 = 1.2816


def _versions(folder: Path) -> list[Path]:
    return sorted(p for version in sorted(folder.iterdir()) for p in version.iterdir())


def main(arm: str) -> None:
    data = Path(arm) / "data"
    history = pd.read_parquet(data / "03_primary" / "history_primary_panel.parquet")
    history = history[~history["is_imputed"]].assign(series_id=lambda f: f["series_id"].astype(str))
    day0 = pd.read_csv(_versions(data / "07_model_output" / "forecasts.csv")[0])
    saved = [day0] + [pd.read_parquet(p) for p in _versions(data / "07_model_output" / "champion_forecasts.parquet")]
    for cycle, forecasts in enumerate(saved, start=1):
        forecasts = forecasts.assign(series_id=forecasts["series_id"].astype(str),
                                     timestamp=pd.to_datetime(forecasts["timestamp"]))
        joined = forecasts.merge(history[["series_id", "timestamp", "value"]], on=["series_id", "timestamp"])
        if joined.empty:
            continue  # the last cycle's forecasts: no batch arrived after them
        z = (joined["value"] - joined["mean"]) / ((joined["hi-80"] - joined["lo-80"]) / (2 * Z80))
        per_series = z.groupby(joined["series_id"]).mean()
        test = stats.ttest_1samp(per_series, 0.0)
        above = (joined["value"] > joined["mean"]).groupby(joined["series_id"]).mean().mean()
        print(f"cycle {cycle:2d}: {len(per_series)} series, mean z {per_series.mean():+.3f} (sd {per_series.std():.3f}), "
              f"t {test.statistic:+.2f}, p {test.pvalue:.4f}, share above the forecast {above:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
