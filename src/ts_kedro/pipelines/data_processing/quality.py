"""Per-series facts for screening and the data-quality report (lengths, gaps, constancy)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ts_kedro.pipelines.data_processing.schema import IS_ANOMALY, IS_IMPUTED, SERIES_ID, TIMESTAMP, VALUE


def series_profile(panel: pd.DataFrame) -> pd.DataFrame:
    """Rows, observed values, first/last timestamp and constancy of every series of a validated panel."""
    grouped = panel.groupby(SERIES_ID, sort=True, observed=True)
    profile = pd.DataFrame({
        "rows": grouped.size(),
        "observed": grouped[VALUE].count(),
        "start": grouped[TIMESTAMP].min(),
        "end": grouped[TIMESTAMP].max(),
        "distinct_values": grouped[VALUE].nunique(),
    })
    profile["is_constant"] = profile["distinct_values"] == 1
    return profile


def gap_statistics(primary: pd.DataFrame) -> pd.DataFrame:
    """Per series: grid length, missing points, number of gaps (runs of missing points) and the longest gap."""
    missing = (primary[IS_IMPUTED] | primary[VALUE].isna()).to_numpy()
    ids = primary[SERIES_ID].to_numpy()
    new_series = np.r_[True, ids[1:] != ids[:-1]]
    run_start = missing & (new_series | ~np.r_[False, missing[:-1]])
    run_id = np.cumsum(run_start)
    runs = pd.DataFrame({SERIES_ID: ids[missing], "run": run_id[missing]})
    run_lengths = runs.groupby([SERIES_ID, "run"], sort=False).size()
    grouped = primary.groupby(SERIES_ID, sort=True)
    stats = pd.DataFrame({"grid_length": grouped.size(),
                          "missing": pd.Series(missing, index=primary.index).groupby(ids).sum(),
                          "imputed": grouped[IS_IMPUTED].sum(),
                          "anomalies": grouped[IS_ANOMALY].sum()})
    by_series = run_lengths.groupby(level=SERIES_ID)
    stats["gaps"] = by_series.size().reindex(stats.index, fill_value=0)
    stats["longest_gap"] = by_series.max().reindex(stats.index, fill_value=0)
    return stats


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``columns`` from ``rows`` (None shown as '–')."""
    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)
