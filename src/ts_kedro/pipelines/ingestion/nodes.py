"""Nodes of ingestion: validate Day-N batch files against the schema and the history, then extend the history."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import fsspec
import pandas as pd

from ts_kedro.datasets.history_index import HistoryIndex, as_history_index
from ts_kedro.pipelines.data_processing.errors import DataProcessingConfigError, SchemaError
from ts_kedro.pipelines.data_processing.frequency import on_grid
from ts_kedro.pipelines.data_processing.nodes import validate_schema
from ts_kedro.pipelines.data_processing.schema import SERIES_ID, TIMESTAMP, quote
from ts_kedro.pipelines.ingestion.batch_files import UnexpectedFile
from ts_kedro.pipelines.ingestion.retention import retention_policy

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


def select_previous_history(validated_panel: pd.DataFrame | Callable[[], pd.DataFrame],
                            stored_history: pd.DataFrame | HistoryIndex | None) -> pd.DataFrame | HistoryIndex:
    """The history to extend: the history store's content, or the Day-0 validated panel before the first Day-N run.

    Args:
        validated_panel: Day-0 schema-checked panel (seed of the history, never modified), or a function that
            loads it (a partition-by-partition run loads it only when the store is empty).
        stored_history: ``history_panel_previous`` (the append-only store, read side): the history frame, or its
            ``HistoryIndex`` (``load_as: index``, the shipped setting: bounds and keyed rows by query, so the
            history is never held whole); empty when the store does not exist yet.

    Returns:
        The previous history, sorted by ``series_id, timestamp``; the store's ``HistoryIndex`` as it is.
    """
    seeded = stored_history is None or len(stored_history) == 0
    if not seeded and isinstance(stored_history, HistoryIndex):
        logger.info("extending the history store's %d rows of %d series (checked by query, not loaded)",
                    len(stored_history), len(stored_history.bounds))
        stored_history.attrs.update(source_file="history_panel (append-only history store)", seeded_from_day0=False)
        return stored_history
    if callable(validated_panel):
        validated_panel = validated_panel() if seeded else pd.DataFrame()
    if seeded:
        logger.info("history store is empty: seeding the history with the Day-0 validated_panel")
        history = validated_panel
    else:
        logger.info("extending the history store's %d rows", len(stored_history))
        history = stored_history
    history = history.copy()
    history[SERIES_ID] = history[SERIES_ID].astype(str)
    if not seeded and TIMESTAMP in validated_panel and history[TIMESTAMP].dtype != validated_panel[TIMESTAMP].dtype:
        history[TIMESTAMP] = history[TIMESTAMP].astype(validated_panel[TIMESTAMP].dtype)  # the store keeps us
    history = history.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    history.attrs["source_file"] = (
        f"the Day-0 validated_panel of {validated_panel.attrs.get('source_file', 'raw_panel')}" if seeded
        else "history_panel (append-only history store)")
    history.attrs["seeded_from_day0"] = seeded
    return history


def _first_rows(frame: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    rows = frame.head(limit).copy()
    for column in rows.columns:
        if pd.api.types.is_datetime64_any_dtype(rows[column]):
            rows[column] = rows[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return rows.astype(object).where(rows.notna(), None).to_dict(orient="records")


def _continuity_screen(new_rows: pd.DataFrame, history_start: pd.Series, history_end: pd.Series, step,
                       settings: dict[str, Any]) -> tuple[dict[str, int], pd.Series, pd.Series, set]:
    """``check_continuity``'s per-series rules evaluated on the whole batch at once: the missing steps before
    each known series' first new row (``gaps``, in series order), per row whether it lies before its series'
    history start (``early``) or off its grid (``off``), and the series that break a rule (unknown, early, off
    the grid, a gap above ``max_gap_steps``), which alone are then worded one by one.

    One pandas selection per series took 25 s for 20,000 series; gap lengths are computed once per distinct
    (history end, first new timestamp), as a batch holds few distinct timestamps.
    """
    if new_rows.empty:
        empty = pd.Series(False, index=new_rows.index)
        return {}, empty, empty, set()
    ids, stamps = new_rows[SERIES_ID], new_rows[TIMESTAMP]
    known = ids.isin(history_end.index)
    starts = ids.map(history_start)
    early = known & (stamps < starts)
    # a new series (accepted by policy) has its own grid, through its first new timestamp
    anchors = starts.where(known, new_rows.groupby(SERIES_ID, sort=False)[TIMESTAMP].transform("min"))
    off = pd.Series(~on_grid(pd.DatetimeIndex(stamps), anchors.to_numpy(), step), index=new_rows.index)
    firsts = new_rows.groupby(SERIES_ID, sort=True)[TIMESTAMP].min()
    ends = history_end.reindex(firsts.index)
    spans: dict[tuple, int] = {}
    gaps = {}
    for series_id, first_new in firsts[(firsts > ends).to_numpy()].items():  # a hole inside the history: no gap
        key = (ends[series_id], first_new)
        if key not in spans:
            spans[key] = len(pd.date_range(ends[series_id], first_new, freq=step)) - 2
        gaps[series_id] = int(spans[key])
    suspects = set(ids[~known | early | off]) | {sid for sid, n in gaps.items() if n > settings["max_gap_steps"]}
    return gaps, early, off, suspects


def check_continuity(
    batch: pd.DataFrame, history: pd.DataFrame | HistoryIndex, freq: str, settings: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Compare one validated batch with the history, series by series.

    Rules: a timestamp already in the history must carry the same value (exact duplicates are dropped and
    counted; a different value is an ``overlap_conflict``); a new timestamp must not lie before the series'
    history start (``before_history_start``: the history only grows forward, and a batch 10 years early grew it
    fivefold) and must lie on the series' ``freq`` grid through its first timestamp (``off_grid``: a :30 row in
    an hourly series would quarantine it as irregular in every later run); the first new timestamp may follow
    the history end by at most ``max_gap_steps`` missing steps (``gap``); a series unknown to the history is
    accepted or is an ``unknown_series`` violation, per ``new_series_policy``.

    The history is read through its ``HistoryIndex``: per-series bounds and the stored rows at the batch's keys
    only, so a history frame and the store's index give the same answer.

    Returns:
        The rows new to the history, counts, and the list of violations (empty when the batch is valid).
    """
    history = as_history_index(history)
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

    stored = history.rows_at(batch[keys])[shared_columns]
    if len(stored) and stored[TIMESTAMP].dtype != batch[TIMESTAMP].dtype:
        stored[TIMESTAMP] = stored[TIMESTAMP].astype(batch[TIMESTAMP].dtype)
    merged = batch.merge(stored, on=keys, how="left", suffixes=("", "_history"), indicator=True)
    known = merged["_merge"] == "both"
    value_columns = [c for c in shared_columns if c not in keys]
    same = pd.Series(True, index=merged.index)
    for column in value_columns:
        left, right = merged[column], merged[f"{column}_history"]
        same &= (left == right) | (left.isna() & right.isna())
    duplicates = known & same
    conflicts = known & ~same
    new_rows = batch.loc[~known.to_numpy()]

    history_end, history_start = history.bounds["end"], history.bounds["start"]
    for series_id, rows in merged.loc[conflicts].groupby(SERIES_ID, sort=True):
        columns = [*keys, *[x for c in value_columns for x in (c, f"{c}_history")]]
        violations.append({
            "rule": "overlap_conflict", "series_id": series_id,
            "message": f"{len(rows)} timestamp(s) of series {quote(series_id)} are already in the history with a different "
                       f"value, first at {rows[TIMESTAMP].iloc[0]}; history is never rewritten: send only new "
                       "timestamps, or correct the history through a Day-0 rerun",
            "first_rows": _first_rows(rows[columns], limit)})
    gaps, early, off, suspects = _continuity_screen(new_rows, history_start, history_end, step, settings)
    for series_id, rows in new_rows[new_rows[SERIES_ID].isin(suspects)].groupby(SERIES_ID, sort=True):
        known = series_id in history_end.index
        if not known and settings["new_series_policy"] == "quarantine":
            violations.append({
                "rule": "unknown_series", "series_id": series_id,
                "message": f"series {quote(series_id)} is not in the history ({len(rows)} rows); set "
                           "ingestion.new_series_policy: accept to start new series from batches",
                "first_rows": _first_rows(rows, limit)})
            continue
        anchor = history_start[series_id] if known else rows[TIMESTAMP].min()
        for rule, mask, fault, remedy in (
            ("before_history_start", early, f"lie before its history start {anchor}",
             ": the history only grows forward; check the batch's timestamps, or rebuild the history from a Day-0 "
             "file that has them"),
            ("off_grid", off, f"are off its {step.freqstr!r} grid through {anchor}",
             "; send timestamps on the grid (panel.freq)"),
        ):
            flagged = rows[mask[rows.index].to_numpy()]
            if len(flagged):
                violations.append({
                    "rule": rule, "series_id": series_id,
                    "message": f"{len(flagged)} row(s) of series {quote(series_id)} {fault}, first at "
                               f"{flagged[TIMESTAMP].min()}{remedy}",
                    "first_rows": _first_rows(flagged, limit)})
        if gaps.get(series_id, 0) > settings["max_gap_steps"]:
            violations.append({
                "rule": "gap", "series_id": series_id,
                "message": f"series {quote(series_id)}: history ends at {history_end[series_id]} but the batch starts at "
                           f"{rows[TIMESTAMP].min()}, {gaps[series_id]} missing step(s) > ingestion.max_gap_steps="
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
    history = as_history_index(previous_history)
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
            batch, schema_facts = validate_schema(source, data_processing, panel)
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
            entry |= {"status": ACCEPTED, "violations": [], "sha256": _file_sha256(source)}
            new_rows = new_rows[list(history.columns)]
            accepted_frames.append(new_rows)
            history = history.extended(new_rows)
            logger.info("batch %s accepted: %d new rows, %d exact duplicates ignored", batch_id,
                        facts["new_rows"], facts["duplicate_rows_ignored"])
        batches.append(entry)

    accepted = (pd.concat(accepted_frames, ignore_index=True) if accepted_frames
                else as_history_index(previous_history).empty_frame())
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
        "history_end": history.series_end(),
        "policy": settings,
    }
    return accepted, report


def _file_sha256(source: Any) -> str | None:
    """sha256 of a batch file's bytes (what the history store records, and retention checks before deleting)."""
    if not getattr(source, "filepath", None):
        return None
    digest = hashlib.sha256()
    with fsspec.open(source.filepath, mode="rb", **getattr(source, "storage_options", {})) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _extend(history: pd.DataFrame, new_rows: pd.DataFrame) -> pd.DataFrame:
    combined = pd.concat([history, new_rows], ignore_index=True) if len(new_rows) else history
    return combined.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)


