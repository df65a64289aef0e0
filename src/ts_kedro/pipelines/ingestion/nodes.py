"""Nodes of ingestion: validate Day-N batch files against the schema and the history, then extend the history."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError
from ts_kedro.pipelines.data_processing.frequency import on_grid
from ts_kedro.pipelines.data_processing.nodes import validate_schema
from ts_kedro.pipelines.data_processing.schema import SERIES_ID, TIMESTAMP, VALUE, quote
from ts_kedro.pipelines.ingestion.batch_files import UnexpectedFile

from ts_kedro.frequency import derive_profile

logger = logging.getLogger(__name__)

NEW_SERIES_POLICIES = ("accept", "quarantine")
ACCEPTED, QUARANTINED, IGNORED = "accepted", "quarantined", "ignored"


class IngestionConfigError(ValueError):
    """An ``ingestion`` parameter has a value the pipeline does not know."""


class HistoryIntegrityError(RuntimeError):
    """The saved history does not hold what this run accepted: batch files are left in place."""


def _settings(params: dict[str, Any], panel: dict[str, Any] | None = None) -> dict[str, Any]:
    policy = params.get("new_series_policy", "quarantine")
    if policy not in NEW_SERIES_POLICIES:
        raise IngestionConfigError(f"ingestion.new_series_policy is {policy!r}; choose one of {list(NEW_SERIES_POLICIES)}")
    max_gap = params.get("max_gap_steps", 0)
    if max_gap is None:  # null: derived by the frequency profile from the horizon
        max_gap = derive_profile(panel or {}).max_gap_steps
    if isinstance(max_gap, bool) or int(max_gap) != max_gap or max_gap < 0:
        raise IngestionConfigError(f"ingestion.max_gap_steps must be an integer >= 0, got {max_gap!r}")
    return {"new_series_policy": policy, "max_gap_steps": int(max_gap),
            "max_reported_rows": int(params.get("max_reported_rows", 5))}


def select_previous_history(validated_panel: pd.DataFrame, history_versions: dict[str, Callable]) -> pd.DataFrame:
    """The history to extend: the newest saved ``history_panel`` version, or the Day-0 validated panel.

    Args:
        validated_panel: Day-0 schema-checked panel (seed of the history, never modified).
        history_versions: ``{"<version>/history_panel": loader}`` of every saved history version (may be empty).

    Returns:
        The previous history, sorted by ``series_id, timestamp``.
    """
    if not history_versions:
        logger.info("no history_panel version yet: seeding the history with the Day-0 validated_panel")
        history = validated_panel
    else:
        # Kedro version strings are UTC timestamps (YYYY-MM-DDThh.mm.ss.sssZ): they sort in time order.
        newest = max(history_versions)
        logger.info("extending history version %s (%d versions kept)", newest, len(history_versions))
        history = history_versions[newest]()
    history = history.copy()
    history[SERIES_ID] = history[SERIES_ID].astype(str)
    history = history.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    history.attrs["source_file"] = (f"history_panel version {max(history_versions)}" if history_versions else
                                    f"the Day-0 validated_panel of {validated_panel.attrs.get('source_file', 'raw_panel')}")
    return history


def _first_rows(frame: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    rows = frame.head(limit).copy()
    for column in rows.columns:
        if pd.api.types.is_datetime64_any_dtype(rows[column]):
            rows[column] = rows[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return rows.astype(object).where(rows.notna(), None).to_dict(orient="records")


def check_continuity(
    batch: pd.DataFrame, history: pd.DataFrame, freq: str, settings: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Compare one validated batch with the history, series by series.

    Rules: a timestamp already in the history must carry the same value (exact duplicates are dropped and
    counted; a different value is an ``overlap_conflict``); a new timestamp must not lie before the series'
    history start (``before_history_start``: the history only grows forward, and a batch 10 years early grew it
    fivefold) and must lie on the series' ``freq`` grid through its first timestamp (``off_grid``: a :30 row in
    an hourly series would quarantine it as irregular in every later run); the first new timestamp may follow
    the history end by at most ``max_gap_steps`` missing steps (``gap``); a series unknown to the history is
    accepted or is an ``unknown_series`` violation, per ``new_series_policy``.

    Returns:
        The rows new to the history, counts, and the list of violations (empty when the batch is valid).
    """
    limit = settings["max_reported_rows"]
    step = pd.tseries.frequencies.to_offset(freq)
    keys = [SERIES_ID, TIMESTAMP]
    shared_columns = [c for c in batch.columns if c in history.columns]
    missing_columns = sorted(set(history.columns) - set(batch.columns))
    extra_columns = sorted(set(batch.columns) - set(history.columns))
    violations: list[dict[str, Any]] = []
    if missing_columns or extra_columns:
        violations.append({
            "rule": "columns_differ", "series_id": None,
            "message": f"batch columns differ from the history: missing {missing_columns}, unexpected {extra_columns}; "
                       "send the same covariates as the history",
            "first_rows": _first_rows(batch, limit)})
        return batch.iloc[0:0], {"rows": int(len(batch)), "duplicate_rows_ignored": 0, "new_rows": 0}, violations

    merged = batch.merge(history[shared_columns], on=keys, how="left", suffixes=("", "_history"), indicator=True)
    known = merged["_merge"] == "both"
    value_columns = [c for c in shared_columns if c not in keys]
    same = pd.Series(True, index=merged.index)
    for column in value_columns:
        left, right = merged[column], merged[f"{column}_history"]
        same &= (left == right) | (left.isna() & right.isna())
    duplicates = known & same
    conflicts = known & ~same
    new_rows = batch.loc[~known.to_numpy()]

    history_end = history.groupby(SERIES_ID)[TIMESTAMP].max()
    history_start = history.groupby(SERIES_ID)[TIMESTAMP].min()
    for series_id, rows in merged.loc[conflicts].groupby(SERIES_ID, sort=True):
        columns = [*keys, *[x for c in value_columns for x in (c, f"{c}_history")]]
        violations.append({
            "rule": "overlap_conflict", "series_id": series_id,
            "message": f"{len(rows)} timestamp(s) of series {quote(series_id)} are already in the history with a different "
                       f"value, first at {rows[TIMESTAMP].iloc[0]}; history is never rewritten: send only new "
                       "timestamps, or correct the history through a Day-0 rerun",
            "first_rows": _first_rows(rows[columns], limit)})
    gaps = {}
    for series_id, rows in new_rows.groupby(SERIES_ID, sort=True):
        if series_id not in history_end.index:
            if settings["new_series_policy"] == "quarantine":
                violations.append({
                    "rule": "unknown_series", "series_id": series_id,
                    "message": f"series {quote(series_id)} is not in the history ({len(rows)} rows); set "
                               "ingestion.new_series_policy: accept to start new series from batches",
                    "first_rows": _first_rows(rows, limit)})
                continue
            anchor = rows[TIMESTAMP].min()  # a new series accepted: its own grid
        else:
            anchor = history_start[series_id]
            early = rows[rows[TIMESTAMP] < anchor]
            if len(early):
                violations.append({
                    "rule": "before_history_start", "series_id": series_id,
                    "message": f"{len(early)} row(s) of series {quote(series_id)} lie before its history start "
                               f"{anchor}, first at {early[TIMESTAMP].min()}: the history only grows forward; "
                               "check the batch's timestamps, or rebuild the history from a Day-0 file that has them",
                    "first_rows": _first_rows(early, limit)})
        off = rows[~on_grid(pd.DatetimeIndex(rows[TIMESTAMP]), anchor, step)]
        if len(off):
            violations.append({
                "rule": "off_grid", "series_id": series_id,
                "message": f"{len(off)} row(s) of series {quote(series_id)} are off its {step.freqstr!r} grid through "
                           f"{anchor}, first at {off[TIMESTAMP].min()}; send timestamps on the grid (panel.freq)",
                "first_rows": _first_rows(off, limit)})
        if series_id not in history_end.index:
            continue
        first_new = rows[TIMESTAMP].min()
        if first_new <= history_end[series_id]:
            continue  # fills a hole inside the history: no gap question
        missing_steps = len(pd.date_range(history_end[series_id], first_new, freq=step)) - 2
        gaps[series_id] = int(missing_steps)
        if missing_steps > settings["max_gap_steps"]:
            violations.append({
                "rule": "gap", "series_id": series_id,
                "message": f"series {quote(series_id)}: history ends at {history_end[series_id]} but the batch starts at "
                           f"{first_new}, {missing_steps} missing step(s) > ingestion.max_gap_steps="
                           f"{settings['max_gap_steps']}; send the missing rows first or raise max_gap_steps",
                "first_rows": _first_rows(rows, limit)})
    facts = {"rows": int(len(batch)), "duplicate_rows_ignored": int(duplicates.sum()),
             "new_rows": int(len(new_rows)), "series": sorted(batch[SERIES_ID].astype(str).unique().tolist()),
             "missing_steps_before_batch": gaps}
    return new_rows, facts, violations


