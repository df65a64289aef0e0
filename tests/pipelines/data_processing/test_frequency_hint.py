"""A panel whose stamps are on another grid than panel.freq: the refusal names the grid the data is on.

The real M3 monthly sample, its stamps moved to the month ends (the layout many exports use), read with the
README's `panel.freq: MS`: every series was quarantined as irregular and the run stopped with "check panel.freq",
without saying what the data's frequency is.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ts_kedro.pipelines.data_processing.errors import SeriesQualityError
from ts_kedro.pipelines.data_processing.nodes import infer_frequency, screen_series, validate_schema

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "m3_monthly.csv"


def test_month_end_stamps_with_month_start_frequency_name_me(write_csv, params, panel):
    frame = pd.read_csv(SAMPLE, parse_dates=["timestamp"])
    frame["timestamp"] = frame["timestamp"] + pd.offsets.MonthEnd(0)
    source = write_csv(frame.to_csv(index=False), name="month_end.csv")
    panel |= {"freq": "MS", "horizon": 18}
    validated, _ = validate_schema(source, params, panel)
    frequency = infer_frequency(validated, panel)
    assert all("on a 'ME' grid" in facts["details"] for facts in frequency.values())
    with pytest.raises(SeriesQualityError, match=r"5 of 5 series have the frequency 'ME' \(panel.freq is 'MS'\): "
                                                 r"set panel.freq: ME"):
        screen_series(validated, frequency, panel, params)
    kept, _ = screen_series(validated, infer_frequency(validated, panel | {"freq": "ME"}), panel | {"freq": "ME"},
                            params)
    assert kept["series_id"].nunique() == 5
