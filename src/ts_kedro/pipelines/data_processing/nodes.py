"""Nodes of data_processing: raw long CSV -> validated panel -> regular, imputed, anomaly-flagged panel + reports."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from ts_kedro.datasets import CSVChunkSource
from ts_kedro.pipelines.data_processing.cleaning import (
    anomaly_scores,
    impute_column,
    reindex_series,
    trim_missing_edges,
    within_observed_edges,
)
from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SeriesQualityError
from ts_kedro.pipelines.data_processing.frequency import (
    DEFAULT_MAX_GAP_SPAN_FACTOR,
    gap_beyond_span,
    gapless_series,
    panel_frequencies,
)
from ts_kedro.pipelines.data_processing.quality import gap_statistics, markdown_table, series_profile
from ts_kedro.pipelines.data_processing.schema import (
    DUPLICATE_POLICIES,
    IS_ANOMALY,
    IS_IMPUTED,
    NON_NUMERIC_POLICIES,
    SERIES_ID,
    TIMESTAMP,
    VALUE,
    OWN_FORMATS,
    SourceSpec,
    StepClock,
    _to_datetime,
    check_future_covariates,
    check_policy,
    handle_duplicates,
    quote,
    read_canonical_chunks,
    snap_to_freq,
    sort_and_check_order,
    to_frame,
)

from ts_kedro.frequency import MIN_SERIES_LENGTH, profile_for_panel, series_bounds

logger = logging.getLogger(__name__)

SERIES_POLICIES = ("quarantine", "fail")
CANONICAL_COLUMNS = [SERIES_ID, TIMESTAMP, VALUE, IS_IMPUTED, IS_ANOMALY]


def minimum_length(panel: dict[str, Any], params: dict[str, Any]) -> int:
    """``data_processing.min_length``, or by default the fewest observations any model can forecast from.

    Only what no model can forecast at all is quarantined: a series too short for a family is served by that
    family's fallback (``ts_kedro.forecasters.base``), and one too short for a backtest window is forecast
    unvalidated and flagged. The quality report says which families each series can take.
    """
    configured = params.get("min_length")
    if configured is not None:
        if isinstance(configured, bool) or int(configured) != configured or int(configured) < MIN_SERIES_LENGTH:
            raise DataProcessingConfigError(
                f"data_processing.min_length must be an integer >= {MIN_SERIES_LENGTH}, got {configured!r}")
        return int(configured)
    return MIN_SERIES_LENGTH


def _season_length(frame: pd.DataFrame, panel: dict[str, Any]) -> int:
    return profile_for_panel(frame, panel).season_length


def validate_schema(raw_panel: CSVChunkSource, params: dict[str, Any],
                    panel: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the raw CSV in chunks into canonical columns, check the schema, sort and resolve duplicate keys.

    Args:
        raw_panel: lazy source of the raw long CSV (never modified).
        params: ``data_processing`` parameters (``source``, ``chunk_size``, policies).
        panel: ``panel`` parameters; ``panel.freq`` dates integer time steps (``source.timestamp_format: steps``).

    Returns:
        The validated panel (``series_id, timestamp, value`` + covariates, sorted) and what the checks found.
    """
    spec = SourceSpec.from_params(params.get("source", {}))
    non_numeric = check_policy("non_numeric_policy", params.get("non_numeric_policy", "fail"), NON_NUMERIC_POLICIES)
    duplicates = check_policy("duplicate_policy", params.get("duplicate_policy", "fail"), DUPLICATE_POLICIES)
    limit = int(params.get("max_reported_rows", 5))
    columns, categories, found = read_canonical_chunks(raw_panel, spec, int(params.get("chunk_size", 100_000)),
                                                       non_numeric, limit, clock=spec.clock(panel))
    if spec.snap_to_freq:
        columns[TIMESTAMP] = snap_to_freq(columns[TIMESTAMP], _snap_freq(panel))
        found["snapped_to_freq"] = str(panel["freq"])
    # The source itself, not its path: the messages then give real file lines.
    order = sort_and_check_order(columns, raw_panel, limit)
    duplicate_facts = handle_duplicates(columns, categories, raw_panel, duplicates, limit)
    panel = to_frame(columns, categories)
    panel.attrs["source_file"] = str(raw_panel.filepath)  # kept through parquet; named by screen_series
    logger.info("validated %s: %d rows, %d series", raw_panel.filepath, len(panel), len(categories))
    return panel, {**found, **order, **duplicate_facts, "rows_validated": int(len(panel))}


