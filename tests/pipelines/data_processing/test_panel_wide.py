"""The panel-wide paths of data_processing (frequency facts, regular grid, imputation, anomaly scores) give
exactly what the series-by-series definitions give.

Panels: real M4 Hourly series from the shipped sample, and synthetic edge cases planted on top of them
(gaps, missing edges, a one-row series, times or days off the grid, a coarser series, a constant one, a spike), at
frequencies whose grids work differently (ticks, business days, anchored weeks, month/quarter/year starts,
multiples of calendar offsets, which go the per-series way).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_kedro.pipelines.data_processing.cleaning import (
    anomaly_scores,
    impute_column,
    interpolate_linear,
    reindex_series,
    trim_missing_edges,
)
from ts_kedro.pipelines.data_processing.frequency import infer_series_frequency, panel_frequencies
from ts_kedro.pipelines.data_processing.nodes import regularise_index

FREQS = ["h", "15min", "D", "B", "W-SUN", "MS", "QS", "YS", "2MS", "3D"]


def _edge_panel(freq: str, base_values: np.ndarray, times_of_day: bool = True) -> pd.DataFrame:
    """Synthetic faults planted on real M4 values: one series per case, ids not in time order of creation.

    ``times_of_day=False`` leaves out the series shifted by 7 minutes: on calendar frequencies that one sends
    the whole panel the per-series way, so without it the panel-wide path meets the other faults.
    """
    rng = np.random.default_rng(7)
    grid = pd.date_range("2001-01-01", periods=60, freq=freq)
    frames = []
    for case in range(10):
        if case == 4 and not times_of_day:
            continue
        stamps = grid
        values = base_values[case * 60: case * 60 + 60].astype(float).copy()
        values[rng.integers(0, 60, 4)] = np.nan
        if case == 1:
            keep = np.ones(60, dtype=bool)
            keep[[10, 11, 12, 30]] = False
            stamps, values = stamps[keep], values[keep]
        elif case == 2:
            values[:3] = np.nan
            values[-2:] = np.nan
        elif case == 3:
            stamps, values = stamps[:1], values[:1]
        elif case == 4:
            stamps = stamps + pd.Timedelta(minutes=7)
        elif case == 5:
            stamps, values = stamps[::2], values[::2]
        elif case == 6:
            values = np.full(60, 5.0)
        elif case == 7:
            values[20] = values[20] * 1e3
        elif case == 8:
            stamps = stamps + pd.Timedelta(days=3)  # midnight, but off a calendar grid (mid-month, Wednesday)
        frames.append(pd.DataFrame({"series_id": f"s{9 - case}", "timestamp": stamps, "value": values}))
    return pd.concat(frames).sort_values(["series_id", "timestamp"], ignore_index=True)


@pytest.fixture
def base_values(m4_sample_panel) -> np.ndarray:
    return m4_sample_panel["value"].to_numpy()[:600]


@pytest.mark.parametrize("times_of_day", [True, False])
@pytest.mark.parametrize("freq", FREQS)
def test_panel_frequencies_equal_series_by_series(freq, times_of_day, base_values):
    panel = _edge_panel(freq, base_values, times_of_day)
    expected = {sid: infer_series_frequency(pd.DatetimeIndex(group), freq)
                for sid, group in panel.groupby("series_id", sort=True)["timestamp"]}
    found = panel_frequencies(panel["series_id"], panel["timestamp"], freq)
    assert list(found) == list(expected)
    assert found == expected
    assert any(facts["fault"] for facts in found.values())  # the edge cases are there


def test_panel_frequencies_on_real_panel(m4_sample_panel):
    panel = m4_sample_panel[["series_id", "timestamp", "value"]]
    expected = {sid: infer_series_frequency(pd.DatetimeIndex(group), "h")
                for sid, group in panel.groupby("series_id", sort=True)["timestamp"]}
    assert panel_frequencies(panel["series_id"], panel["timestamp"], "h") == expected


@pytest.mark.parametrize("times_of_day", [True, False])
@pytest.mark.parametrize("freq", FREQS)
def test_regularise_index_equals_series_by_series(freq, times_of_day, base_values):
    panel = _edge_panel(freq, base_values, times_of_day)
    facts = panel_frequencies(panel["series_id"], panel["timestamp"], freq)
    observed = panel.groupby("series_id")["value"].transform("count") > 0  # screen_series quarantines the rest
    screened = panel[panel["series_id"].map(lambda sid: facts[sid]["fault"] is None) & observed]
    screened = screened.reset_index(drop=True)
    pieces = []
    for sid, series in screened.groupby("series_id", sort=True):
        regular = reindex_series(trim_missing_edges(series), freq)
        regular["series_id"] = sid
        pieces.append(regular)
    expected = pd.concat(pieces, ignore_index=True)[["series_id", "timestamp", "value"]]
    found = regularise_index(screened, {"freq": freq})
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    assert found["value"].isna().any()  # gaps became explicit rows


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # the reference median, as in cleaning.py
@pytest.mark.parametrize("freq", ["h", "MS"])
def test_imputation_and_anomaly_scores_equal_series_by_series(freq, base_values):
    panel = _edge_panel(freq, base_values)
    panel = regularise_index(panel[~panel["series_id"].isin(["s6", "s5", "s4"])].reset_index(drop=True),
                             {"freq": freq})
    ids, values = panel["series_id"], panel["value"]
    interpolated = values.groupby(ids, sort=False).transform(interpolate_linear)
    pd.testing.assert_series_equal(impute_column(values, ids, "linear", 12), interpolated, check_exact=True)
    season, window = 12, 13
    # The series-by-series definitions the panel-wide code replaced (rolling median trend, IQR per series):
    by_series = interpolated.groupby(ids, sort=False)
    trend = by_series.transform(lambda v: v.rolling(window, center=True, min_periods=1).median())
    spread = by_series.transform(lambda v: v.quantile(0.75) - v.quantile(0.25))
    detrended = interpolated - trend
    shifted = np.column_stack([detrended.groupby(ids, sort=False).shift(k * season).to_numpy()
                               for k in range(-3, 4)])
    seasonal = pd.Series(np.nanmedian(shifted, axis=1), index=interpolated.index)
    long_enough = by_series.transform("size") >= 2 * season
    residual = detrended - seasonal.where(long_enough, 0.0)
    centred = residual - residual.groupby(ids, sort=False).transform("median")
    mad = centred.abs().groupby(ids, sort=False).transform("median") / 0.6745
    scale = np.maximum(mad, 0.1 * spread)
    expected = (centred / scale.where(scale > 0)).fillna(0.0)
    scores = anomaly_scores(interpolated, ids, "seasonal_median", season)
    pd.testing.assert_series_equal(scores, expected, check_exact=True, check_names=False)
    assert (scores.abs() > 7).any()  # the planted spike
