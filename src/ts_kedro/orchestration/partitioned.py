"""Partition-by-partition runs: data processing and features (Day 0) and inference (Day N), a chunk of series at a time.

Why: a Kedro node receives its input whole, so ``kedro run`` holds the whole panel in memory, several times
over inside data processing. Every step of these stages works series by series, so the panel can be cut
into partitions of whole series, each run through the **same Kedro nodes** with the same parameters, and the
partitions' outputs joined afterwards: peak memory then follows the partition, not the panel
(``benchmarks/partitioned_memory.py`` measures it).

How, for ``pipeline``:

- ``data_processing``: the raw CSV (``raw_panel``) is read twice in bounded chunks: once for the series ids and
  their observed values (the plan), once to copy each row, as text, into its partition's CSV. Partitions are
  ranges of series ids in string order, balanced by rows; a series never spans two.
- ``feature_engineering``: the primary panel (Parquet) is read partition by partition through a Parquet filter
  on the series range. The feature families' origin-horizon rows (``<family>_model_input``, e.g. lightgbm) are
  then built once from the whole panel (their row budget samples origins across all series, and training reads
  them whole anyway).
- ``inference``: the history store (``history_panel``, DuckDB) is read partition by partition through its
  ``series_range`` (a query); each partition goes through the history's data processing (namespace
  ``history``) and the champion's forecast node (the champion is read from the registry once for all partitions). The rest of the inference pipeline (metrics to MLflow,
  latency alerts) then runs once, in a normal Kedro session, on the joined summary.
- ``ingestion`` (Day N, before ``inference``) is not cut into partitions: its work is the incoming batches.
  ``run_bounded_ingestion`` runs the ingestion pipeline's own nodes up to ``ingestion_report`` in a normal Kedro
  session, with the history store read as a ``HistoryIndex`` (``history_load_as=index``: per-series bounds and
  the stored rows at the batch's keys, by query) and the Day-0 ``validated_panel`` loaded only if the store is
  empty (``defer_validated_panel``), so memory follows the batch and the series count. It stops before the
  history's data processing, which the partitioned ``inference`` that follows runs partition by partition (and
  joins into ``history_primary_panel``).

The frequency profile depends on the panel's lengths (kept seasonal periods, LSTM lookback), so it is derived
once from the plan (each series' span on the grid in the raw file or the history store; values per series of
the primary panel) and pinned as ``panel.*`` runtime parameters for every partition: no partition derives its
own. The calendar features (chosen from the longest series' span) are pinned the same way.

Outputs: each persisted output of the partition pipeline is written per partition under
``<work_dir>/<pipeline>/part-NNNN/`` and joined into its catalog entry only after every partition succeeded
(Parquet panels streamed row group by row group into a temporary file, then renamed; JSON lists concatenated;
the data-quality report and the inference summary merged; forecasts saved through the catalog, versioned). A
failing partition stops the run with its number and files named, and leaves every catalog output as it was.
The work folder is deleted after a successful run unless ``keep_partitions``.

Not a scheduler: partitions run one after another in this process (their per-series work still goes to the
``orchestration.per_series`` cluster when one is configured).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PARTITIONED_PIPELINES = ("data_processing", "feature_engineering", "ingestion", "inference")


class PartitionedRunError(RuntimeError):
    """A partition-by-partition run could not be planned, a partition failed, or outputs could not be joined."""


@dataclass(frozen=True)
class PartitionPlan:
    """Ranges of series ids (inclusive, string order) with their row counts.

    ``firsts[k]``/``lasts[k]``: the first and last id of partition k; ``rows[k]``: its rows; ``observed``: the
    length per series of the whole source (index in string order) from which the frequency profile is pinned.
    """

    firsts: list[str]
    lasts: list[str]
    rows: list[int]
    observed: pd.Series = field(repr=False)

    @property
    def count(self) -> int:
        return len(self.firsts)

    def assign(self, ids: np.ndarray) -> np.ndarray:
        """Partition number of each id (ids as strings)."""
        return np.searchsorted(np.asarray(self.firsts, dtype=object), ids, side="right") - 1


def plan_partitions(rows_per_series: pd.Series, rows_per_partition: int, observed: pd.Series | None = None
                    ) -> PartitionPlan:
    """Cut series (index: ids, values: rows) into ranges of whole series in string order, about
    ``rows_per_partition`` rows each (a series longer than that is a partition of its own)."""
    if int(rows_per_partition) < 1:
        raise PartitionedRunError(f"rows_per_partition must be a positive integer, got {rows_per_partition!r} "
                                  "(orchestration.partitioned.rows_per_partition or --rows-per-partition)")
    counts = rows_per_series.copy()
    counts.index = counts.index.astype(str)
    counts = counts.sort_index()
    if counts.empty:
        raise PartitionedRunError("the source holds no rows: nothing to partition")
    ids, sizes = counts.index.to_numpy(object), counts.to_numpy(np.int64)
    firsts, lasts, rows = [], [], []
    start, total = 0, 0
    for position, size in enumerate(sizes):  # one pass over series counts (not rows)
        if total and total + size > rows_per_partition:
            firsts.append(ids[start]), lasts.append(ids[position - 1]), rows.append(int(total))
            start, total = position, 0
        total += size
    firsts.append(ids[start]), lasts.append(ids[-1]), rows.append(int(total))
    return PartitionPlan(firsts, lasts, rows, counts if observed is None else observed.sort_index())


# -- the raw CSV (Day 0) ----------------------------------------------------------------------------------------
def plan_csv(source, id_column: str, timestamp_column: str, target_column: str, timestamp_format,
             freq: str, chunk_size: int, rows_per_partition: int) -> PartitionPlan:
    """Read the id, timestamp and target columns in chunks: rows per series (for the partitions) and each
    series' length on the ``freq`` grid from its first to its last observed value (for the profile: what data
    processing hands the profile after imputation)."""
    from ts_kedro.pipelines.data_processing.schema import _to_datetime, resolve_timestamp_format

    header = source.header()
    for column in (id_column, timestamp_column, target_column):
        if column not in header:
            raise PartitionedRunError(f"{source.filepath}: no column {column!r} (columns: {header}); set "
                                      "data_processing.source in conf/<env>/parameters_data_processing.yml")
    rows: list[pd.Series] = []
    spans: list[pd.DataFrame] = []
    fmt = None
    for chunk in source.chunks(chunk_size, usecols=[id_column, timestamp_column, target_column], dtype=str,
                               keep_default_na=False):
        ids = chunk[id_column]
        rows.append(ids.value_counts(sort=False))
        observed = chunk[chunk[target_column].str.strip() != ""]
        fmt = fmt or resolve_timestamp_format(chunk[timestamp_column], timestamp_format, str(source.filepath),
                                              timestamp_column)
        stamps = _to_datetime(observed[timestamp_column], fmt)  # unparseable: NaT here, refused by the partition
        if isinstance(stamps.dtype, pd.DatetimeTZDtype):
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        spans.append(pd.DataFrame({"id": observed[id_column].to_numpy(), "t": stamps.to_numpy()})
                     .groupby("id", sort=False)["t"].agg(["min", "max"]))
    counts = pd.concat(rows).groupby(level=0, sort=False).sum() if rows else pd.Series(dtype=np.int64)
    span = (pd.concat(spans).groupby(level=0, sort=False).agg({"min": "min", "max": "max"}) if spans
            else pd.DataFrame(columns=["min", "max"]))
    lengths = grid_lengths(span["min"], span["max"], freq).reindex(counts.index, fill_value=0)
    return plan_partitions(counts.astype(np.int64), rows_per_partition, lengths)


def plan_parquet(filepath: str, rows_per_partition: int, batch_rows: int = 1_000_000
                 ) -> tuple[PartitionPlan, pd.Timedelta | None]:
    """Rows and observed values per series of a canonical panel Parquet file (``primary_panel``), read
    ``batch_rows`` rows at a time and three columns only, and the longest series' span (first to last row). The
    observed counts are what the profile of that panel counts (``profile_for_panel``: values per series), and
    the span is what the calendar features are chosen from, so both pins are the whole run's exactly."""
    import pyarrow.parquet as pq

    rows: list[pd.Series] = []
    observed: list[pd.Series] = []
    spans: list[pd.DataFrame] = []
    for batch in pq.ParquetFile(filepath).iter_batches(batch_size=batch_rows,
                                                       columns=["series_id", "timestamp", "value"]):
        frame = batch.to_pandas()
        ids = frame["series_id"].astype(str)
        rows.append(ids.value_counts(sort=False))
        observed.append(ids[frame["value"].notna()].value_counts(sort=False))
        spans.append(frame["timestamp"].groupby(ids, sort=False).agg(["min", "max"]))
    if not rows:
        raise PartitionedRunError(f"{filepath} holds no rows: nothing to partition")
    counts = pd.concat(rows).groupby(level=0, sort=False).sum()
    values = pd.concat(observed).groupby(level=0, sort=False).sum().reindex(counts.index, fill_value=0)
    span = pd.concat(spans).groupby(level=0, sort=False).agg({"min": "min", "max": "max"})
    from ts_kedro.pipelines.feature_engineering.calendar import capped_span

    longest = capped_span(span["min"], span["max"]) if len(span) else None
    return plan_partitions(counts.astype(np.int64), rows_per_partition, values.astype(np.int64)), longest


