"""ETS initial states: the family's ``initialization`` modes (estimated, heuristic, auto) on real panels.

For every series of a deterministic subset of a matrix dataset, ``ets._fit_one_series`` (the family's own AICc
choice over its candidate models) fits the training part once per value of the shipped hyperparameter:
``estimated`` (every candidate estimates its initial level, trend and m - 1 seasonal states with the smoothing
parameters, R's ``ets``), ``heuristic`` (seasonal candidates of series with five or more seasons take statsmodels'
classical-decomposition start states; only the smoothing parameters are estimated; the AICc still counts the
initial states) and ``auto`` (heuristic from ``ets.HEURISTIC_FROM_SEASONS`` seasons on: the default). Reported per
mode: process CPU seconds of the fits on one BLAS thread (valid on a busy machine), the MASE and sMAPE of the
point forecast on the test part, and how many series chose a seasonal model. The numbers behind the ``auto`` rule.

    .venv/bin/python benchmarks/ets_initialization.py m4_hourly:8:48:24
    .venv/bin/python benchmarks/ets_initialization.py m3_monthly:12:18:12 m3_quarterly:8:8:4 nn5_daily:2:56:7 carparts:20:12:12

(``dataset:every:horizon:season``; prints one JSON line per dataset and updates those datasets' entries in
``benchmarks/results/ets_initialization.json``, so runs of different datasets add up in one file; the per-series
MASE of every mode, with each series' length and season, goes to ``ets_initialization_per_series.csv`` beside it.)
"""
import os
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, as in the family's joblib
    os.environ.setdefault(_var, "1")                                       # workers: CPU time is the fit's own
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matrix
from ts_kedro.forecasters import ets as E
from ts_kedro.evaluation import metrics

MODES = ("estimated", "heuristic", "auto")  # the family's ``initialization`` hyperparameter


def run(name, every, h, m):
    tr, te = matrix.subset(*matrix.DATASETS[name][0](), every, None)
    out, rows = {}, {}
    for mode in MODES:
        cpu, mase, smape, seas = 0.0, [], [], 0
        for sid, g in tr.groupby("series_id"):
            y = g.sort_values("timestamp")["value"].to_numpy(float)
            y = y[~np.isnan(y)]
            t = te[te.series_id == sid].sort_values("timestamp")["value"].to_numpy(float)[:h]
            c0 = time.process_time()
            st = E._fit_one_series(sid, y, dict(season_length=m, criterion="aicc", allow_multiplicative=True,
                                                simulation_paths=100, random_state=0, initialization=mode))
            cpu += time.process_time() - c0
            seas += bool(st.spec.seasonal)
            f = st.spec.model(st.values).smooth(st.params).forecast(len(t))
            ok = ~np.isnan(t)
            mm = m if len(y) > m else 1
            mase.append(metrics.mase(t[ok], np.asarray(f)[ok], y, mm))
            smape.append(metrics.smape(t[ok], np.asarray(f)[ok]))
            rows.setdefault(sid, {"dataset": name, "series_id": sid, "n": len(y), "season": m})[
                "mase_" + mode] = mase[-1]
        out[mode] = dict(cpu_s=round(cpu, 1), mase=round(float(np.nanmean(mase)), 4),
                         smape=round(float(np.mean(smape)), 3), seasonal_chosen=seas, n=len(mase))
    print(json.dumps({name: out}), flush=True)
    return out, list(rows.values())


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "results" / "ets_initialization.json"
    per_series = out.with_name("ets_initialization_per_series.csv")
    for spec in sys.argv[1:]:
        name, every, h, m = spec.split(":")
        scores, rows = run(name, int(every), int(h), int(m))
        # read just before writing: several invocations (one per core) may add datasets to the same files
        results = json.loads(out.read_text()) if out.exists() else {}
        results[name] = {"every": int(every), "horizon": int(h), "season": int(m), **scores}
        out.write_text(json.dumps(results, indent=2))
        table = pd.read_csv(per_series) if per_series.exists() else pd.DataFrame({"dataset": []})
        table = pd.concat([table[table["dataset"] != name], pd.DataFrame(rows)], ignore_index=True)
        table.to_csv(per_series, index=False, float_format="%.5g")
