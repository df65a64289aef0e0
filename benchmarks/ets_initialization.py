"""ETS initial states: estimated by maximum likelihood (shipped) vs statsmodels' heuristic initial seasonal states.

For every series of a deterministic subset of a matrix dataset, ``ets._fit_one_series`` (the family's own AICc
choice over its candidate models, nothing else changed) fits the training part twice: as shipped, where every
candidate estimates its initial level, trend and m - 1 seasonal states with the smoothing parameters, and with
``initialization_method="heuristic"`` for the seasonal candidates (statsmodels' classical-decomposition start
values; only the smoothing parameters are estimated; the AICc still counts the initial states, so the penalty is
unchanged). Reported per mode: process CPU seconds of the fits (valid on a busy machine), the MASE and sMAPE of the
point forecast on the test part, and how many series chose a seasonal model. A measurement for a decision, not a
shipped setting.

    .venv/bin/python benchmarks/ets_initialization.py m4_hourly:16:48:24 m3_monthly:48:18:12 m3_quarterly:16:8:4

(``dataset:every:horizon:season``; prints one JSON line per dataset and updates those datasets' entries in
``benchmarks/results/ets_initialization.json``, so runs of different datasets add up in one file.)
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

MODE = {"heuristic": False}
_orig_model = E.ETSSpec.model
def model(self, values):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    if MODE["heuristic"] and self.seasonal:
        return ETSModel(pd.Series(values), error=self.error, trend=self.trend, damped_trend=self.damped,
                        seasonal=self.seasonal, seasonal_periods=self.period, initialization_method="heuristic")
    return _orig_model(self, values)
E.ETSSpec.model = model

def run(name, every, h, m):
    tr, te = matrix.subset(*matrix.DATASETS[name][0](), every, None)
    out = {}
    for heur in (False, True):
        MODE["heuristic"] = heur
        cpu, mase, smape, seas = 0.0, [], [], 0
        for sid, g in tr.groupby("series_id"):
            y = g.sort_values("timestamp")["value"].to_numpy(float)
            y = y[~np.isnan(y)]
            t = te[te.series_id == sid].sort_values("timestamp")["value"].to_numpy(float)[:h]
            c0 = time.process_time()
            st = E._fit_one_series(sid, y, dict(season_length=m, criterion="aicc", allow_multiplicative=True,
                                                simulation_paths=100, random_state=0))
            cpu += time.process_time() - c0
            seas += bool(st.spec.seasonal)
            f = st.spec.model(st.values).smooth(st.params).forecast(len(t))
            ok = ~np.isnan(t)
            mm = m if len(y) > m else 1
            mase.append(metrics.mase(t[ok], np.asarray(f)[ok], y, mm))
            smape.append(metrics.smape(t[ok], np.asarray(f)[ok]))
        out["heuristic" if heur else "estimated"] = dict(cpu_s=round(cpu, 1), mase=round(float(np.nanmean(mase)), 4),
                                                        smape=round(float(np.mean(smape)), 3), seasonal_chosen=seas, n=len(mase))
    print(json.dumps({name: out}), flush=True)
    return out


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "results" / "ets_initialization.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for spec in sys.argv[1:]:
        name, every, h, m = spec.split(":")
        results[name] = {"every": int(every), "horizon": int(h), "season": int(m), **run(name, int(every), int(h), int(m))}
    out.write_text(json.dumps(results, indent=2))