def validate_incoming_batches(
    incoming_batches: dict[str, Callable],
    previous_history: pd.DataFrame,
    data_processing: dict[str, Any],
    ingestion: dict[str, Any],
    panel: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate every incoming batch file; a batch is accepted or quarantined as a whole.

    Batches are taken in file-name order and each is checked against the history extended by the batches
    accepted before it, so a batch may continue the previous one. Schema rules are data_processing's own
    (``validate_schema`` with the same ``data_processing`` parameters).

    Args:
        incoming_batches: ``{batch_id: loader}``; each loader returns a lazy CSV source.
        previous_history: history to extend (``select_previous_history``).
        data_processing: ``data_processing`` parameters (source columns and schema policies).
        ingestion: ``ingestion`` parameters (``max_gap_steps``, ``new_series_policy``, ``max_reported_rows``).
        panel: shared ``panel`` parameters (``freq``).

    Returns:
        The accepted new rows (history columns) and the ``ingestion_report``.
    """
    settings = _settings(ingestion, panel)
    history = previous_history
    accepted_frames, batches = [], []
    for batch_id in sorted(incoming_batches):
        source = incoming_batches[batch_id]()
        entry: dict[str, Any] = {"batch": batch_id, "file": str(getattr(source, "filepath", batch_id))}
        if isinstance(source, UnexpectedFile):
            # e.g. day3.CSV or notes.txt: said in the report and the log, left where it is
            entry |= {"status": IGNORED, "violations": [
                {"rule": "file_name", "series_id": None, "message": source.reason, "first_rows": []}]}
            batches.append(entry)
            logger.warning("incoming file %s ignored: %s", source.filepath, source.reason)
            continue
        try:
            batch, schema_facts = validate_schema(source, data_processing)
        except DataProcessingConfigError:
            raise  # the parameters are wrong, not the batch: quarantining every batch would hide that
        except SchemaError as error:
            entry |= {"status": QUARANTINED, "violations": [
                {"rule": "schema", "series_id": None, "message": str(error), "first_rows": []}]}
            batches.append(entry)
            logger.warning("batch %s quarantined: %s", batch_id, error)
            continue
        except Exception as error:  # noqa: BLE001 - one unreadable file must never block the drop folder
            message = f"{entry['file']} could not be read ({type(error).__name__}: {quote(str(error), 300)})"
            entry |= {"status": QUARANTINED, "violations": [
                {"rule": "unreadable", "series_id": None, "message": message, "first_rows": []}]}
            batches.append(entry)
            logger.warning("batch %s quarantined: %s", batch_id, message, exc_info=True)
            continue
        new_rows, facts, violations = check_continuity(batch, history, panel["freq"], settings)
        entry |= {"schema": {k: schema_facts.get(k) for k in ("rows_read", "timestamp_format", "non_numeric",
                                                             "rows_out_of_order", "duplicate_rows")}, **facts}
        if violations:
            entry |= {"status": QUARANTINED, "violations": violations}
            logger.warning("batch %s quarantined: %s", batch_id, "; ".join(v["message"] for v in violations[:3]))
        else:
            entry |= {"status": ACCEPTED, "violations": []}
            new_rows = new_rows[list(history.columns)]
            accepted_frames.append(new_rows)
            history = _extend(history, new_rows)
            logger.info("batch %s accepted: %d new rows, %d exact duplicates ignored", batch_id,
                        facts["new_rows"], facts["duplicate_rows_ignored"])
        batches.append(entry)

    accepted = (pd.concat(accepted_frames, ignore_index=True) if accepted_frames
                else previous_history.iloc[0:0].copy())
    report = {
        "batches": batches,
        "n_batches": len(batches),
        "n_accepted": sum(b["status"] == ACCEPTED for b in batches),
        "n_quarantined": sum(b["status"] == QUARANTINED for b in batches),
        "n_ignored": sum(b["status"] == IGNORED for b in batches),
        "ignored_files": [b["file"] for b in batches if b["status"] == IGNORED],
        "rows_accepted": int(len(accepted)),
        "duplicate_rows_ignored": int(sum(b.get("duplicate_rows_ignored", 0) for b in batches)),
        "history_rows_before": int(len(previous_history)),
        "history_rows_after": int(len(previous_history) + len(accepted)),
        "history_end": _series_end(history),
        "policy": settings,
    }
    return accepted, report


def _extend(history: pd.DataFrame, new_rows: pd.DataFrame) -> pd.DataFrame:
    combined = pd.concat([history, new_rows], ignore_index=True) if len(new_rows) else history
    return combined.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)


def _series_end(history: pd.DataFrame) -> dict[str, str]:
    ends = history.groupby(SERIES_ID)[TIMESTAMP].max()
    return {str(series_id): end.isoformat() for series_id, end in ends.items()}


def append_to_history(previous_history: pd.DataFrame, accepted_rows: pd.DataFrame) -> pd.DataFrame:
    """The new history version: previous history plus the accepted rows, sorted; nothing is rewritten.

    Args:
        previous_history: history before this run.
        accepted_rows: rows of the accepted batches (keys never already in the history).

    Returns:
        ``history_panel`` (saved as a new version; earlier versions stay on disk).
    """
    clash = accepted_rows.merge(previous_history[[SERIES_ID, TIMESTAMP]], on=[SERIES_ID, TIMESTAMP])
    if len(clash):
        raise HistoryIntegrityError(
            f"{len(clash)} accepted row(s) already exist in the history, first ({quote(clash[SERIES_ID].iloc[0])}, "
            f"{clash[TIMESTAMP].iloc[0]}): validate_incoming_batches must drop them; nothing was saved"
        )
    history = _extend(previous_history, accepted_rows.astype(previous_history.dtypes.to_dict()))
    history.attrs["source_file"] = "history_panel (this run's version)"
    logger.info("history: %d rows (+%d), %d series", len(history), len(accepted_rows), history[SERIES_ID].nunique())
    return history


def plan_batch_moves(ingestion_report: dict[str, Any], history_panel: pd.DataFrame) -> dict[str, Any]:
    """Which file goes where, once the saved history is checked to hold what was accepted.

    Taking ``history_panel`` as input makes this run only after the new history version is saved, so an
    accepted file is archived only when its rows are safely in the history.

    Returns:
        ``{"archive": [batch_id, ...], "quarantine": {batch_id: report}}`` for ``batch_file_moves``.
    """
    if len(history_panel) != ingestion_report["history_rows_after"]:
        raise HistoryIntegrityError(
            f"saved history_panel has {len(history_panel)} rows but {ingestion_report['history_rows_after']} were "
            "expected; batch files are left in data/01_raw/incoming for the next run"
        )
    saved_end = _series_end(history_panel)
    behind = {s: end for s, end in ingestion_report["history_end"].items() if saved_end.get(s, "") < end}
    if behind:
        raise HistoryIntegrityError(f"saved history_panel ends before the accepted rows for series {sorted(behind)[:5]}; "
                                    "batch files are left in place")
    archive = [b["batch"] for b in ingestion_report["batches"] if b["status"] == ACCEPTED]
    quarantine = {b["batch"]: {**b, "quarantined_because": sorted({v["rule"] for v in b["violations"]})}
                  for b in ingestion_report["batches"] if b["status"] == QUARANTINED}
    return {"archive": archive, "quarantine": quarantine}
