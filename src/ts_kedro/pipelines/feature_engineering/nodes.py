"""Nodes of the feature_engineering pipeline: leak-free calendar, lag, rolling and decomposition features.

Leakage rule: every feature at time t is computed from timestamps and from values strictly before t.
Calendar features use only the timestamp; lags use ``value`` shifted by >= 1 step; rolling statistics
are taken over ``value.shift(1)``; decomposition features come from STL/MSTL fits on the history before
a refit origin (see ``decomposition.causal_decomposition``). Rows at the start of a series whose
features need more history than exists are kept, with NaN in those features (never dropped here:
the consumer decides whether to drop, mask or impute them, and ``feature_manifest`` counts them).
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from . import calendar
from .decomposition import causal_decomposition, in_sample_decomposition, map_over_series

from ts_kedro.frequency import profile_for_panel

logger = logging.getLogger(__name__)

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
KEYS = [SERIES_ID, TIMESTAMP]
ROLLING_STATS = ("mean", "std", "min", "max")
FEATURE_GROUPS = ("calendar", "lag", "rolling", "decomposition")
_PARAMS_FILE = "conf/base/parameters_feature_engineering.yml"


class FeatureEngineeringError(ValueError):
    """The primary panel or the feature parameters cannot produce leak-free features."""


# -- configuration -----------------------------------------------------------------------------


def resolve_feature_spec(primary_panel: pd.DataFrame, panel_params: dict, feature_params: dict) -> dict[str, Any]:
    """Check the panel and turn the parameters (with null = derive from ``panel``) into explicit settings.

    Args:
        primary_panel: canonical panel (``series_id, timestamp, value, ...``) on a regular ``panel.freq`` grid.
        panel_params: ``params:panel`` (``freq``, ``season_length``, ``seasonal_periods``).
        feature_params: ``params:feature_engineering``.

    Returns:
        The resolved feature specification used by every other node (and written to the manifest).
    """
    freq = panel_params["freq"]
    _check_primary_panel(primary_panel, freq)
    profile = profile_for_panel(primary_panel, panel_params)
    season_length = profile.season_length
    # whole-step periods; a panel without a season (yearly) rolls over one horizon instead
    seasonal_periods = profile.integer_periods or [max(season_length, min(profile.horizon, 2 * season_length + 1))]
    lags = _positive_ints(feature_params.get("lags"), "lags")
    spec = {
        "freq": freq,
        "calendar": _calendar_spec(primary_panel, freq, feature_params.get("calendar") or {}),
        "lags": sorted({1, season_length, *seasonal_periods}) if lags is None else lags,
        "rolling": _rolling_spec(feature_params.get("rolling") or {}, season_length, seasonal_periods),
        "decomposition": _decomposition_spec(feature_params.get("decomposition") or {}, seasonal_periods),
        "n_jobs": int(feature_params.get("n_jobs", 1)),
        "parallel_min_series": int(feature_params.get("parallel_min_series", 1)),
    }
    logger.info("feature spec: %s", spec)
    return spec


def _calendar_spec(primary_panel: pd.DataFrame, freq: str, params: dict) -> dict[str, Any]:
    """Calendar features: the configured list, or those the frequency and the longest series span support."""
    if params.get("features") is not None:
        features = list(params["features"])
    else:
        spans = primary_panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].agg(["min", "max"])
        longest_span = calendar.capped_span(spans["min"], spans["max"]) + calendar.step_length(freq)
        features = calendar.select_features(freq, longest_span, float(params.get("min_cycles", 2)))
    spec = {
        "features": features,
        "encoding": params.get("encoding", "cyclic"),
        "holidays_country": params.get("holidays_country"),
        "holidays_subdiv": params.get("holidays_subdiv"),
    }
    # Fail on a bad name, encoding or country now, on two timestamps, not after the expensive nodes.
    calendar.calendar_frame(primary_panel[TIMESTAMP].head(2), **spec)
    return spec


def _rolling_spec(params: dict, season_length: int, seasonal_periods: list[int]) -> dict[str, list]:
    """Rolling windows (default: main and longest season) and statistics, validated."""
    windows = _positive_ints(params.get("windows"), "rolling.windows")
    if windows is None:  # derived: a one-step "window" (season 1, yearly data) summarises nothing
        windows = sorted({w for w in (season_length, max(seasonal_periods)) if w >= 2}) or [2]
    stats = list(params.get("stats") or ROLLING_STATS)
    unknown_stats = sorted(set(stats) - set(ROLLING_STATS))
    if unknown_stats:
        raise FeatureEngineeringError(
            f"{_PARAMS_FILE}: feature_engineering.rolling.stats has {unknown_stats}; choose from {list(ROLLING_STATS)}"
        )
    if "std" in stats and windows and min(windows) < 2:
        raise FeatureEngineeringError(
            f"{_PARAMS_FILE}: a rolling std needs a window of at least 2 steps; got windows {windows}"
        )
    return {"windows": windows, "stats": stats}


def _decomposition_spec(params: dict, seasonal_periods: list[int]) -> dict[str, Any]:
    """Seasonal periods, first fit origin and refit interval of the causal STL/MSTL features, validated."""
    periods = _positive_ints(params.get("periods"), "decomposition.periods")
    periods = [p for p in (seasonal_periods if periods is None else periods) if p >= 2]  # period 1: no shape
    longest = max(periods, default=0)
    min_history = int(params.get("min_history") or 2 * longest + 1)
    if periods and min_history <= 2 * longest:
        raise FeatureEngineeringError(
            f"{_PARAMS_FILE}: feature_engineering.decomposition.min_history={min_history} is too short: STL needs "
            f"more than two cycles of the longest period {longest}, i.e. at least {2 * longest + 1} steps"
        )
    refit_every = params.get("refit_every")
    if refit_every is not None and (not isinstance(refit_every, int) or refit_every < 1):
        raise FeatureEngineeringError(
            f"{_PARAMS_FILE}: feature_engineering.decomposition.refit_every must be an integer >= 1 or null "
            f"(refit once per longest period); got {refit_every!r}"
        )
    return {
        "periods": periods,
        "min_history": min_history,
        "refit_every": int(refit_every or longest or 1),
        "stl_kwargs": dict(params.get("stl_kwargs") or {}),
    }


def _positive_ints(values: list | None, key: str) -> list[int] | None:
    """Sorted unique positive ints from a parameter list; None when the parameter is null (use defaults)."""
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and v >= 1 for v in values):
        raise FeatureEngineeringError(
            f"{_PARAMS_FILE}: feature_engineering.{key} must be a list of integers >= 1 (steps into the past; "
            f"0 would use the value being predicted), [] for none, or null for the defaults; got {values!r}"
        )
    return sorted(set(values))


def _check_primary_panel(panel: pd.DataFrame, freq: str) -> None:
    """Raise if the panel breaks the canonical contract that step-based features rely on."""
    missing = [c for c in (*KEYS, VALUE) if c not in panel.columns]
    if missing:
        raise FeatureEngineeringError(
            f"primary_panel: column(s) {missing} missing (have {list(panel.columns)}); feature_engineering expects "
            f"the canonical panel written by data_processing"
        )
    if panel.empty:
        raise FeatureEngineeringError("primary_panel is empty: data_processing quarantined every series or read no rows")
    nan_rows = panel.index[panel[VALUE].isna()]
    if len(nan_rows):
        row = panel.loc[nan_rows[0]]
        raise FeatureEngineeringError(
            f"primary_panel: value is NaN in {len(nan_rows)} row(s), first series {row[SERIES_ID]!r} at "
            f"{row[TIMESTAMP]}; data_processing must impute gaps before feature_engineering"
        )
    # Lags and windows count steps, so consecutive rows of a series must be exactly one step apart.
    same_series = panel[SERIES_ID].eq(panel[SERIES_ID].shift())
    expected = panel[TIMESTAMP].shift() + to_offset(freq)
    off_grid = same_series & panel[TIMESTAMP].ne(expected)
    if off_grid.any():
        row = panel.loc[off_grid.idxmax()]
        raise FeatureEngineeringError(
            f"primary_panel: series {row[SERIES_ID]!r} is not on a regular '{freq}' grid sorted by timestamp at "
            f"{row[TIMESTAMP]} ({int(off_grid.sum())} such rows); panel.freq in conf/base/parameters.yml must "
            f"match the data and data_processing must regularise and sort it"
        )
    if panel[SERIES_ID].nunique() != int((~same_series).sum()):
        raise FeatureEngineeringError(
            "primary_panel: rows of a series are not contiguous; sort the panel by series_id, timestamp"
        )


# -- features ----------------------------------------------------------------------------------


def build_calendar_features(primary_panel: pd.DataFrame, feature_spec: dict) -> pd.DataFrame:
    """Calendar features of each row's timestamp (known in advance, so they cannot leak).

    Returns:
        ``series_id, timestamp`` plus the encoded calendar columns (and ``is_holiday`` if configured).
    """
    cal = feature_spec["calendar"]
    features = calendar.calendar_frame(
        primary_panel[TIMESTAMP], cal["features"], cal["encoding"], cal["holidays_country"], cal["holidays_subdiv"]
    )
    logger.info("calendar features: %s", list(features.columns))
    return pd.concat([primary_panel[KEYS], features], axis=1)


def build_lag_features(primary_panel: pd.DataFrame, feature_spec: dict) -> pd.DataFrame:
    """``lag_<k>`` = value k steps earlier in the same series; NaN for the first k rows of each series."""
    by_series = primary_panel.groupby(SERIES_ID, sort=False)[VALUE]
    lags = {f"lag_{k}": by_series.shift(k) for k in feature_spec["lags"]}
    return pd.concat([primary_panel[KEYS], pd.DataFrame(lags)], axis=1)


def build_rolling_features(primary_panel: pd.DataFrame, feature_spec: dict) -> pd.DataFrame:
    """``rolling_<stat>_<w>`` over the w values before t (``value.shift(1)``); NaN until w values exist."""
    known_before = primary_panel.groupby(SERIES_ID, sort=False)[VALUE].shift(1)
    by_series = known_before.groupby(primary_panel[SERIES_ID], sort=False)
    columns = {}
    for window in feature_spec["rolling"]["windows"]:
        rolling = by_series.rolling(window, min_periods=window)
        for stat in feature_spec["rolling"]["stats"]:
            columns[f"rolling_{stat}_{window}"] = getattr(rolling, stat)().droplevel(0)
    return pd.concat([primary_panel[KEYS], pd.DataFrame(columns, index=primary_panel.index)], axis=1)


def build_decomposition_features(primary_panel: pd.DataFrame, feature_spec: dict) -> pd.DataFrame:
    """Causal STL/MSTL features: ``decomp_trend`` and ``decomp_seasonal_<p>`` from fits on past values only.

    Each series is refitted every ``refit_every`` steps on the values before the refit origin; the block
    after it gets the last fitted trend level and the seasonal value of the same phase one cycle back.
    The first ``min_history`` rows of each series are NaN. Series run in parallel (joblib, ``n_jobs``).
    """
    dec = feature_spec["decomposition"]
    names = ["decomp_trend", *[f"decomp_seasonal_{p}" for p in dec["periods"]]]
    out = np.full((len(primary_panel), len(names)), np.nan)
    if dec["periods"]:
        positions = primary_panel.groupby(SERIES_ID, sort=False).indices
        values = primary_panel[VALUE].to_numpy(dtype=float)
        fit = functools.partial(
            causal_decomposition,
            periods=dec["periods"],
            min_history=dec["min_history"],
            refit_every=dec["refit_every"],
            stl_kwargs=dec["stl_kwargs"],
        )
        results = map_over_series(
            fit, (values[rows] for rows in positions.values()), len(positions), feature_spec["n_jobs"],
            "causal decomposition features", feature_spec.get("parallel_min_series", 1),
        )
        for rows, result in zip(positions.values(), results):
            out[rows] = result
    else:
        logger.warning("no seasonal period >= 2 configured: decomposition features are left out")
        names = []
        out = out[:, :0]
    return pd.concat([primary_panel[KEYS], pd.DataFrame(out, columns=names, index=primary_panel.index)], axis=1)


def decompose_series(primary_panel: pd.DataFrame, feature_spec: dict) -> pd.DataFrame:
    """In-sample (two-sided) STL/MSTL of every whole series, for analysis and plots, not for features.

    Returns:
        ``series_id, timestamp, trend, seasonal_<p>..., resid``; NaN where a series is too short for a period.
    """
    periods = feature_spec["decomposition"]["periods"]
    columns = ["trend", *[f"seasonal_{p}" for p in periods], "resid"]
    out = np.full((len(primary_panel), len(columns)), np.nan)
    positions = primary_panel.groupby(SERIES_ID, sort=False).indices
    values = primary_panel[VALUE].to_numpy(dtype=float)
    fit = functools.partial(
        in_sample_decomposition, periods=periods, stl_kwargs=feature_spec["decomposition"]["stl_kwargs"]
    )
    results = map_over_series(
        fit, (values[rows] for rows in positions.values()), len(positions), feature_spec["n_jobs"],
        "in-sample decomposition", feature_spec.get("parallel_min_series", 1),
    )
    too_short = []
    for (series_id, rows), result in zip(positions.items(), results):
        out[rows] = result
        if np.isnan(result[:, 1:-1]).all(axis=0).any():
            too_short.append(series_id)
    if too_short:
        logger.warning(
            "%d series are too short for some seasonal period (NaN seasonal columns), e.g. %s",
            len(too_short), too_short[:5],
        )
    return pd.concat([primary_panel[KEYS], pd.DataFrame(out, columns=columns, index=primary_panel.index)], axis=1)


# -- assembly ----------------------------------------------------------------------------------


def assemble_feature_panel(
    primary_panel: pd.DataFrame,
    calendar_features: pd.DataFrame,
    lag_features: pd.DataFrame,
    rolling_features: pd.DataFrame,
    decomposition_features: pd.DataFrame,
) -> pd.DataFrame:
    """The primary panel (all its columns, covariates included) with every feature column appended."""
    parts = [primary_panel.reset_index(drop=True)]
    for name, features in zip(FEATURE_GROUPS, (calendar_features, lag_features, rolling_features, decomposition_features)):
        _check_aligned(primary_panel, features, name)
        clashes = sorted(set(features.columns.drop(KEYS)) & set().union(*(p.columns for p in parts)))
        if clashes:
            raise FeatureEngineeringError(
                f"{name} features {clashes} clash with existing columns of primary_panel; rename the covariate"
            )
        parts.append(features.drop(columns=KEYS).reset_index(drop=True))
    feature_panel = pd.concat(parts, axis=1)
    logger.info("feature_panel: %d rows, %d columns", len(feature_panel), feature_panel.shape[1])
    return feature_panel


def _check_aligned(primary_panel: pd.DataFrame, features: pd.DataFrame, name: str) -> None:
    """Raise unless ``features`` has exactly the panel's rows in the panel's order."""
    if len(features) != len(primary_panel) or not (
        np.array_equal(features[SERIES_ID].to_numpy(), primary_panel[SERIES_ID].to_numpy())
        and np.array_equal(features[TIMESTAMP].to_numpy(), primary_panel[TIMESTAMP].to_numpy())
    ):
        raise FeatureEngineeringError(
            f"{name} features are not row-aligned with primary_panel ({len(features)} vs {len(primary_panel)} rows "
            f"or different series_id/timestamp order); rebuild them from the same primary_panel"
        )


def build_feature_manifest(
    feature_spec: dict,
    calendar_features: pd.DataFrame,
    lag_features: pd.DataFrame,
    rolling_features: pd.DataFrame,
    decomposition_features: pd.DataFrame,
) -> dict[str, Any]:
    """Feature names grouped by kind, plus how many leading rows each group leaves NaN, and the spec.

    Returns:
        ``{"groups": {"calendar": [...], "lag": [...], "rolling": [...], "decomposition": [...]},
        "features": [...all, in feature_panel order], "nan_rows": {group: count}, "spec": {...}}``
    """
    frames = dict(zip(FEATURE_GROUPS, (calendar_features, lag_features, rolling_features, decomposition_features)))
    groups = {name: [c for c in frame.columns if c not in KEYS] for name, frame in frames.items()}
    nan_rows = {name: int(frame[groups[name]].isna().any(axis=1).sum()) for name, frame in frames.items()}
    return {
        "target": VALUE,
        "groups": groups,
        "features": [c for name in FEATURE_GROUPS for c in groups[name]],
        "nan_rows": nan_rows,
        "leakage_rule": "every feature at time t uses only the timestamp and values strictly before t",
        "spec": feature_spec,
    }