def pinned_feature_params(feature_params: dict[str, Any], freq: str, longest_span: pd.Timedelta | None
                          ) -> dict[str, Any]:
    """The calendar features the whole panel's longest series supports (``_calendar_spec``'s rule), unless
    configured: a partition of short series would otherwise drop the yearly terms."""
    from ts_kedro.pipelines.feature_engineering import calendar

    settings = feature_params.get("calendar") or {}
    if settings.get("features") is not None or longest_span is None:
        return {}
    features = calendar.select_features(freq, longest_span + calendar.step_length(freq),
                                        float(settings.get("min_cycles", 2)))
    return {"calendar": {"features": list(features)}}


def grid_lengths(first: pd.Series, last: pd.Series, freq: str) -> pd.Series:
    """Points of the ``freq`` grid from ``first`` to ``last`` (both included) per series; 0 where unknown."""
    from pandas.tseries import offsets

    from ts_kedro.frequency import normalise_freq

    offset = normalise_freq(freq)
    known = first.notna() & last.notna()
    out = pd.Series(0, index=first.index, dtype=np.int64)
    if not known.any():
        return out
    a, b = first[known], last[known]
    if isinstance(offset, offsets.Tick):
        out[known] = ((b - a) // pd.Timedelta(offset)).astype(np.int64) + 1
        return out
    pairs = pd.DataFrame({"a": a, "b": b})
    unique = pairs.drop_duplicates()
    sizes = {(x, y): len(pd.date_range(x, y, freq=offset)) for x, y in unique.itertuples(index=False)}
    out[known] = [sizes[(x, y)] for x, y in pairs.itertuples(index=False)]
    return out


_ROW_SKIPPING_ARGS = {"skiprows", "skipfooter", "header", "names", "comment", "nrows", "skip_blank_lines"}


def split_csv(source, id_column: str, plan: PartitionPlan, out_dir: Path, chunk_size: int) -> list[Path]:
    """Copy each data row, as text, into the CSV of its partition (the header line first, byte for byte).

    Rows keep their order within a series (duplicate policies such as keep_first see the same order). Rows with
    more fields than the header keep their surplus fields, so the partition's own schema check refuses them.
    Beside each ``part-NNNN.csv``, ``part-NNNN.rows`` holds the original data-row number of each of its rows
    (int64), so the report's line numbers can name the original file's lines (``OriginalLines``).
    """
    from ts_kedro.pipelines.data_processing.schema import _SURPLUS

    refused = sorted(set(source.read_args) & _ROW_SKIPPING_ARGS)
    if refused:
        raise PartitionedRunError(f"raw_panel load_args {refused} change which lines are rows: a partitioned run copies "
                                  "the header line and every data row, so it cannot keep them; remove them from the "
                                  "catalog entry (or run kedro run --pipeline data_processing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    sep = source._separator
    quotechar = str(source.read_args.get("quotechar", '"'))
    encoding = source._encoding
    with source._open() as handle:
        header_line = handle.readline().decode(encoding).rstrip("\r\n")
    paths = [out_dir / f"part-{k:04d}.csv" for k in range(plan.count)]
    files = [open(path, "w", encoding=encoding, newline="") for path in paths]
    row_files = [open(path.with_suffix(".rows"), "wb") for path in paths]
    try:
        for handle in files:
            handle.write(header_line + "\n")
        for chunk in source.chunks(chunk_size, surplus_columns=_SURPLUS, dtype=str, keep_default_na=False):
            present = [c for c in _SURPLUS if c in chunk]
            long_rows = (chunk[present] != "").any(axis=1).to_numpy() if present else np.zeros(len(chunk), bool)
            parts = plan.assign(chunk[id_column].to_numpy(object))
            normal = chunk.loc[~long_rows, [c for c in chunk.columns if c not in present]]
            for k, rows in normal.groupby(parts[~long_rows], sort=True):
                rows.to_csv(files[k], header=False, index=False, sep=sep, quotechar=quotechar, lineterminator="\n")
                row_files[k].write(rows.index.to_numpy(np.int64).tobytes())
            if long_rows.any():
                for k, rows in chunk.loc[long_rows].groupby(parts[long_rows], sort=True):
                    for number, values in zip(rows.index, rows.to_numpy(object).tolist()):
                        while values and values[-1] == "":
                            values.pop()
                        pd.DataFrame([values]).to_csv(files[k], header=False, index=False, sep=sep,
                                                      quotechar=quotechar, lineterminator="\n")
                        row_files[k].write(np.int64(number).tobytes())
    finally:
        for handle in files + row_files:
            handle.close()
    return paths


class OriginalLines:
    """Maps a file line of partition k's CSV to the line of the original file its row came from.

    Partition line -> partition data row (the partition file's own ``line_numbers``, inverted) -> original data
    row (``part-NNNN.rows``) -> original line (the original source's ``line_numbers``: quoted newlines and blank
    lines counted as the whole run counts them). Used only when a report names lines (faults found).
    """

    def __init__(self, original, partition_csvs: list[Path]):
        self.original = original
        self.partition_csvs = partition_csvs

    def __call__(self, k: int, lines: list[int]) -> list[int]:
        from ts_kedro.datasets.csv_chunk_source import CSVChunkSource

        if not lines:
            return []
        csv_path = self.partition_csvs[k]
        part = CSVChunkSource(str(csv_path), dict(self.original.read_args))
        starts = part.line_numbers(range(max(lines) - 1))  # a data row starts at least 2 lines into the file
        row_of_line = {line: row for row, line in starts.items()}
        original_rows = np.fromfile(csv_path.with_suffix(".rows"), dtype=np.int64)
        rows = [int(original_rows[row_of_line[line]]) for line in lines]
        mapping = self.original.line_numbers(rows)
        return [int(mapping[row]) for row in rows]


# -- the frequency profile, pinned ------------------------------------------------------------------------------
def pinned_panel_params(panel: dict[str, Any], observed: pd.Series, backtest: dict[str, Any] | None,
                        monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    """The length-dependent ``panel.*`` values the profile derives from the whole source (only those the
    configuration leaves null), to pass to every partition as runtime parameters."""
    from ts_kedro.frequency import derive_profile

    profile = derive_profile(panel, observed[observed > 0], backtest, monitoring)
    derived = {"season_length": profile.season_length, "seasonal_periods": list(profile.seasonal_periods),
               "lstm_input_size": profile.lstm_input_size}
    return {key: value for key, value in derived.items() if panel.get(key) is None}


# -- catalogs of one partition ------------------------------------------------------------------------------------
def partition_catalog_config(config: dict[str, dict[str, Any]], outputs: set[str], part_dir: Path,
                             source_name: str, source_override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The catalog configuration of one partition: ``source_name`` updated with ``source_override``, and every
    persisted output moved into ``part_dir`` (unversioned). An output that is not a file cannot be joined: refused."""
    config = copy.deepcopy(config)
    entry = config[source_name]
    config[source_name] = {**entry, **{key: {**entry[key], **value} if isinstance(value, dict)
                                       and isinstance(entry.get(key), dict) else value
                                       for key, value in source_override.items()}}
    for name in sorted(outputs):
        entry = config.get(name)
        if entry is None:  # a memory dataset between nodes of the partition
            continue
        if "filepath" not in entry:
            raise PartitionedRunError(f"catalog entry {name!r} ({entry.get('type')}) is written by the partitioned "
                                      "pipeline but is not a file: it cannot be written per partition")
        suffix = "".join(Path(str(entry["filepath"])).suffixes) or ".out"
        config[name] = {**entry, "filepath": str(part_dir / f"{name}{suffix}"), "versioned": False} \
            if "versioned" in entry else {**entry, "filepath": str(part_dir / f"{name}{suffix}")}
    return config


# -- joining the partitions' outputs --------------------------------------------------------------------------
def concat_parquet(paths: list[Path], target: Path, attrs: dict[str, Any] | None = None) -> int:
    """Append the row groups of ``paths`` (same columns) into ``target`` through a temporary file (renamed at the
    end: a failure leaves ``target`` as it was). Memory: one row group at a time. Categorical columns (series
    ids) differ per file: they are written with 32-bit dictionary indices, one dictionary per row group, and
    pandas reads them back as one categorical. ``attrs`` update the pandas ``attrs`` the first file carries.
    Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not paths:
        raise PartitionedRunError(f"no partition wrote {target.name}")
    schema = pq.ParquetFile(paths[0]).schema_arrow
    schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type.value_type), f.nullable)
                        if pa.types.is_dictionary(f.type) else f for f in schema],
                       metadata=dict(schema.metadata or {}))
    if attrs is not None and b"PANDAS_ATTRS" in schema.metadata:
        merged = {**json.loads(schema.metadata[b"PANDAS_ATTRS"]), **attrs}
        schema = schema.with_metadata({**schema.metadata, b"PANDAS_ATTRS": json.dumps(merged).encode()})
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partitioned.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            for path in paths:
                parquet = pq.ParquetFile(path)
                if parquet.schema_arrow.names != schema.names:
                    raise PartitionedRunError(f"{path} has columns {parquet.schema_arrow.names}, the first partition "
                                              f"{schema.names}: the partitions cannot be joined")
                for group in range(parquet.num_row_groups):
                    table = parquet.read_row_group(group)
                    writer.write_table(table.replace_schema_metadata(None).cast(schema.remove_metadata())
                                       .replace_schema_metadata(schema.metadata))
                    rows += table.num_rows
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    return rows


