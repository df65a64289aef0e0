"""Per-series frequency inference against the panel frequency, and the complete regular time index."""
from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Tick


def grid_positions(timestamps: pd.DatetimeIndex, offset: BaseOffset) -> np.ndarray | None:
    """Step number of each timestamp on the ``offset`` grid that starts at the first one; None if any is off it."""
    if isinstance(offset, Tick):
        step = pd.Timedelta(offset).value
        delta = timestamps.asi8 - timestamps.asi8[0]
        if (delta % step).any():
            return None
        return delta // step
    if not offset.is_on_offset(timestamps[0]):
        return None
    positions = pd.date_range(timestamps[0], timestamps[-1], freq=offset).get_indexer(timestamps)
    return None if (positions < 0).any() else positions


def infer_series_frequency(timestamps: pd.DatetimeIndex, expected: str) -> dict:
    """What frequency one series has and whether it fits the panel grid.

    A series fits when every timestamp lies on the ``expected`` grid and its most common step is one
    grid step (gaps are allowed: they become explicit missing values). Otherwise it is ``irregular``
    (timestamps off the grid) or ``different_frequency`` (e.g. daily rows in an hourly panel).
    """
    offset = to_offset(expected)
    inferred = pd.infer_freq(timestamps) if len(timestamps) >= 3 else None
    result = {"expected_freq": offset.freqstr, "inferred_freq": inferred, "fault": None, "details": None}
    if len(timestamps) < 2:
        result["inferred_freq"] = None
        return result
    positions = grid_positions(timestamps, offset)
    if positions is None:
        steps = pd.Series(np.diff(timestamps.asi8)).mode()
        modal = pd.Timedelta(int(steps.iloc[0]))
        result["inferred_freq"] = inferred or f"irregular (most common step {modal})"
        result["fault"] = "irregular_frequency"
        result["details"] = (f"timestamps are not all on the {offset.freqstr!r} grid starting at {timestamps[0]}; "
                             f"most common step is {modal}")
        return result
    modal_steps = int(pd.Series(np.diff(positions)).mode().iloc[0])
    if modal_steps != 1:
        result["inferred_freq"] = inferred or f"{modal_steps}{offset.freqstr}"
        result["fault"] = "different_frequency"
        result["details"] = (f"most common step is {modal_steps} x {offset.freqstr!r}: the series has a coarser "
                             f"frequency than panel.freq")
        return result
    result["inferred_freq"] = inferred or offset.freqstr
    return result


def regular_index(first: pd.Timestamp, last: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Every grid timestamp from ``first`` to ``last``."""
    return pd.date_range(first, last, freq=freq)
