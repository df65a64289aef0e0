"""Series whose training part ends on a flagged anomaly: does the future continue from it, or from before it?

data_processing flags points whose seasonal residual is extreme (``flag_anomalies``); the families impute a
flagged run only once the series has come back from it (``forecasters/anomalies.py``), so a run still open at the
end of the history is forecast from as observed: a glitch there (M3 quarterly N802 ends on 126 after values near
7,500, and its test part is back near 7,500) costs every family, a new level there is what the forecast needs.
This measures which is the more common on real panels: for every series ending on a flagged run, whether the
median of its test part lies closer to the run's last value or to the last value before the run. Data
processing's own nodes with the shipped ``conf/base`` settings, on the matrix datasets' training parts.

    .venv/bin/python benchmarks/end_anomalies.py                          # the panels below
    .venv/bin/python benchmarks/end_anomalies.py m3_quarterly,m4_hourly

One line per dataset on stdout.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matrix  # noqa: E402
from anomaly_treatment_check import SETTINGS  # noqa: E402

from ts_kedro.pipelines.data_processing.nodes import flag_anomalies, impute_missing  # noqa: E402

PANELS = ["m3_yearly", "m3_quarterly", "m3_monthly", "nn5_daily", "ansett_weekly", "ilinet_weekly", "m4_hourly",
          "carparts", "stallion_monthly", "bike_daily"]


def check(name: str) -> str:
    load, freq, horizon, _ = matrix.DATASETS[name]
    train, test = load()
    params = {"freq": freq, "horizon": horizon}
    settings = yaml.safe_load(SETTINGS.read_text())["data_processing"]
    panel = flag_anomalies(impute_missing(train.sort_values(["series_id", "timestamp"]).reset_index(drop=True),
                                          params, settings), params, settings)
    ending = panel.groupby("series_id").tail(1)
    ending = ending.loc[ending["is_anomaly"], "series_id"]
    closer_flagged = closer_before = 0
    for series_id in ending:
        rows = panel[panel["series_id"] == series_id]
        flags, values = rows["is_anomaly"].to_numpy(), rows["value"].to_numpy(float)
        run = len(flags) - int(np.argmin(flags[::-1])) if not flags.all() else len(flags)  # the trailing flagged run
        future = test.loc[test["series_id"] == series_id, "value"].dropna().to_numpy(float)
        if run == len(flags) or not future.size:
            continue
        median = np.median(future)
        if abs(median - values[-1]) < abs(median - values[-run - 1]):
            closer_flagged += 1
        else:
            closer_before += 1
    return (f"{name}: {panel['series_id'].nunique()} series, {int(panel['is_anomaly'].sum())} flagged points, "
            f"{len(ending)} series end on a flagged point; the test median is closer to that last value in "
            f"{closer_flagged}, to the value before the run in {closer_before}")


if __name__ == "__main__":
    for dataset in (sys.argv[1].split(",") if len(sys.argv) > 1 else PANELS):
        print(check(dataset), flush=True)
