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


def on_grid(timestamps: pd.DatetimeIndex, anchor: pd.Timestamp, offset: BaseOffset) -> np.ndarray:
    """Whether each timestamp lies on the ``offset`` grid through ``anchor`` (e.g. a series' first timestamp)."""
    if isinstance(offset, Tick):
        step = pd.Timedelta(offset).value
        return ((timestamps.asi8 - pd.Timestamp(anchor).value) % step) == 0
    return np.array([offset.is_on_offset(ts) for ts in timestamps], dtype=bool)


# A series whose longest gap is more than this many times the span of the rest of it is quarantined as
# "gap_beyond_span" (data_processing.max_gap_span_factor): one timestamp typed 10 years late turned a
# 450-row series into 88,098 imputed grid rows.
DEFAULT_MAX_GAP_SPAN_FACTOR = 2.0


def gap_beyond_span(frequency: dict, factor: float | None) -> str | None:
    """Why a series' longest gap is too long to impute (see ``DEFAULT_MAX_GAP_SPAN_FACTOR``), or None.

    The gap's missing steps are compared with ``factor`` x the grid points the rest of the series covers;
    ``factor`` None switches the check off.
    """
    longest, span = frequency.get("longest_gap_steps"), frequency.get("span_steps")
    if factor is None or longest is None or span is None:
        return None
    missing, rest = longest - 1, span - longest + 1
    if missing <= float(factor) * rest:
        return None
    at = frequency.get("longest_gap_after")
    return (f"a gap of {missing} missing step(s){f' after {at}' if at else ''} is more than "
            f"{float(factor):g} x the {rest} grid point(s) the rest of the series covers "
            f"(data_processing.max_gap_span_factor): a mistyped timestamp? Imputing it would invent "
            f"{missing} rows; fix the timestamp or raise the factor")


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
    # The gap facts gap_beyond_span reads: steps of the longest gap, and of the whole series.
    diffs = np.diff(positions)
    longest = int(np.argmax(diffs))
    result |= {"longest_gap_steps": int(diffs[longest]), "span_steps": int(positions[-1] - positions[0]),
               "longest_gap_after": str(timestamps[longest])}
    return result


def regular_index(first: pd.Timestamp, last: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Every grid timestamp from ``first`` to ``last``."""
    return pd.date_range(first, last, freq=freq)