def _series_end(history: pd.DataFrame | HistoryIndex) -> dict[str, str]:
    return as_history_index(history).series_end()


def append_to_history(previous_history: pd.DataFrame | HistoryIndex, accepted_rows: pd.DataFrame,
                      ingestion_report: dict[str, Any] | None = None) -> pd.DataFrame:
    """The grown history: previous history plus the accepted rows, sorted; nothing is rewritten.

    Args:
        previous_history: history before this run.
        accepted_rows: rows of the accepted batches (keys never already in the history).
        ingestion_report: this run's report; its accepted files (name, sha256) go with the history so the store
            records them in the same transaction as their rows (what retention checks before deleting a file).

    Returns:
        ``history_panel``: the append-only store keeps the rows it does not hold yet as one new batch (the Day-0
        seed too, on the first run), so a retried run stores nothing twice. With the store's ``HistoryIndex`` as
        the previous history, only the accepted rows (the store appends exactly those; nothing is read whole).
    """
    indexed = isinstance(previous_history, HistoryIndex)
    clash = as_history_index(previous_history).rows_at(accepted_rows[[SERIES_ID, TIMESTAMP]])
    if len(clash):
        raise HistoryIntegrityError(
            f"{len(clash)} accepted row(s) already exist in the history, first ({quote(clash[SERIES_ID].iloc[0])}, "
            f"{clash[TIMESTAMP].iloc[0]}): validate_incoming_batches must drop them; nothing was saved"
        )
    typed = accepted_rows.astype(previous_history.dtypes.to_dict())
    history = (typed.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True) if indexed
               else _extend(previous_history, typed))
    accepted = [b for b in (ingestion_report or {}).get("batches", []) if b.get("status") == ACCEPTED]
    names = ", ".join(str(b["file"]).rsplit("/", 1)[-1] for b in accepted) or "no new batch"
    seed = f"Day-0 {previous_history.attrs.get('source_file', 'validated_panel')} + " \
        if previous_history.attrs.get("seeded_from_day0") else ""
    history.attrs["source"] = f"ingestion: {seed}{names}"
    history.attrs["files"] = [{"file": b["file"], "sha256": b["sha256"]} for b in accepted if b.get("sha256")]
    history.attrs["source_file"] = "history_panel (this run)"
    if indexed:
        logger.info("history: %d rows (+%d new rows to append)", len(previous_history) + len(accepted_rows),
                    len(accepted_rows))
    else:
        logger.info("history: %d rows (+%d), %d series", len(history), len(accepted_rows),
                    history[SERIES_ID].nunique())
    return history