def _snap_freq(panel: dict[str, Any] | None) -> str:
    freq = (panel or {}).get("freq")
    if not freq:
        raise DataProcessingConfigError(
            "data_processing.source.snap_to_freq dates each stamp by the last panel.freq stamp at or before it: "
            "set panel.freq")
    return str(freq)


def infer_frequency(validated_panel: pd.DataFrame, panel: dict[str, Any]) -> dict[str, dict]:
    """Infer each series' frequency and check it against ``panel.freq``.

    Returns:
        ``{series_id: {expected_freq, inferred_freq, fault, details}}``; ``fault`` is None when the series fits.
    """
    return panel_frequencies(validated_panel[SERIES_ID], validated_panel[TIMESTAMP], panel["freq"])


def screen_series(
    validated_panel: pd.DataFrame,
    series_frequency: dict[str, dict],
    panel: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Find series-level faults (all missing, irregular/different frequency, a gap beyond the span, too short).

    With ``series_policy: quarantine`` faulty series are set aside and the rest continue; with ``fail`` any
    fault stops the run. If no series is left the run stops either way.

    Returns:
        The panel of healthy series and ``{series_id: {status, reason, details}}`` for every series.
    """
    policy = check_policy("series_policy", params.get("series_policy", "quarantine"), SERIES_POLICIES)
    min_length = minimum_length(panel, params)
    gap_factor = params.get("max_gap_span_factor", DEFAULT_MAX_GAP_SPAN_FACTOR)
    screening = {}
    for series_id, facts in series_profile(validated_panel).iterrows():
        faults = []
        if facts["observed"] == 0:
            faults.append(("all_missing", f"all {facts['rows']} values are missing"))
        frequency = series_frequency[series_id]
        if frequency["fault"]:
            faults.append((frequency["fault"], frequency["details"]))
        elif gap := gap_beyond_span(frequency, gap_factor):
            faults.append(("gap_beyond_span", gap))
        if 0 < facts["observed"] < min_length:
            faults.append(("too_short", f"{facts['observed']} observed values, needs at least {min_length} "
                                        f"(data_processing.min_length)"))
        # A constant series is kept (``is_constant`` in the report): seasonal naive forecasts it, and the
        # other families pass it to their fallbacks (Forecaster.unfit_reason). Only what no model can forecast
        # is quarantined.
        screening[series_id] = {
            "status": "quarantined" if faults else "ok",
            "reason": faults[0][0] if faults else None,
            "details": "; ".join(detail for _, detail in faults) if faults else None,
        }
    quarantined = {sid: entry for sid, entry in screening.items() if entry["status"] == "quarantined"}
    if quarantined:
        # Ids are quoted capped: a 1,000,000-character id hung the log highlighter for minutes.
        examples = ", ".join(f"{quote(sid)} ({entry['reason']})" for sid, entry in list(quarantined.items())[:5])
        if policy == "fail":
            raise SeriesQualityError(
                f"{len(quarantined)} series have faults, e.g. {examples}; fix them in the source or set "
                f"data_processing.series_policy: quarantine to continue without them"
            )
        if len(quarantined) == len(screening):
            raise SeriesQualityError(
                f"every one of the {len(screening)} series of {validated_panel.attrs.get('source_file', 'the panel')} "
                f"was quarantined, e.g. {examples}; {_frequency_hint(series_frequency, quarantined, panel)}"
                f"{_snap_hint(validated_panel, quarantined, panel, params)}check "
                f"panel.freq, data_processing.min_length and the source columns"
            )
        logger.warning("quarantined %d of %d series, e.g. %s", len(quarantined), len(screening), examples)
    healthy = validated_panel[~validated_panel[SERIES_ID].isin(list(quarantined))].reset_index(drop=True)
    return healthy, screening


def _frequency_hint(series_frequency: dict[str, dict], quarantined: dict[str, dict], panel: dict[str, Any]) -> str:
    """"5 of 5 series have the frequency 'ME' (panel.freq is 'MS'): set panel.freq: ME ...; " when most series
    quarantined for their frequency share one other pandas frequency (month-end stamps with panel.freq MS), else
    ''."""
    inferred = pd.Series([series_frequency[sid].get("inferred_freq") for sid, entry in quarantined.items()
                          if entry["reason"] in ("irregular_frequency", "different_frequency")], dtype=object)
    inferred = inferred[inferred.notna() & ~inferred.astype(str).str.startswith("irregular")]
    if inferred.empty:
        return ""
    alias, count = inferred.value_counts().index[0], int(inferred.value_counts().iloc[0])
    if count * 2 <= len(quarantined) or alias == str(panel.get("freq")):
        return ""
    return (f"{count} of {len(quarantined)} series have the frequency {alias!r} (panel.freq is "
            f"{str(panel.get('freq'))!r}): set panel.freq: {alias} if that is the data's grid; ")


def _snap_hint(validated_panel: pd.DataFrame, quarantined: dict[str, dict], panel: dict[str, Any],
               params: dict[str, Any]) -> str:
    """"... set data_processing.source.snap_to_freq: true; " when the series quarantined for stamps off the grid
    would fit it once each stamp is dated by its period (monthly data stamped on the 15th), else ''."""
    if (params.get("source") or {}).get("snap_to_freq"):
        return ""
    off_grid = [sid for sid, entry in quarantined.items() if entry["reason"] == "irregular_frequency"]
    if not off_grid or len(off_grid) * 2 <= len(quarantined):
        return ""
    rows = validated_panel[validated_panel[SERIES_ID].isin(off_grid)]
    snapped = snap_to_freq(rows[TIMESTAMP].to_numpy("datetime64[ns]"), str(panel["freq"]))
    keys = pd.DataFrame({SERIES_ID: rows[SERIES_ID].to_numpy(), TIMESTAMP: snapped})
    if keys.duplicated().any():
        return ""
    faults = panel_frequencies(keys[SERIES_ID], keys[TIMESTAMP], panel["freq"])
    fitting = [sid for sid in off_grid if faults.get(sid, {}).get("fault") is None]
    if len(fitting) * 2 <= len(off_grid):
        return ""
    example = rows[TIMESTAMP].iloc[0]
    return (f"{len(fitting)} of {len(off_grid)} series with stamps off the {panel['freq']!r} grid (e.g. {example}) "
            f"have one stamp per period: set data_processing.source.snap_to_freq: true to date each by the last "
            f"{panel['freq']!r} stamp at or before it ({pd.Timestamp(snapped[0])}); ")


def list_quarantine(series_screening: dict[str, dict]) -> list[dict[str, Any]]:
    """The quarantine list: ``[{series_id, reason, details}]`` of the series set aside."""
    return [
        {"series_id": series_id, "reason": entry["reason"], "details": entry["details"]}
        for series_id, entry in series_screening.items()
        if entry["status"] == "quarantined"
    ]


def regularise_index(screened_panel: pd.DataFrame, panel: dict[str, Any]) -> pd.DataFrame:
    """Put every series on its complete ``panel.freq`` grid, from its first to its last observed value.

    Missing timestamps become rows with NaN values (explicit gaps); missing values at the edges are cut off
    (there is nothing to impute them from) and counted in the quality report. Series that are already
    gapless after the cut keep their rows as they are (panel-wide arrays); only the others are reindexed one
    by one (one reindex per series took 28 s for 20,000 series).
    """
    columns = [SERIES_ID, TIMESTAMP, *[c for c in screened_panel.columns if c not in (SERIES_ID, TIMESTAMP)]]
    trimmed = screened_panel[within_observed_edges(screened_panel[SERIES_ID], screened_panel[VALUE])]
    ids = trimmed[SERIES_ID].to_numpy()
    bounds = series_bounds(ids)
    gapless = gapless_series(bounds, trimmed[TIMESTAMP].to_numpy("datetime64[ns]").view("i8"),
                             to_offset(panel["freq"]))
    rows_gapless = np.repeat(gapless, np.diff(bounds))
    pieces = [trimmed[rows_gapless]]
    # Series the cut emptied (all missing) go the per-series way too, which fails on them as before.
    emptied = ~screened_panel[SERIES_ID].isin(pd.unique(ids))
    for series_id, series in pd.concat([trimmed[~rows_gapless], screened_panel[emptied]]).groupby(SERIES_ID, sort=True):
        regular = reindex_series(trim_missing_edges(series), panel["freq"])
        regular[SERIES_ID] = series_id
        pieces.append(regular)
    regular_panel = pd.concat(pieces, ignore_index=True)[columns]
    if not regular_panel[SERIES_ID].is_monotonic_increasing:
        regular_panel = regular_panel.sort_values(SERIES_ID, kind="stable", ignore_index=True)
    return regular_panel


def impute_missing(regular_panel: pd.DataFrame, panel: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """Fill missing values with ``data_processing.imputation`` (linear, seasonal, ffill or none).

    The target's filled points get ``is_imputed = True``; covariates are filled the same way, unflagged.
    """
    method = params.get("imputation", "linear")
    season_length = _season_length(regular_panel, panel)
    imputed = regular_panel.copy()
    imputed[IS_IMPUTED] = imputed[VALUE].isna()
    for column in [c for c in imputed.columns if c not in (SERIES_ID, TIMESTAMP, IS_IMPUTED)]:
        imputed[column] = impute_column(imputed[column], imputed[SERIES_ID], method, season_length)
    if method == "none":
        imputed[IS_IMPUTED] = False
    logger.info("imputed %d missing values with method %r", int(imputed[IS_IMPUTED].sum()), method)
    return imputed


def flag_anomalies(imputed_panel: pd.DataFrame, panel: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """Flag observed points whose seasonal residual has a robust |z| above ``anomaly.threshold``; keep them all.

    Imputed points are never flagged: they are not observations.
    """
    settings = params.get("anomaly", {})
    scores = anomaly_scores(imputed_panel[VALUE], imputed_panel[SERIES_ID], settings.get("method", "seasonal_median"),
                            _season_length(imputed_panel, panel), float(settings.get("scale_floor", 0.1)))
    flagged = imputed_panel.copy()
    observed = ~flagged[IS_IMPUTED] & flagged[VALUE].notna()
    flagged[IS_ANOMALY] = (scores.abs() > float(settings.get("threshold", 7.0))) & observed
    logger.info("flagged %d anomalies", int(flagged[IS_ANOMALY].sum()))
    return flagged


def conform_primary_panel(flagged_panel: pd.DataFrame) -> pd.DataFrame:
    """The canonical primary panel: columns in contract order, contract dtypes, sorted by series and time."""
    covariates = [c for c in flagged_panel.columns if c not in CANONICAL_COLUMNS]
    primary = flagged_panel[CANONICAL_COLUMNS + covariates].astype(
        {SERIES_ID: str, TIMESTAMP: "datetime64[ns]", VALUE: "float64", IS_IMPUTED: bool, IS_ANOMALY: bool,
         **{c: "float64" for c in covariates}}
    )
    return primary.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)


def select_future_covariates(future_covariates: pd.DataFrame | None, primary_panel: pd.DataFrame,
                             params: dict[str, Any], panel: dict[str, Any]) -> pd.DataFrame:
    """The planned values of the known-in-advance covariates for the ``panel.horizon`` steps after each kept
    series' end (``series_id, timestamp, <covariates>``): what the feature families forecast from.

    ``future_covariates`` is the user's file (``catalog_data_processing.yml``; absent = empty frame). Its id and
    time columns may carry the raw names of ``data_processing.source`` (``id_column``, ``timestamp_column``).
    With no covariate declared ``known_in_advance`` the result is empty and the file is not needed; otherwise a
    missing file, column or value stops the run with the covariate, series and first missing timestamp named.
    """
    spec = SourceSpec.from_params(params.get("source", {}))
    known = spec.known_in_advance()
    source = (future_covariates.attrs.get("source") if future_covariates is not None else None) or "future_covariates"
    if future_covariates is not None and future_covariates.columns.empty:
        future_covariates = None  # the optional file is absent
    if future_covariates is not None:
        future_covariates = future_covariates.rename(columns={
            raw: canonical for raw, canonical in ((spec.id_column, SERIES_ID), (spec.timestamp_column, TIMESTAMP))
            if raw and raw != canonical and raw in future_covariates.columns})
        if SERIES_ID in future_covariates:
            future_covariates = future_covariates.assign(**{SERIES_ID: future_covariates[SERIES_ID].astype(str)})
        clock = spec.clock(panel)
        if (isinstance(clock, StepClock) or clock in OWN_FORMATS) and TIMESTAMP in future_covariates:
            # steps, epoch times or ISO weeks, dated like the panel's (an unreadable one stays undated: reported missing)
            future_covariates = future_covariates.assign(
                **{TIMESTAMP: _to_datetime(future_covariates[TIMESTAMP].astype(str), clock)})
        if spec.snap_to_freq and TIMESTAMP in future_covariates:  # dated like the panel's stamps
            stamps = pd.to_datetime(future_covariates[TIMESTAMP], errors="coerce")
            known_stamps = stamps.notna().to_numpy()
            snapped = stamps.to_numpy("datetime64[ns]").copy()
            snapped[known_stamps] = snap_to_freq(snapped[known_stamps], _snap_freq(panel))
            future_covariates = future_covariates.assign(**{TIMESTAMP: snapped})
    last = primary_panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
    rows = check_future_covariates(future_covariates, known, last, int(panel["horizon"]), panel["freq"],
                                   source=source)
    if known:
        logger.info("future values of %s for %d series x %d steps from %s", known, len(last), panel["horizon"], source)
    return rows.astype({SERIES_ID: str, TIMESTAMP: "datetime64[ns]", **{c: "float64" for c in known}})


def build_quality_report(
    validated_panel: pd.DataFrame,
    series_frequency: dict[str, dict],
    series_screening: dict[str, dict],
    flagged_panel: pd.DataFrame,
    schema_summary: dict[str, Any],
    panel: dict[str, Any],
    params: dict[str, Any],
    backtest_params: dict[str, Any] | None = None,
    **family_specs: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """Per-series data-quality report (JSON) and the same as a readable markdown table.

    Besides the data facts, each kept series says how many backtest windows it affords and, per enabled
    family (``family_specs``: the ``<family>.model`` blocks), ``ok`` or why that family cannot take it (the
    family's own ``unfit_reason``; its fallback then serves the series).

    Returns:
        ``{"summary": {...}, "series": [{series_id, status, length, start, end, missing_share, gaps, ...,
        backtest_windows, families}]}`` and its markdown rendering.
    """
    from ts_kedro.evaluation.backtest import series_windows
    from ts_kedro.forecasters import build_forecaster

    min_length = minimum_length(panel, params)
    frequency_profile = profile_for_panel(flagged_panel, panel, backtest_params)
    backtest = frequency_profile.backtest
    horizon = frequency_profile.horizon
    backtest_length = backtest["min_train"] + horizon
    # Per-series lookups from dicts built in one pass each (pandas lookups per series cost 6 s for 20,000)
    values = flagged_panel[VALUE].to_numpy(float)
    stamps = flagged_panel[TIMESTAMP].to_numpy()
    kept_rows = flagged_panel.groupby(SERIES_ID, sort=False).indices
    kept_values = {sid: values[rows] for sid, rows in kept_rows.items()}
    windows = series_windows(pd.Series({sid: len(v) for sid, v in kept_values.items()}, dtype=int), horizon,
                             backtest["n_windows"], backtest["step"], backtest["min_train"]).sum(axis=1) \
        if kept_values else pd.Series(dtype=int)
    models = {family: build_forecaster(spec, freq=frequency_profile.freq, season_length=frequency_profile.season_length,
                                       profile_defaults=frequency_profile.forecaster_defaults())
              for family, spec in family_specs.items()}
    profile = series_profile(validated_panel)
    gaps = gap_statistics(flagged_panel)
    span = flagged_panel.groupby(SERIES_ID)[TIMESTAMP].agg(["min", "max"])
    # Rows of a kept series outside its grid were missing values at its edges, cut by regularise_index.
    bounds = validated_panel[[SERIES_ID, TIMESTAMP]].join(span, on=SERIES_ID)
    outside = bounds["min"].notna() & ~bounds[TIMESTAMP].between(bounds["min"], bounds["max"])
    trimmed = outside.groupby(validated_panel[SERIES_ID]).sum().to_dict()
    window_counts = windows.to_dict()
    gap_facts = gaps.to_dict("index")
    rows = []
    for series_id, facts in profile.to_dict("index").items():
        screening, frequency = series_screening[series_id], series_frequency[series_id]
        row = {
            "series_id": series_id, "status": screening["status"], "reason": screening["reason"],
            "rows": int(facts["rows"]), "observed": int(facts["observed"]),
            "start": facts["start"].isoformat(), "end": facts["end"].isoformat(),
            "expected_freq": frequency["expected_freq"], "inferred_freq": frequency["inferred_freq"],
            "is_constant": bool(facts["is_constant"]),
            "too_short_for_horizon": bool(facts["observed"] < min_length),
            "too_short_for_backtest": bool(facts["observed"] < backtest_length),
        }
        if series_id in kept_values:
            row["backtest_windows"] = int(window_counts.get(series_id, 0))
            row["families"] = {family: model.unfit_reason(kept_values[series_id], stamps[kept_rows[series_id]]) or "ok"
                               for family, model in models.items()}
        if series_id in gap_facts:
            stats = gap_facts[series_id]
            row |= {"length": int(stats["grid_length"]), "missing": int(stats["missing"]),
                    "missing_share": round(float(stats["missing"] / stats["grid_length"]), 6),
                    "gaps": int(stats["gaps"]), "longest_gap": int(stats["longest_gap"]),
                    "imputed": int(stats["imputed"]), "anomalies": int(stats["anomalies"]),
                    "edge_rows_trimmed": int(trimmed.get(series_id, 0))}
        else:
            # Quarantined series never reach the grid: report what the file itself holds.
            missing = int(facts["rows"] - facts["observed"])
            row |= {"length": int(facts["rows"]), "missing": missing,
                    "missing_share": round(missing / facts["rows"], 6), "gaps": None, "longest_gap": None,
                    "imputed": None, "anomalies": None, "edge_rows_trimmed": None}
        rows.append(row)
    reasons = pd.Series([r["reason"] for r in rows if r["reason"]], dtype=object).value_counts()
    summary = {
        **schema_summary,
        "series_total": len(rows),
        "series_ok": sum(r["status"] == "ok" for r in rows),
        "series_quarantined": sum(r["status"] == "quarantined" for r in rows),
        "quarantine_reasons": {str(k): int(v) for k, v in reasons.items()},
        "panel_freq": frequency_profile.freq, "season_length": frequency_profile.season_length,
        "seasonal_periods": frequency_profile.seasonal_periods, "backtest": backtest,
        "horizon": horizon, "min_length": min_length, "backtest_min_length": backtest_length,
        "series_unvalidated": int((windows == 0).sum()),
        "family_coverage": {family: sum(r.get("families", {}).get(family) == "ok" for r in rows)
                            for family in models},
        "imputation": params.get("imputation", "linear"),
        "anomaly": params.get("anomaly", {}),
        "points_imputed": int(flagged_panel[IS_IMPUTED].sum()),
        "points_flagged_anomalous": int(flagged_panel[IS_ANOMALY].sum()),
    }
    return {"summary": summary, "series": rows}, render_quality_table(summary, rows)


def render_quality_table(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Markdown view of the quality report: a few summary lines, then one row per series."""
    columns = ["series_id", "status", "reason", "length", "start", "end", "inferred_freq", "missing_share",
               "gaps", "longest_gap", "anomalies", "is_constant", "backtest_windows", "families_not_fitting"]
    rows = [{**row, "families_not_fitting": "; ".join(f"{family}: {why}" for family, why in row.get("families", {}).items()
                                                     if why != "ok") or "-"} for row in rows]
    header = [
        "# Data-quality report",
        "",
        f"- source: `{summary['file']}` ({summary['rows_read']} rows read, {summary['rows_validated']} validated)",
        f"- series: {summary['series_total']} ({summary['series_ok']} ok, {summary['series_quarantined']} quarantined"
        f"{': ' + ', '.join(f'{k} {v}' for k, v in summary['quarantine_reasons'].items()) if summary['quarantine_reasons'] else ''})",
        f"- grid: `{summary['panel_freq']}`, season length {summary['season_length']}, min length "
        f"{summary['min_length']}, backtest min length {summary['backtest_min_length']} "
        f"({summary['series_unvalidated']} series too short for one backtest window: forecast unvalidated)",
        f"- series each family can fit itself (the others go to its fallback): "
        f"{', '.join(f'{k} {v}' for k, v in summary['family_coverage'].items()) or '-'}",
        f"- rows out of time order (sorted): {summary['rows_out_of_order']}; duplicate rows: "
        f"{summary['duplicate_rows']} ({summary['duplicates_dropped']} dropped)",
        f"- imputed points ({summary['imputation']}): {summary['points_imputed']}; anomalies flagged: "
        f"{summary['points_flagged_anomalous']}",
        *([f"- columns of the file not read: {', '.join(f'`{c}`' for c in summary['columns_not_read'][:20])}"
           f"{' ...' if len(summary['columns_not_read']) > 20 else ''} (declare them in "
           "data_processing.source.covariates to use them)"] if summary.get("columns_not_read") else []),
        "",
    ]
    return "\n".join(header) + "\n" + markdown_table(rows, columns) + "\n"