_SUMMED_REPORT_COUNTS = ("rows_read", "rows_validated", "rows_out_of_order", "duplicate_rows", "duplicates_dropped",
                         "points_imputed", "points_flagged_anomalous")


def merge_quality_reports(reports: list[dict[str, Any]], source_file: str,
                          original_lines: Callable[[int, list[int]], list[int]] | None = None,
                          limit: int = 5) -> tuple[dict[str, Any], str]:
    """One data-quality report from the partitions' reports: series rows in id order, counts recomputed, the
    schema's counts summed, the (pinned) profile facts taken from the first partition. Line numbers of the
    partitions' files become the original file's (``original_lines(k, lines)``), the first ``limit`` of them
    kept, as the whole run keeps them."""
    def first_lines(per_partition: list[list[int]]) -> list[Any]:
        if original_lines is None:  # no map: name the partition files' lines as such
            return [f"part-{k:04d}.csv:{line}" for k, lines in enumerate(per_partition) for line in lines][:limit]
        return sorted(line for k, lines in enumerate(per_partition) for line in original_lines(k, lines))[:limit]

    from ts_kedro.pipelines.data_processing.nodes import render_quality_table

    rows = sorted((row for report in reports for row in report["series"]), key=lambda row: str(row["series_id"]))
    first = reports[0]["summary"]
    summaries = [report["summary"] for report in reports]
    summary = dict(first)
    for key in _SUMMED_REPORT_COUNTS:
        if key in first:
            summary[key] = int(sum(s.get(key) or 0 for s in summaries))
    if "non_numeric" in first:
        columns = sorted({column for s in summaries for column in (s.get("non_numeric") or {})})
        summary["non_numeric"] = {column: {
            "count": int(sum((s.get("non_numeric") or {}).get(column, {}).get("count", 0) for s in summaries)),
            "first_lines": first_lines([(s.get("non_numeric") or {}).get(column, {}).get("first_lines", [])
                                        for s in summaries])} for column in columns}
    for key in ("first_out_of_order_lines", "first_duplicate_lines"):
        if key in first:
            summary[key] = first_lines([s.get(key) or [] for s in summaries])
    if "sorted_by_pipeline" in first:
        summary["sorted_by_pipeline"] = any(s.get("sorted_by_pipeline") for s in summaries)
    reasons = pd.Series([r["reason"] for r in rows if r["reason"]], dtype=object).value_counts()
    summary |= {
        "file": source_file,
        "series_total": len(rows),
        "series_ok": sum(r["status"] == "ok" for r in rows),
        "series_quarantined": sum(r["status"] == "quarantined" for r in rows),
        "quarantine_reasons": {str(k): int(v) for k, v in reasons.items()},
        "series_unvalidated": sum(r.get("backtest_windows") == 0 for r in rows),
        "family_coverage": {family: sum(r.get("families", {}).get(family) == "ok" for r in rows)
                            for family in first.get("family_coverage", {})},
        "partitions": len(reports),
    }
    for key in ("season_length", "seasonal_periods", "backtest", "panel_freq", "horizon", "min_length"):
        differing = {json.dumps(report["summary"].get(key), default=str) for report in reports}
        if len(differing) > 1:
            raise PartitionedRunError(f"partitions derived different {key} ({sorted(differing)}): the profile was "
                                      f"not pinned; set panel.{key} in conf/<env>/parameters.yml")
    return {"summary": summary, "series": rows}, render_quality_table(summary, rows)


