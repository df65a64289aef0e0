"""The frequency profile: every frequency-dependent default, derived from ``panel.freq`` and the series lengths.

This is the one module allowed to name a seasonal period, a backtest step, a lookback or a monitoring window.
Everything else asks it. Configuration values win; ``null`` (``None``) means "derive".

How the periods are derived (the rule statsforecast and GluonTS follow): the natural calendar cycles (day,
week, year) expressed in steps of the grid, keeping those longer than one step. A fixed-duration grid
(minutes, hours, days) divides the cycle's duration by the step; calendar grids (business days, weeks,
months, quarters, years) use the number of their steps in a week or a year:

=================  ==================  =============================
grid               season_length       seasonal_periods (candidates)
=================  ==================  =============================
``15min``          96                  96, 672, 35064
``h``              24                  24, 168, 8766
``D``              7                   7, 365.25
``B``              5                   5, 260.89
``W-SUN``          52                  52.18
``MS`` / ``ME``    12                  12
``QS`` / ``QE``    4                   4
``YS`` / ``YE``    1                   (none)
=================  ==================  =============================

A period is kept only when the longest series covers it at least ``min_cycles`` (2) times: an hourly panel of
40 days models 24 and 168, not the year. ``season_length`` is the shortest kept period, rounded (the MASE
scale, seasonal naive, the seasonal difference); 1 when none is kept.

Length-dependent defaults (``derive_profile`` with the observed lengths):

- backtest: ``step`` = the horizon; up to ``n_windows`` origins per series, as many as its length allows
  (``evaluation.backtest.series_windows``), at least one for every series with ``min_train + horizon`` points.
  ``n_windows`` is 2, more where the horizon is short: the origins span at least one season (with a one-step
  horizon on hourly data, two origins would both be the last hours of a day, and selection and calibration
  would never see the other 22 phases of the cycle), and every series scores at least ``1 / (1 - L)`` steps
  at the lowest interval level L (80 %: 5), the fewest for which its errors have an L quantile at all; at most
  what a typical series affords after ``min_train``. The family is fitted at most twice (``refit_every`` =
  ``n_windows / 2``, rounded up) and its fitted state carried to the origins between by ``Forecaster.update``,
  as Day N serves it (statsforecast's ``cross_validation(refit=...)``).
- LSTM lookback: two of the longest kept period whose two cycles fit in a typical series (the median length
  less the validation and backtest spans), at least one season and at least two horizons, in whole seasons.
- monitoring: the recent window is one horizon; the reference window is two horizons, at least one season (or
  all a typical series has before its recent window, when that is less). The drift feature is the seasonal
  difference at ``seasonal_lag_steps``: the smallest multiple of a kept period that reaches back past the recent
  window (every recent value is compared with a value from before it), using the longest kept period, rounded
  down to whole multiples of the shorter ones (daily: 364 = 52 weeks, not 365), for which a typical series still
  affords ``min_windows`` calibration windows (``calibration_stride_steps`` = half a recent window apart) of
  the same geometry before its recent window; otherwise the shortest. Without a kept period the lag is the
  recent window itself (the change over one horizon).
- ingestion: a Day-N batch may leave at most a quarter of a horizon of missing steps after the history's end
  (``max_gap_steps``; imputation bridges them, a longer hole is a quarantined batch).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries import offsets as pd_offsets
from pandas.tseries.frequencies import to_offset

_DAY_S, _WEEK_S, _YEAR_S = 86_400.0, 7 * 86_400.0, 365.25 * 86_400.0
MIN_CYCLES = 2  # a period must be seen twice in the longest series to be modelled
MIN_SERIES_LENGTH = 2  # below this no model can forecast at all: quarantined in data_processing
DEFAULT_N_WINDOWS = 2
MIN_REFERENCE_STEPS = 2  # the fewest reference steps a drift test can compare (build_drift_windows refuses fewer)
MIN_CALIBRATION_WINDOWS = 5  # default of monitoring.data_drift.calibration.min_windows (a count, not a period)


class FrequencyError(ValueError):
    """``panel.freq`` or a profile override cannot be interpreted; the message names the parameter."""


@dataclass(frozen=True)
class FrequencyProfile:
    """Frequency-dependent settings of one panel (see the module docstring for every rule)."""

    freq: str
    horizon: int
    levels: list[int]
    season_length: int
    seasonal_periods: list[float]
    candidate_periods: list[float]
    backtest: dict[str, int]
    lstm_input_size: int
    validation_horizon: int
    monitoring: dict[str, int]
    prophet_seasonalities: dict[str, bool]
    steps_per_day: float | None
    max_gap_steps: int
    lengths: dict[str, float] = field(default_factory=dict)

    def as_panel_params(self) -> dict[str, Any]:
        """The profile as a ``params:panel``-shaped dict (nodes written against params:panel accept it)."""
        return asdict(self)

    @property
    def integer_periods(self) -> list[int]:
        """Kept periods rounded to whole steps (lags, rolling windows, Fourier terms that need integers)."""
        return sorted({whole_season(p) for p in self.seasonal_periods if whole_season(p) >= 2})

    def forecaster_defaults(self) -> dict[str, Any]:
        """Values for forecaster constructor arguments of these names when the configuration leaves them null."""
        return {
            "seasonal_periods": list(self.seasonal_periods),
            "validation_horizon": self.validation_horizon,
            "input_size": self.lstm_input_size,
            "horizon": self.horizon,
            "seasonalities": dict(self.prophet_seasonalities),
        }


def normalise_freq(freq: str) -> pd.DateOffset:
    """The pandas offset of ``panel.freq``; a clear error otherwise."""
    try:
        return to_offset(freq)
    except (ValueError, TypeError) as exc:
        raise FrequencyError(
            f"panel.freq={freq!r} is not a pandas offset alias (e.g. 15min, h, D, B, W-SUN, MS, QS, YS): {exc}"
        ) from exc


def _steps_per(offset: pd.DateOffset) -> dict[str, float | None]:
    """How many steps of ``offset`` make a day, a week and a year (None where a step is longer than that)."""
    n = max(int(getattr(offset, "n", 1) or 1), 1)
    if isinstance(offset, pd_offsets.Tick):  # fixed duration: s, min, h, D (ns, not total_seconds: 0 for 1ns)
        seconds = pd.Timedelta(offset).value / 1e9
        return {"day": _DAY_S / seconds, "week": _WEEK_S / seconds, "year": _YEAR_S / seconds}
    if isinstance(offset, (pd_offsets.BusinessHour, pd_offsets.CustomBusinessHour)):
        # opening hours only (09:00-17:00 by default: 8 steps a day, 40 a week), not 24 hours a day
        hours = _open_hours(offset)
        return {"day": hours / n, "week": 5.0 * hours / n, "year": 365.25 * 5 / 7 * hours / n}
    if isinstance(offset, (pd_offsets.BusinessDay, pd_offsets.CustomBusinessDay)):
        return {"day": 1.0 / n, "week": 5.0 / n, "year": 365.25 * 5 / 7 / n}
    if isinstance(offset, pd_offsets.Week):
        return {"day": None, "week": 1.0 / n, "year": 365.25 / 7 / n}
    if isinstance(offset, (pd_offsets.MonthBegin, pd_offsets.MonthEnd, pd_offsets.BusinessMonthBegin,
                           pd_offsets.BusinessMonthEnd, pd_offsets.SemiMonthBegin, pd_offsets.SemiMonthEnd,
                           pd_offsets.CustomBusinessMonthBegin, pd_offsets.CustomBusinessMonthEnd)):
        per_month = 2.0 if isinstance(offset, (pd_offsets.SemiMonthBegin, pd_offsets.SemiMonthEnd)) else 1.0
        return {"day": None, "week": None, "year": 12.0 * per_month / n}
    if isinstance(offset, (pd_offsets.QuarterBegin, pd_offsets.QuarterEnd, pd_offsets.BQuarterBegin,
                           pd_offsets.BQuarterEnd)):
        return {"day": None, "week": None, "year": 4.0 / n}
    if isinstance(offset, (pd_offsets.YearBegin, pd_offsets.YearEnd, pd_offsets.BYearBegin, pd_offsets.BYearEnd)):
        return {"day": None, "week": None, "year": 1.0 / n}
    # anything else: measure one step from a fixed anchor
    anchor = pd.Timestamp("2001-01-01")
    seconds = ((anchor + offset) - anchor).total_seconds()
    return {"day": _DAY_S / seconds, "week": _WEEK_S / seconds, "year": _YEAR_S / seconds}


def _open_hours(offset: pd.DateOffset) -> float:
    """Hours a business-hour grid is open a day: the sum of its ``start``-``end`` spans (an overnight span such as
    22:00-06:00 counts the hours past midnight)."""
    day = pd.Timestamp("2001-01-01").date()
    total = 0.0
    for start, end in zip(offset.start, offset.end):
        # modulo a day: an overnight span (22:00-06:00) wraps past midnight; pandas refuses start == end
        span = (pd.Timestamp.combine(day, end) - pd.Timestamp.combine(day, start)) % pd.Timedelta(days=1)
        total += span.total_seconds() / 3600
    return total


def _clean_period(value: float) -> float:
    """Whole numbers stay whole (24.0 -> 24); others keep two decimals (52.1786 -> 52.18)."""
    return float(round(value)) if abs(value - round(value)) < 1e-6 else round(float(value), 2)


def candidate_periods(freq: str) -> list[float]:
    """The calendar cycles (day, week, year) of the grid in steps, those longer than one step, ascending."""
    steps = _steps_per(normalise_freq(freq))
    periods = [_clean_period(v) for v in (steps["day"], steps["week"], steps["year"]) if v is not None and v > 1.5]
    return sorted(dict.fromkeys(periods))


#: a cycle of p steps is taken as whole when p is within this share of a whole number (52.18 weeks, 365.25 days)
WHOLE_CYCLE_TOLERANCE = 0.01
#: several cycles are taken as whole only when they are (up to the two decimals periods are kept with)
WHOLE_CYCLES_STEPS = 0.05


def whole_season(period: float, max_cycles: int = 7) -> int:
    """The seasonal lag, in whole steps, of a cycle of ``period`` steps: ``period`` rounded when it is within 1 %
    of a whole number (52.18 -> 52, 365.25 -> 365), else the fewest cycles that make whole steps (a week on a
    2-day grid is 3.5 steps: two weeks, 7 steps, compare like days; rounding to 4 compared days 8 apart; on a
    10-hour grid a day is 2.4 steps: 5 days, 12 steps), at most ``max_cycles``; rounded when none do."""
    if abs(period - round(period)) <= WHOLE_CYCLE_TOLERANCE * period:
        return int(round(period))
    for cycles in range(2, max_cycles + 1):
        span = cycles * float(period)
        if abs(span - round(span)) <= WHOLE_CYCLES_STEPS:
            return int(round(span))
    return int(round(period))


def season_length_for(freq: str, max_length: int | None = None) -> int:
    """The main seasonal period of ``freq`` (the shortest kept candidate, in whole steps), 1 when there is none."""
    periods = _kept_periods(candidate_periods(freq), max_length)
    return whole_season(periods[0]) if periods else 1


def _kept_periods(periods: Sequence[float], max_length: float | None) -> list[float]:
    if max_length is None:
        return [float(p) for p in periods]
    return [float(p) for p in periods if MIN_CYCLES * p <= max_length]


def effective_season_length(n_obs: int, season_length: int) -> int:
    """The season a single series can use: ``season_length`` when it holds two full seasons, else 1."""
    return int(season_length) if n_obs >= MIN_CYCLES * int(season_length) else 1


def _override(params: Mapping[str, Any], key: str):
    value = params.get(key)
    return None if value is None or (isinstance(value, str) and value.lower() in ("null", "auto", "")) else value


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise FrequencyError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def derive_profile(
    panel_params: Mapping[str, Any],
    lengths: Sequence[int] | pd.Series | np.ndarray | None = None,
    backtest_params: Mapping[str, Any] | None = None,
    monitoring_params: Mapping[str, Any] | None = None,
) -> FrequencyProfile:
    """The profile of a panel from ``params:panel`` (freq, horizon, levels and optional overrides) and lengths.

    Args:
        panel_params: ``params:panel``. Required: ``freq``, ``horizon``. Optional overrides (null = derived):
            ``season_length``, ``seasonal_periods``, ``lstm_input_size``, ``validation_horizon``.
        lengths: observed points per series (None: derived as if every period fits).
        backtest_params: ``params:backtest`` (``n_windows``, ``step``, ``min_train``, ``refit_every``; null =
            derived).
        monitoring_params: ``params:monitoring`` (``recent_window_steps``, ``reference_window_steps``,
            ``seasonal_lag_steps``, ``calibration_stride_steps``; ``data_drift.calibration.min_windows``).

    Returns:
        The frozen profile; ``as_panel_params()`` gives it as a dict.
    """
    if "freq" not in panel_params or panel_params.get("freq") in (None, ""):
        raise FrequencyError("panel.freq is missing: set it in conf/base/parameters.yml (a pandas offset alias)")
    if panel_params.get("horizon") is None:
        raise FrequencyError("panel.horizon is missing: the number of steps to forecast")
    freq = str(panel_params["freq"])
    offset = normalise_freq(freq)
    horizon = _positive_int(panel_params["horizon"], "panel.horizon")
    levels = sorted(int(level) for level in (panel_params.get("levels") or []))
    lengths_array = None if lengths is None else np.asarray(list(lengths), dtype=float)
    if lengths_array is not None and lengths_array.size == 0:
        lengths_array = None
    longest = None if lengths_array is None else float(lengths_array.max())
    typical = None if lengths_array is None else float(np.median(lengths_array))

    candidates = candidate_periods(freq)
    configured_periods = _override(panel_params, "seasonal_periods")
    if configured_periods is not None:
        if isinstance(configured_periods, (int, float)):
            configured_periods = [configured_periods]
        periods = sorted(float(p) for p in configured_periods if float(p) > 1)
    else:
        periods = _kept_periods(candidates, longest)
    configured_season = _override(panel_params, "season_length")
    if configured_season is not None:
        season_length = _positive_int(configured_season, "panel.season_length")
    else:
        season_length = whole_season(periods[0]) if periods else 1

    backtest_params = backtest_params or {}
    step = _override(backtest_params, "step")
    step = horizon if step is None else _positive_int(step, "backtest.step")
    min_train = _override(backtest_params, "min_train")
    # the least history a backtest origin needs to be worth scoring: two seasons where a season exists, and
    # never fewer points than the horizon it forecasts
    min_train = (max(MIN_CYCLES * season_length, min(horizon, 2 * max(season_length, 1)), 3) if min_train is None
                 else _positive_int(min_train, "backtest.min_train"))
    n_windows = _override(backtest_params, "n_windows")
    n_windows = (_backtest_windows(season_length, horizon, step, levels, min_train, typical) if n_windows is None
                 else _positive_int(n_windows, "backtest.n_windows"))
    refit_every = _override(backtest_params, "refit_every")
    refit_every = (math.ceil(n_windows / DEFAULT_N_WINDOWS) if refit_every is None
                   else _positive_int(refit_every, "backtest.refit_every"))

    validation_horizon = _override(panel_params, "validation_horizon")
    validation_horizon = horizon if validation_horizon is None else _positive_int(
        validation_horizon, "panel.validation_horizon")

    lstm_input_size = _override(panel_params, "lstm_input_size")
    if lstm_input_size is None:
        lstm_input_size = _lstm_lookback(periods, season_length, horizon, step, n_windows, typical)
    else:
        lstm_input_size = _positive_int(lstm_input_size, "panel.lstm_input_size")

    monitoring = _monitoring_windows(periods, season_length, horizon, monitoring_params or {}, typical)

    steps = _steps_per(offset)
    kept = set(periods)
    prophet = {
        "daily": steps["day"] is not None and steps["day"] > 1.5 and _clean_period(steps["day"]) in kept,
        "weekly": steps["week"] is not None and steps["week"] > 1.5 and _clean_period(steps["week"]) in kept,
        "yearly": steps["year"] is not None and steps["year"] > 1.5 and _clean_period(steps["year"]) in kept,
    }
    summary = {}
    if lengths_array is not None:
        summary = {"n_series": int(lengths_array.size), "min": float(lengths_array.min()),
                   "median": typical, "max": longest}
    return FrequencyProfile(
        freq=freq, horizon=horizon, levels=levels, season_length=season_length,
        seasonal_periods=[_clean_period(p) for p in periods], candidate_periods=candidates,
        backtest={"n_windows": n_windows, "step": step, "min_train": int(min_train), "refit_every": refit_every},
        lstm_input_size=int(lstm_input_size), validation_horizon=validation_horizon,
        monitoring=monitoring,
        prophet_seasonalities=prophet, steps_per_day=steps["day"], lengths=summary,
        max_gap_steps=max(1, horizon // 4),
    )


def _backtest_windows(season_length: int, horizon: int, step: int, levels: Sequence[int], min_train: int,
                      typical_length: float | None) -> int:
    """Origins per series: 2, or enough to span one season and to score ``1 / (1 - L)`` steps at the lowest
    level L, bounded by what a typical series affords after ``min_train`` (never below 2)."""
    from ts_kedro.evaluation.conformal import per_series_min_windows  # 1 / (1 - L), the conformal rule's count

    wanted = [DEFAULT_N_WINDOWS, math.ceil(max(int(season_length), 1) / step)]
    if levels and 0 < min(levels) < 100:
        wanted.append(math.ceil(per_series_min_windows(min(levels)) / step))
    n_windows = max(wanted)
    if typical_length is not None:
        affordable = 1 + int((typical_length - min_train - horizon) // step)
        n_windows = min(n_windows, max(affordable, DEFAULT_N_WINDOWS))
    return int(n_windows)


def _lstm_lookback(periods: Sequence[float], season_length: int, horizon: int, step: int, n_windows: int,
                   typical_length: float | None) -> int:
    """Whole seasons covering two of the longest period a typical series affords, at least two horizons."""
    season = max(int(season_length), 1)
    # what a typical series keeps for the lookback after the validation target and the backtest origins
    budget = None if typical_length is None else typical_length - 2 * horizon - (n_windows - 1) * step
    wanted = max([MIN_CYCLES * p for p in periods] or [0.0])
    if budget is not None:
        affordable = [MIN_CYCLES * p for p in periods if MIN_CYCLES * p <= budget]
        wanted = max(affordable) if affordable else 0.0
    wanted = max(wanted, 2 * horizon, season)
    if budget is not None:
        wanted = min(wanted, max(budget, season))
    return int(max(season, math.ceil(wanted / season) * season))


def _monitoring_windows(periods: Sequence[float], season_length: int, horizon: int,
                        monitoring_params: Mapping[str, Any], typical_length: float | None) -> dict[str, int]:
    """The drift check's geometry: recent and reference windows, seasonal lag, calibration stride."""
    recent = _override(monitoring_params, "recent_window_steps")
    recent = horizon if recent is None else _positive_int(recent, "monitoring.recent_window_steps")
    reference = _override(monitoring_params, "reference_window_steps")
    reference = (_reference_window(season_length, recent, typical_length) if reference is None
                 else _positive_int(reference, "monitoring.reference_window_steps"))
    stride = _override(monitoring_params, "calibration_stride_steps")
    stride = max(1, recent // 2) if stride is None else _positive_int(stride, "monitoring.calibration_stride_steps")
    lag = _override(monitoring_params, "seasonal_lag_steps")
    if lag is None:
        calibration = (monitoring_params.get("data_drift") or {}).get("calibration") or {}
        min_windows = int(calibration.get("min_windows") or MIN_CALIBRATION_WINDOWS)
        lag = _seasonal_lag(periods, recent, reference + recent + min_windows * stride, typical_length)
    else:
        lag = _positive_int(lag, "monitoring.seasonal_lag_steps")
    return {"recent_window_steps": int(recent), "reference_window_steps": int(reference),
            "seasonal_lag_steps": int(lag), "calibration_stride_steps": int(stride)}


def _reference_window(season_length: int, recent: int, typical_length: float | None) -> int:
    """Two recent windows, at least one season; never more than a typical series has before its recent window.

    The drift feature is a seasonal difference and its threshold is calibrated on the series' own earlier windows
    of the same geometry, so the reference does not need to cover the longest cycle: a short one leaves room
    for more calibration windows (and NN5's two years no longer take the whole history).
    """
    reference = max(2 * recent, int(season_length), MIN_REFERENCE_STEPS)
    if typical_length is not None:
        reference = min(reference, max(int(typical_length) - recent, MIN_REFERENCE_STEPS))
    return int(reference)


def _aligned_periods(periods: Sequence[float]) -> list[int]:
    """Kept periods in whole steps, each rounded down to a whole multiple of the next shorter one.

    A difference at the longer lag then also removes the shorter cycles: daily 7 and 364 (52 weeks: a lag of
    365 days would compare Mondays with Tuesdays), hourly 24, 168 and 8736.
    """
    aligned: list[int] = []
    for period in sorted(periods):
        whole = whole_season(period) if not aligned else int(math.floor(period / aligned[-1]) * aligned[-1])
        if whole >= 2 and whole not in aligned:
            aligned.append(whole)
    return aligned


def _seasonal_lag(periods: Sequence[float], recent: int, calibration_span: int, typical_length: float | None) -> int:
    """The smallest multiple of a kept period reaching past the recent window; the longest period whose lag a
    typical series affords together with ``calibration_span`` (reference, recent and calibration windows)."""
    lags = [period * math.ceil(recent / period) for period in _aligned_periods(periods)] or [recent]
    if typical_length is None:
        return int(lags[-1])
    fitting = [lag for lag in lags if lag + calibration_span <= typical_length]
    return int(fitting[-1] if fitting else lags[0])


def profile_for_panel(panel: pd.DataFrame, panel_params: Mapping[str, Any],
                      backtest_params: Mapping[str, Any] | None = None,
                      monitoring_params: Mapping[str, Any] | None = None) -> FrequencyProfile:
    """``derive_profile`` with the lengths (observed values per series) of a long panel."""
    lengths = panel.groupby("series_id", sort=False)["value"].count() if len(panel) else None
    return derive_profile(panel_params, lengths, backtest_params, monitoring_params)


def series_bounds(series_ids: np.ndarray) -> np.ndarray:
    """Row positions where each series starts, plus the row count at the end (rows grouped by series)."""
    if len(series_ids) == 0:
        return np.zeros(1, dtype=np.int64)
    return np.r_[np.flatnonzero(np.r_[True, series_ids[1:] != series_ids[:-1]]), len(series_ids)]


_DAY_NS = pd.Timedelta(days=1).value  # calendar offsets' grids are at midnight


def unit_steps(series_start: np.ndarray, timestamps: np.ndarray, offset: pd.DateOffset) -> np.ndarray | None:
    """Whether each row lies exactly one ``offset`` step after the row before it, in the same series.

    The panel-wide form of ``grid_positions`` for the common case (rows sorted by series and time;
    ``series_start`` marks each series' first row, which is always False). A series whose later rows are all
    True is gapless and on the grid through its first timestamp. None where no cheap panel-wide grid exists
    (multiples of calendar offsets such as ``2MS``, calendar offsets with times of day): callers then go
    series by series.

    Args:
        series_start: bool per row, True at each series' first row.
        timestamps: int64 nanoseconds per row.
        offset: the panel frequency.
    """
    if len(timestamps) == 0:
        return np.zeros(0, dtype=bool)
    if isinstance(offset, pd_offsets.Tick):
        steps = np.diff(timestamps) == pd.Timedelta(offset).value
        return np.r_[False, steps] & ~series_start
    if offset.n != 1 or (timestamps % _DAY_NS).any():
        return None
    first, last = pd.Timestamp(int(timestamps.min())), pd.Timestamp(int(timestamps.max()))
    grid = pd.date_range(offset.rollback(first), last, freq=offset).asi8
    positions = np.searchsorted(grid, timestamps)
    on = grid[np.minimum(positions, len(grid) - 1)] == timestamps
    steps = (np.diff(positions) == 1) & on[1:] & on[:-1]
    return np.r_[False, steps] & ~series_start
