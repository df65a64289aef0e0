"""Calendar features chosen from the panel frequency and span; they depend only on the timestamp, so never leak."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

logger = logging.getLogger(__name__)

ENCODINGS = ("cyclic", "ordinal", "both")
_DAY = pd.Timedelta(days=1)
_YEAR = pd.Timedelta(days=365.25)


class CalendarFeatureError(ValueError):
    """A calendar parameter cannot be honoured (unknown feature, encoding or holiday country)."""


@dataclass(frozen=True)
class CalendarFeature:
    """One calendar feature: its 0-based value, its cycle length in values, and its cycle length in time."""

    extract: Callable[[pd.DatetimeIndex], np.ndarray]
    period: Callable[[pd.DatetimeIndex], np.ndarray | float]
    cycle: pd.Timedelta


CALENDAR_FEATURES: dict[str, CalendarFeature] = {
    "minute": CalendarFeature(lambda t: t.minute.to_numpy(), lambda t: 60.0, pd.Timedelta(hours=1)),
    "hour": CalendarFeature(lambda t: t.hour.to_numpy(), lambda t: 24.0, _DAY),  # calendar fact
    "weekday": CalendarFeature(lambda t: t.dayofweek.to_numpy(), lambda t: 7.0, 7 * _DAY),
    # Month lengths differ, so the angle of day_of_month/day_of_year uses the length of that very month/year.
    "day_of_month": CalendarFeature(
        lambda t: t.day.to_numpy() - 1, lambda t: t.days_in_month.to_numpy().astype(float), pd.Timedelta(days=30.44)
    ),
    "week_of_year": CalendarFeature(
        lambda t: t.isocalendar().week.to_numpy().astype(int) - 1, lambda t: 52.1775, _YEAR
    ),
    "month": CalendarFeature(lambda t: t.month.to_numpy() - 1, lambda t: 12.0, _YEAR),
    "quarter": CalendarFeature(lambda t: t.quarter.to_numpy() - 1, lambda t: 4.0, _YEAR),
    "day_of_year": CalendarFeature(
        lambda t: t.dayofyear.to_numpy() - 1, lambda t: np.where(t.is_leap_year, 366.0, 365.0), _YEAR
    ),
}

# Candidate features per sampling step: only features that vary from one step to the next.
_CANDIDATES_BY_STEP: list[tuple[pd.Timedelta, list[str]]] = [
    (pd.Timedelta(hours=1), ["minute", "hour", "weekday", "month", "day_of_year"]),  # sub-hourly
    (_DAY, ["hour", "weekday", "month", "day_of_year"]),  # hourly (1h .. <1 day)
    (7 * _DAY, ["weekday", "day_of_month", "month", "day_of_year"]),  # daily, business daily
    (pd.Timedelta(days=28), ["week_of_year", "month"]),  # weekly
    (pd.Timedelta(days=89), ["month"]),  # monthly
    (pd.Timedelta(days=365), ["quarter"]),  # quarterly
]


def step_length(freq: str) -> pd.Timedelta:
    """Nominal duration of one step of ``freq`` (31 days for 'MS', 1 hour for 'h')."""
    offset = to_offset(freq)
    anchor = pd.Timestamp("2001-01-01") + offset  # on the offset, so that one more step is a full step
    return (anchor + offset) - anchor


def candidate_features(freq: str) -> list[str]:
    """Calendar features that vary between consecutive steps of ``freq``, finest first."""
    step = step_length(freq)
    for upper, names in _CANDIDATES_BY_STEP:
        if step < upper:
            return list(names)
    return []  # yearly or coarser: no calendar feature varies within the data's resolution


#: spans longer than this compare the same against every calendar cycle (a year at most, times min_cycles)
MAX_SPAN = pd.Timedelta(days=365.25 * 200)


def capped_span(first: pd.Series, last: pd.Series) -> pd.Timedelta:
    """The longest ``last - first`` over series, at most ``MAX_SPAN``. Computed in float seconds: a Timedelta
    holds at most 292 years, and subtracting timestamps of a longer series (yearly sunspots since 1700)
    overflowed it."""
    known = first.notna() & last.notna()
    if not known.any():
        return pd.Timedelta(0)
    nanoseconds = (last[known].astype("int64").astype(float) - first[known].astype("int64").astype(float)).max()
    return pd.Timedelta(seconds=min(max(nanoseconds, 0.0) / 1e9, MAX_SPAN.total_seconds()))


def select_features(freq: str, span: pd.Timedelta, min_cycles: float) -> list[str]:
    """Candidate features whose full cycle is covered at least ``min_cycles`` times by ``span``.

    A month-of-year feature on 40 days of hourly data takes one or two values: a model cannot learn a
    yearly pattern from it, it can only memorise the level of those weeks, so it is left out.
    """
    chosen = [name for name in candidate_features(freq) if span >= min_cycles * CALENDAR_FEATURES[name].cycle]
    dropped = sorted(set(candidate_features(freq)) - set(chosen))
    if dropped:
        logger.info(
            "calendar features %s left out: the longest series spans %s, less than %s of their cycles",
            dropped, span, min_cycles,
        )
    return chosen


def calendar_frame(
    timestamps: pd.Series,
    features: Sequence[str],
    encoding: str = "cyclic",
    holidays_country: str | None = None,
    holidays_subdiv: str | None = None,
) -> pd.DataFrame:
    """Calendar feature columns for any timestamps (history or future), index aligned with ``timestamps``.

    Args:
        timestamps: datetime64 values.
        features: names from ``CALENDAR_FEATURES``.
        encoding: ``cyclic`` (``<f>_sin``, ``<f>_cos``), ``ordinal`` (``<f>`` as 0-based int) or ``both``.
        holidays_country: ISO country code for an ``is_holiday`` 0/1 column (``holidays`` package), or None.
        holidays_subdiv: optional subdivision (state/province) of that country.

    Returns:
        One column per encoded feature, float64 (ordinals int64).
    """
    unknown = [name for name in features if name not in CALENDAR_FEATURES]
    if unknown:
        raise CalendarFeatureError(
            f"feature_engineering.calendar.features: unknown calendar feature(s) {unknown}; "
            f"choose from {sorted(CALENDAR_FEATURES)}"
        )
    if encoding not in ENCODINGS:
        raise CalendarFeatureError(
            f"feature_engineering.calendar.encoding is {encoding!r}; choose one of {list(ENCODINGS)}"
        )
    index = pd.DatetimeIndex(timestamps)
    columns: dict[str, np.ndarray] = {}
    for name in features:
        spec = CALENDAR_FEATURES[name]
        value = spec.extract(index)
        if encoding in ("ordinal", "both"):
            columns[name] = value.astype("int64")
        if encoding in ("cyclic", "both"):
            angle = 2.0 * np.pi * value / spec.period(index)
            columns[f"{name}_sin"] = np.sin(angle)
            columns[f"{name}_cos"] = np.cos(angle)
    if holidays_country:
        columns["is_holiday"] = _holiday_flags(index, holidays_country, holidays_subdiv)
    return pd.DataFrame(columns, index=timestamps.index)


def _holiday_flags(index: pd.DatetimeIndex, country: str, subdiv: str | None) -> np.ndarray:
    """1.0 where the calendar date is a public holiday of ``country``, else 0.0."""
    import holidays  # optional feature: imported only when a country is configured

    years = range(int(index.year.min()), int(index.year.max()) + 1)
    try:
        calendar = holidays.country_holidays(country, subdiv=subdiv, years=years)
    except NotImplementedError as error:
        raise CalendarFeatureError(
            f"feature_engineering.calendar.holidays_country={country!r} (subdiv={subdiv!r}) is not known to the "
            f"'holidays' package: {error}. Use an ISO 3166 code such as 'US', 'GB', 'DE', or null to turn it off"
        ) from error
    holiday_dates = pd.DatetimeIndex(sorted(calendar.keys()))
    return index.normalize().isin(holiday_dates).astype(float)