def merge_feature_manifests(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """One feature manifest: the feature groups and spec must be the partitions' same ones (the spec is derived
    from the pinned profile); rows left NaN are summed."""
    first = manifests[0]
    for k, manifest in enumerate(manifests[1:], start=1):
        for key in ("groups", "features", "spec", "target"):
            if manifest.get(key) != first.get(key):
                raise PartitionedRunError(f"feature partition {k} derived other {key} than partition 0 "
                                          f"({manifest.get(key)!r} vs {first.get(key)!r}): the partitions cannot "
                                          "be joined; set the feature_engineering parameters explicitly")
    nan_rows = {group: int(sum(m["nan_rows"].get(group, 0) for m in manifests)) for group in first["nan_rows"]}
    return {**first, "nan_rows": nan_rows}


def merge_inference_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One inference summary: counts and seconds summed, the forecast span's ends, refitted families joined."""
    merged = dict(summaries[0])
    for key in ("n_series", "rows", "load_seconds", "condition_seconds", "predict_seconds", "latency_seconds"):
        merged[key] = sum(summary[key] for summary in summaries)
    merged["new_steps"] = max(summary["new_steps"] for summary in summaries)
    modes = sorted({summary["conditioning"] for summary in summaries})
    merged["conditioning"] = modes[0] if len(modes) == 1 else "+".join(modes)
    merged["refitted_families"] = {k: v for summary in summaries for k, v in summary["refitted_families"].items()}
    merged["refitted_series"] = {}
    for summary in summaries:  # partitions hold disjoint series: a family's refitted series are joined
        for family, series in summary.get("refitted_series", {}).items():
            merged["refitted_series"].setdefault(family, {}).update(series)
    merged["forecast_start"] = min(summary["forecast_start"] for summary in summaries)
    merged["forecast_end"] = max(summary["forecast_end"] for summary in summaries)
    merged["partitions"] = len(summaries)
    return merged


# -- the run ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionedStage:
    """What a partitioned pipeline reads, runs per partition, and how each persisted output is joined."""

    source: str
    partition_nodes: Callable[[dict], Any]  # registered pipelines -> the Pipeline run per partition
    tail_nodes: Callable[[dict], Any]       # registered pipelines -> the Pipeline run once afterwards (or empty)
    joins: dict[str, str]                   # output -> parquet | json_list | quality_report | quality_table | ...


def _stages() -> dict[str, PartitionedStage]:
    from kedro.pipeline import Pipeline

    def inference_part(pipelines: dict) -> Any:
        history = pipelines["ingestion"].only_nodes_with_namespaces(["history"])
        return history + pipelines["inference"].to_outputs("champion_forecasts", "inference_summary")

    def inference_tail(pipelines: dict) -> Any:
        return pipelines["inference"] - pipelines["inference"].to_outputs("champion_forecasts", "inference_summary")

    def features_part(pipelines: dict) -> Any:
        return pipelines["feature_engineering"] - _model_input_nodes(pipelines)

    return {
        "feature_engineering": PartitionedStage(
            source="primary_panel", partition_nodes=features_part, tail_nodes=_model_input_nodes,
            joins={"feature_panel": "parquet", "series_decomposition": "parquet",
                   "feature_manifest": "feature_manifest"}),
        "data_processing": PartitionedStage(
            source="raw_panel", partition_nodes=lambda pipelines: pipelines["data_processing"],
            tail_nodes=lambda pipelines: Pipeline([]),
            joins={"validated_panel": "parquet", "primary_panel": "parquet", "series_quarantine": "json_list",
                   "data_quality_report": "quality_report", "data_quality_table": "quality_table"}),
        "inference": PartitionedStage(
            source="history_panel", partition_nodes=inference_part, tail_nodes=inference_tail,
            joins={"history_primary_panel": "parquet", "history_series_quarantine": "json_list",
                   "history_future_covariates": "frames", "champion_forecasts": "frames",
                   "inference_summary": "inference_summary"}),
    }


def _model_input_nodes(pipelines: dict) -> Any:
    """The feature families' origin-horizon rows (``<family>_model_input``): built once from the whole panel,
    because their row budget samples origins across all series, and training reads them whole anyway."""
    from kedro.pipeline import Pipeline

    fe = pipelines["feature_engineering"]
    return Pipeline([node for node in fe.nodes if any(out.endswith("_model_input") for out in node.outputs)])


def run_partitioned(pipeline: str, project_path: str | Path | None = None, env: str | None = None,
                    runtime_params: dict[str, Any] | None = None, rows_per_partition: int | None = None,
                    keep_partitions: bool | None = None) -> dict[str, Any]:
    """Run ``pipeline`` (data_processing or inference) partition by partition; see the module docstring.

    Returns a summary: partitions, rows and series per partition, seconds per partition and for the joins,
    the pinned panel parameters, and the catalog outputs written.
    """
    from kedro.framework.project import pipelines as registered
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.io import DataCatalog
    from kedro.runner import SequentialRunner

    from ts_kedro.orchestration.config import load_orchestration_config
    from ts_kedro.orchestration.per_series_cluster import per_series_cluster

    pinned_features: dict[str, Any] = {}
    if pipeline == "ingestion":
        return run_bounded_ingestion(project_path, env, runtime_params)
    if pipeline not in PARTITIONED_PIPELINES:
        raise PartitionedRunError(f"pipeline {pipeline!r} cannot run partition by partition; choose one of "
                                  f"{list(PARTITIONED_PIPELINES)}")
    stage = _stages()[pipeline]
    project_path = Path(project_path or Path.cwd()).resolve()
    bootstrap_project(project_path)
    orchestration = load_orchestration_config(project_path, env)
    settings = orchestration.partitioned
    rows_per_partition = int(rows_per_partition or settings.rows_per_partition)
    keep = settings.keep_partitions if keep_partitions is None else bool(keep_partitions)
    runtime_params = dict(runtime_params or {})
    started = time.perf_counter()

    # 1. the plan, from the source itself (bounded chunks or one query), and the profile pinned from it
    with KedroSession.create(project_path=project_path, env=env, runtime_params=runtime_params) as session:
        context = session.load_context()
        params = context.params
        catalog_now = context.catalog  # one access: the catalog property builds a new catalog each time
        source = catalog_now.get(stage.source)
        work_dir = project_path / settings.work_dir / pipeline
        if work_dir.exists():
            shutil.rmtree(work_dir)
        if pipeline == "data_processing":
            from ts_kedro.pipelines.data_processing.schema import SourceSpec

            spec = SourceSpec.from_params(params["data_processing"].get("source", {}))
            chunk_size = int(params["data_processing"].get("chunk_size", 100_000))
            lazy = source.load()
            if spec.layout == "wide":
                raise PartitionedRunError(f"{lazy.filepath} is wide (data_processing.source.layout: wide): every row "
                                          "holds every series, so no partition reads less than the whole file; "
                                          "write it long (series_id, timestamp, value) for partitioned runs")
            if spec.id_column is None:
                raise PartitionedRunError(f"{lazy.filepath} holds one series (data_processing.source.id_column is "
                                          "null): nothing to partition; use kedro run --pipeline data_processing")
            plan = plan_csv(lazy, spec.id_column, spec.timestamp_column, spec.target_column,
                            spec.clock(params["panel"]), str(params["panel"]["freq"]), chunk_size, rows_per_partition)
        elif pipeline == "feature_engineering":
            path = str(catalog_now.to_config()[0][stage.source]["filepath"])
            plan, longest_span = plan_parquet(path, rows_per_partition)
            pinned_features = pinned_feature_params(params.get("feature_engineering") or {},
                                                    str(params["panel"]["freq"]), longest_span)
        else:
            counts = source.series_rows()
            plan = plan_partitions(counts["rows"], rows_per_partition,
                                   grid_lengths(counts["first"], counts["last"], str(params["panel"]["freq"])))
        pinned = pinned_panel_params(params["panel"], plan.observed, params.get("backtest"), params.get("monitoring"))
    planned = time.perf_counter()
    logger.info("%s: %d series in %d partitions of about %d rows (%.1fs); pinned %s", pipeline, len(plan.observed),
                plan.count, rows_per_partition, planned - started, pinned)
    original_lines = None
    if pipeline == "data_processing":
        csvs = split_csv(lazy, spec.id_column, plan, work_dir / "raw", chunk_size)
        part_sources = [{"filepath": str(path)} for path in csvs]
        original_lines = OriginalLines(lazy, csvs)
    elif pipeline == "feature_engineering":
        part_sources = [{"load_args": {"filters": [("series_id", ">=", first), ("series_id", "<=", last)]}}
                        for first, last in zip(plan.firsts, plan.lasts)]
    else:
        part_sources = [{"series_range": [first, last]} for first, last in zip(plan.firsts, plan.lasts)]
    split = time.perf_counter()

    # 2. every partition through the same nodes, with the pinned profile
    runtime_params = _with_pinned(runtime_params, {"panel": pinned, "feature_engineering": pinned_features})
    partitions: list[dict[str, Any]] = []
    with KedroSession.create(project_path=project_path, env=env, runtime_params=runtime_params) as session:
        project_catalog = session.load_context().catalog  # a property that builds a new catalog on each access
        config, credentials, load_versions, save_version = project_catalog.to_config()
        # the parameter datasets themselves (memory datasets: each load is a copy), not loaded values
        parameters = {name: project_catalog.get(name) for name in project_catalog.keys()
                      if name == "parameters" or name.startswith("params:")}
        part_pipeline = stage.partition_nodes(registered)
        outputs = part_pipeline.all_outputs()
        persisted = {name for name in outputs if "filepath" in config.get(name, {})}
        not_files = sorted(name for name in outputs if name in config and "filepath" not in config[name])
        if not_files:
            raise PartitionedRunError(f"outputs {not_files} of the partitioned {pipeline} are not files: they cannot "
                                      "be written per partition and joined")
        unjoined = persisted - set(stage.joins)
        if unjoined:
            raise PartitionedRunError(f"outputs {sorted(unjoined)} of the partitioned {pipeline} have no join rule")
        with per_series_cluster(orchestration.per_series, lazy=True), _champion_loaded_once(pipeline):
            for k, override in enumerate(part_sources):
                part_dir = work_dir / f"part-{k:04d}"
                part_config = partition_catalog_config(config, persisted, part_dir, stage.source, override)
                catalog = DataCatalog.from_config(part_config, credentials, load_versions, save_version)
                for name, value in parameters.items():
                    catalog[name] = value
                for name in _assign_memory(project_catalog, outputs - persisted):
                    from kedro.io import MemoryDataset

                    catalog[name] = MemoryDataset(copy_mode="assign")
                t0 = time.perf_counter()
                try:
                    SequentialRunner().run(part_pipeline, catalog)
                except Exception as err:
                    raise PartitionedRunError(
                        f"{pipeline} partition {k + 1} of {plan.count} (series {plan.firsts[k]!r} .. "
                        f"{plan.lasts[k]!r}, {plan.rows[k]} rows{_source_note(override)}) failed: "
                        f"{type(err).__name__}: {err}. Catalog outputs are unchanged; partition files kept under "
                        f"{work_dir}") from err
                partitions.append({"partition": k, "first": plan.firsts[k], "last": plan.lasts[k],
                                   "rows": plan.rows[k], "seconds": round(time.perf_counter() - t0, 3)})
                logger.info("%s partition %d/%d (%d rows) done in %.1fs", pipeline, k + 1, plan.count, plan.rows[k],
                            partitions[-1]["seconds"])
        ran = time.perf_counter()

        # 3. join into the catalog's own entries
        part_dirs = [work_dir / f"part-{k:04d}" for k in range(plan.count)]
        written = _join_outputs(stage, persisted, config, part_dirs, project_catalog,
                                source_attrs={"source_file": str(config[stage.source]["filepath"])}
                                if pipeline == "data_processing" else None,
                                original_lines=original_lines,
                                limit=int(params.get("data_processing", {}).get("max_reported_rows", 5)))
    joined = time.perf_counter()

    # 4. what runs once on the joined outputs (inference: metrics to MLflow, alerts), in a normal session
    tail = stage.tail_nodes(registered)
    if tail.nodes:
        with KedroSession.create(project_path=project_path, env=env, runtime_params=runtime_params) as session:
            session.run(pipeline_name=pipeline, node_names=[node.name for node in tail.nodes])
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {"pipeline": pipeline, "partitions": plan.count, "series": int(len(plan.observed)),
            "rows": int(sum(plan.rows)), "rows_per_partition": rows_per_partition, "pinned_panel": pinned,
            "pinned_features": pinned_features,
            "plan_seconds": round(planned - started, 3), "split_seconds": round(split - planned, 3),
            "partition_seconds": round(ran - split, 3), "join_seconds": round(joined - ran, 3),
            "total_seconds": round(time.perf_counter() - started, 3), "per_partition": partitions,
            "outputs": written, "work_dir": str(work_dir) if keep else None}


def run_bounded_ingestion(project_path: str | Path | None = None, env: str | None = None,
                          runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Day-N ingestion without holding the history (see the module docstring): the same nodes, in a normal Kedro
    session (hooks, MLflow), up to ``ingestion_report_node``.

    Returns a summary: batches accepted / quarantined / ignored, rows accepted, history rows before and after,
    seconds, and what must run next (``history_primary_panel`` is rebuilt by the partitioned inference).
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project_path = Path(project_path or Path.cwd()).resolve()
    bootstrap_project(project_path)
    params = {**(runtime_params or {}), "history_load_as": "index", "defer_validated_panel": True}
    started = time.perf_counter()
    with KedroSession.create(project_path=project_path, env=env, runtime_params=params) as session:
        session.run(pipeline_name="ingestion", to_nodes=["ingestion_report_node"])
        report = session.load_context().catalog.load("ingestion_report")
    return {"pipeline": "ingestion", "bounded": True, "partitions": 0,
            **{k: report.get(k) for k in ("n_batches", "n_accepted", "n_quarantined", "n_ignored", "rows_accepted",
                                          "history_rows_before", "history_rows_after")},
            "total_seconds": round(time.perf_counter() - started, 3),
            "next": "history_primary_panel was not rebuilt: run `python -m ts_kedro.orchestration partitioned "
                    "--pipeline inference` next (it runs the history's data processing partition by partition)"}


@contextmanager
def _champion_loaded_once(pipeline: str) -> Iterator[None]:
    """During a partitioned inference, every partition forecasts with the champion loaded by the first one (the
    registry is read once, not once per partition). Safe to share: ``update``, ``refit`` and
    ``with_future_covariates`` work on copies and leave the loaded model as it was."""
    if pipeline != "inference":
        yield
        return
    from ts_kedro.pipelines.inference import nodes

    original = nodes.load_champion_model
    loaded: dict[tuple[str, str | None], Any] = {}

    def load_once(name: str, tracking_uri: str | None = None) -> Any:
        if (name, tracking_uri) not in loaded:
            loaded[(name, tracking_uri)] = original(name, tracking_uri)
        return loaded[(name, tracking_uri)]

    nodes.load_champion_model = load_once
    try:
        yield
    finally:
        nodes.load_champion_model = original


def _with_pinned(runtime_params: dict[str, Any], pinned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The runtime parameters with the pinned values added where the user's own runtime parameters set none."""
    def merge(target: dict[str, Any], values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                merge(target.setdefault(key, {}), value)
            else:
                target.setdefault(key, value)

    params = copy.deepcopy(runtime_params)
    merge(params, {key: value for key, value in pinned.items() if value})
    return params


def _assign_memory(catalog, names: set[str]) -> list[str]:
    """Memory hand-overs the project declares ``copy_mode: assign`` (the frame itself, not a copy)."""
    assigned = []
    for name in names:
        try:
            dataset = catalog.get(name)
        except Exception:  # noqa: BLE001 - not declared: the runner's default memory dataset
            continue
        if dataset is not None and getattr(dataset, "_copy_mode", None) == "assign":
            assigned.append(name)
    return assigned


def _source_note(override: dict[str, Any]) -> str:
    return f"; rows copied to {override['filepath']}" if "filepath" in override else ""


def _join_outputs(stage: PartitionedStage, persisted: set[str], config: dict[str, dict[str, Any]],
                  part_dirs: list[Path], catalog, source_attrs: dict[str, Any] | None,
                  original_lines: Callable[[int, list[int]], list[int]] | None = None, limit: int = 5) -> list[str]:
    """Join each persisted output of the partitions into its catalog entry (see the module docstring)."""
    def part_files(name: str) -> list[Path]:
        suffix = "".join(Path(str(config[name]["filepath"])).suffixes) or ".out"
        return [d / f"{name}{suffix}" for d in part_dirs if (d / f"{name}{suffix}").exists()]

    written = []
    quality_report = None
    for name in sorted(persisted, key=lambda n: stage.joins[n] == "quality_table"):  # the table after the report
        how, files = stage.joins[name], part_files(name)
        if not files:
            continue
        if how == "parquet":
            if config[name].get("versioned"):
                raise PartitionedRunError(f"{name} is versioned: join it as frames, not streamed")
            concat_parquet(files, Path(str(config[name]["filepath"])), source_attrs)
        elif how == "frames":
            catalog.save(name, pd.concat([pd.read_parquet(f) for f in files], ignore_index=True))
        elif how == "json_list":
            catalog.save(name, [entry for f in files for entry in json.loads(f.read_text())])
        elif how == "quality_report":
            quality_report = merge_quality_reports([json.loads(f.read_text()) for f in files],
                                                   (source_attrs or {}).get("source_file", ""),
                                                   original_lines, limit)
            catalog.save(name, quality_report[0])
        elif how == "quality_table":
            if quality_report is None:
                raise PartitionedRunError("data_quality_table needs data_quality_report joined first")
            catalog.save(name, quality_report[1])
        elif how == "feature_manifest":
            catalog.save(name, merge_feature_manifests([json.loads(f.read_text()) for f in files]))
        elif how == "inference_summary":
            catalog.save(name, merge_inference_summaries([json.loads(f.read_text()) for f in files]))
        else:
            raise PartitionedRunError(f"unknown join rule {how!r} for {name}")
        written.append(name)
    return written
