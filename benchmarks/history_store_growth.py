"""Storage of the history over Day-N cycles: the append-only DuckDB store against the versioned Parquet copies.

Day 0 is every series of a real long panel (default: all 414 M4 Hourly training series) minus its last
``--cycles`` x ``--step`` points; each cycle then brings the next ``--step`` points of every series and saves the
grown history, as the ingestion node does. Two stores side by side:

- ``DuckDBHistoryDataset`` (``src/ts_kedro/datasets/history_store.py``): each save appends the new rows only (the shipped ``history_panel`` since issue 12);
- the versioned Parquet ``history_panel`` it replaced (one full copy per cycle): its size is written every
  ``--parquet-every`` cycles and interpolated in between (writing all 200 copies costs minutes, not insight).

Prints the store size after Day 0 and at the end, the raw CSV size of the final history, their ratio (the issue's
target: under 3x after 200 cycles), the Parquet total and the mean seconds per append::

    .venv/bin/python benchmarks/history_store_growth.py                  # M4 Hourly, 200 cycles of 1 point
    .venv/bin/python benchmarks/history_store_growth.py --data ../shared/data/nn5/nn5_long.csv --cycles 100
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "m4_hourly" / "Hourly-train-long.csv"


def main() -> None:
    from ts_kedro.datasets.history_store import DuckDBHistoryDataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--step", type=int, default=1, help="new points per series per cycle")
    parser.add_argument("--parquet-every", type=int, default=20)
    args = parser.parse_args()

    panel = pd.read_csv(args.data, parse_dates=["timestamp"])[["series_id", "timestamp", "value"]]
    panel = panel.astype({"series_id": str, "value": float}).sort_values(["series_id", "timestamp"])
    from_end = panel.groupby("series_id").cumcount(ascending=False).to_numpy()
    held = args.cycles * args.step
    with tempfile.TemporaryDirectory(prefix="history_store_") as scratch:
        store_path = Path(scratch) / "history.duckdb"
        store = DuckDBHistoryDataset(str(store_path))
        seconds, parquet_points = [], {}
        for cycle in range(args.cycles + 1):
            history = panel[from_end >= held - cycle * args.step]
            started = time.perf_counter()
            store.save(history)
            if cycle:
                seconds.append(time.perf_counter() - started)
            else:
                day0_bytes = store_path.stat().st_size
            if cycle % args.parquet_every == 0 or cycle == args.cycles:
                copy = Path(scratch) / f"copy_{cycle}.parquet"
                history.to_parquet(copy)
                parquet_points[cycle] = copy.stat().st_size
                copy.unlink()
        cycles = np.arange(args.cycles + 1)
        parquet_total = float(np.interp(cycles, list(parquet_points), list(parquet_points.values())).sum())
        final_bytes = store_path.stat().st_size
        raw_bytes = len(history.to_csv(index=False).encode())
        batches = len(store.batches())
    mb = 1024 ** 2
    print(f"{args.data.name}: {panel['series_id'].nunique()} series, {args.cycles} cycles of {args.step} point(s) "
          f"per series, {batches} batches stored\n")
    print("| store after Day 0 | store after last cycle | raw CSV of the final history | store / raw | "
          "versioned Parquet, all copies | mean s per append |")
    print("|---|---|---|---|---|---|")
    print(f"| {day0_bytes / mb:.2f} MB | {final_bytes / mb:.2f} MB | {raw_bytes / mb:.2f} MB | "
          f"{final_bytes / raw_bytes:.2f} | {parquet_total / mb:.0f} MB | {np.mean(seconds):.3f} |")


if __name__ == "__main__":
    main()
