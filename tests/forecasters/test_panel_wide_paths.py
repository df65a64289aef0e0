"""The panel-wide helpers of the forecasters give what the per-series code gave: one forecast frame from
per-series arrays, the continuation check of ``update`` on calendar and fixed frequencies, the cached future
index. Real samples: M3 monthly and NN5 daily (tests/data/samples)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ts_kedro.forecasters import ForecasterError, get_forecaster_class
from ts_kedro.forecasters._per_series import concat_forecasts, SeriesForecast, split_series
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, _continuation_suspects

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _sample(name: str) -> pd.DataFrame:
    panel = pd.read_csv(SAMPLES / f"{name}.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    return panel[[SERIES_ID, TIMESTAMP, VALUE]].dropna().sort_values([SERIES_ID, TIMESTAMP], ignore_index=True)


def _head_tail(panel: pd.DataFrame, new: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from_end = panel.groupby(SERIES_ID).cumcount(ascending=False)
    return panel[from_end >= new].reset_index(drop=True), panel[from_end < new].reset_index(drop=True)


@pytest.mark.parametrize("ids", [["a", "b", "c"], [3, 1, 2]])
def test_concat_forecasts_equals_per_series_frames(ids):
    rng = np.random.default_rng(0)
    parts, frames = [], []
    for k, sid in enumerate(ids):
        stamps = pd.date_range(f"2020-0{k + 1}-01", periods=k + 2, freq="MS")
        mean = rng.normal(size=len(stamps))
        bounds = {80: (mean - 1, mean + 1), 95: (mean - 2, mean + 2)}
        parts.append(SeriesForecast(sid, stamps, mean, bounds))
        columns = {SERIES_ID: sid, TIMESTAMP: stamps, "mean": mean}
        for level, (lo, hi) in bounds.items():
            columns[f"lo-{level}"], columns[f"hi-{level}"] = lo, hi
        frames.append(pd.DataFrame(columns))
    pd.testing.assert_frame_equal(concat_forecasts(parts), pd.concat(frames, ignore_index=True), check_exact=True)


def test_split_series_orders_by_id_and_time():
    panel = pd.DataFrame({SERIES_ID: ["b", "a", "b", "a"], TIMESTAMP: pd.to_datetime(["2020-02", "2020-02", "2020-01",
                                                                                        "2020-01"]),
                          VALUE: [4.0, 2.0, 3.0, 1.0]})
    split = split_series(panel)
    assert list(split) == ["a", "b"]
    np.testing.assert_array_equal(split["a"], [1.0, 2.0])
    np.testing.assert_array_equal(split["b"], [3.0, 4.0])


@pytest.mark.parametrize("sample, freq, season", [("m3_monthly", "MS", 12), ("nn5_daily", "D", 7)])
def test_update_continuation_checked_panel_wide(sample, freq, season):
    head, tail = _head_tail(_sample(sample), 3)
    model = get_forecaster_class("seasonal_naive")(freq=freq, season_length=season).fit(head)
    assert _continuation_suspects(tail, model.last_timestamp_, freq) == set()
    first = tail[SERIES_ID].iloc[0]
    gap = tail.drop(index=tail.index[tail[SERIES_ID] == first][1])  # the second new step of one series missing
    assert _continuation_suspects(gap, model.last_timestamp_, freq) == {first}
    with pytest.raises(ForecasterError, match=f"series {first!r} must continue"):
        model.update(gap)
    shifted = tail.assign(**{TIMESTAMP: tail[TIMESTAMP] + pd.Timedelta(days=1)})  # off a monthly grid; late daily
    with pytest.raises(ForecasterError, match="must continue"):
        model.update(shifted)
    model.update(tail)
    full = get_forecaster_class("seasonal_naive")(freq=freq, season_length=season).fit(pd.concat([head, tail]))
    forecast = model.predict(6, [80])
    assert (forecast.groupby(SERIES_ID)[TIMESTAMP].min() > tail.groupby(SERIES_ID)[TIMESTAMP].max()).all()
    pd.testing.assert_frame_equal(forecast[[SERIES_ID, TIMESTAMP, "mean"]],
                                  full.predict(6, [80])[[SERIES_ID, TIMESTAMP, "mean"]])


def test_continuation_without_a_panel_wide_grid_goes_series_by_series():
    stamps = pd.date_range("2020-01-01", periods=8, freq="2MS")  # a multiple of a calendar offset
    panel = pd.DataFrame({SERIES_ID: "s", TIMESTAMP: stamps, VALUE: np.arange(8.0)})
    head, tail = panel.iloc[:6], panel.iloc[6:].reset_index(drop=True)
    model = get_forecaster_class("seasonal_naive")(freq="2MS", season_length=1).fit(head)
    assert _continuation_suspects(tail, model.last_timestamp_, "2MS") is None
    with pytest.raises(ForecasterError, match="must continue"):
        model.update(tail.iloc[1:])
    model.update(tail)
    assert model.predict(1)[TIMESTAMP].iloc[0] == stamps[-1] + pd.DateOffset(months=2)