def plan_batch_moves(ingestion_report: dict[str, Any], history_panel: pd.DataFrame | HistoryIndex) -> dict[str, Any]:
    """Which file goes where, once the saved history is checked to hold what was accepted.

    Taking ``history_panel`` as input makes this run only after the history is saved and read back from the
    store, so an accepted file is archived only when its rows are safely in the history.

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


def plan_retention(batch_file_moves: list[dict[str, Any]], ingestion: dict[str, Any]) -> tuple[dict, dict]:
    """The retention policies for this run's end (``retention.py``); the datasets do and check the deletions.

    Args:
        batch_file_moves: the move log, loaded after this run's moves are saved (so retention runs after them).
        ingestion: ``ingestion`` parameters (``retention`` block).

    Returns:
        ``raw_batch_retention`` (archive and quarantine policy) and ``model_version_retention`` (registry policy).
    """
    policy = retention_policy(ingestion.get("retention"))
    logger.info("retention: %d file move(s) logged so far; archive %s, quarantine %s, registry %s",
                len(batch_file_moves), policy["archive"], policy["quarantine"], policy["models"])
    return {"archive": policy["archive"], "quarantine": policy["quarantine"]}, policy["models"]


def finish_ingestion_report(batch_report: dict[str, Any], raw_batch_retention: dict[str, Any],
                            model_version_retention: dict[str, Any]) -> dict[str, Any]:
    """``ingestion_report``: the batch checks plus what retention removed (and kept, and why).

    Returns:
        The report of ``validate_incoming_batches`` with a ``retention`` block.
    """
    raw = raw_batch_retention or {}
    models = model_version_retention or {}
    return {**batch_report, "retention": {
        "archive_files_removed": [r["file"] for r in raw.get("archive_files_removed", [])],
        "archive_files_kept": raw.get("archive_files_kept", []),
        "quarantine_folders_removed": [r["folder"] for r in raw.get("quarantine_folders_removed", [])],
        "bytes_removed": raw.get("bytes_removed", 0),
        "model_versions": {k: models.get(k) for k in ("status", "deleted", "would_delete", "keep", "message")
                           if k in models},
    }}
