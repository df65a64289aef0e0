"""The interval test of the Day-N verdict: false alarms on clean real batches, detection of injected changes.

The verdict's interval test (``ts_kedro.pipelines.monitoring.performance.interval_exceedance`` and
``verdict._interval_verdict``) says drift when the arrived actuals leave the champion's calibrated intervals
significantly more often than their level allows. This script measures it the way
``benchmarks/drift_calibration.py`` measures the data-drift designs, on the same panels, series, cutoffs and
injected changes (it imports that script's data functions), with a champion in place of the drift windows:

1. at each cutoff, the history before the batch is the champion's training data; the family (``--families``,
   default seasonal naive and Theta: the replay's) is backtested and fitted by the training pipeline's own nodes
   (``backtest_model``, ``fit_model``, which calibrates its intervals conformally on that backtest, with the
   shipped ``backtest`` block of ``conf/base/parameters_training.yml``) and forecasts the batch;
2. the batch is the real next horizon (clean), and at every ``--inject-every``-th cutoff also the same batch with
   one synthetic change from its first step (``day_n_replay.inject``: level shift, trend, variance, seasonal shape);
3. ``measure_performance_drift`` scores the forecasts on the batch and ``summarise_drift`` gives the verdict with
   the shipped thresholds, at several test sizes ``interval_p_value`` (``--alphas``), the data-drift part left out,
   with the tail tests (``thresholds.interval_tails: true``, shipped) and without them (the two-sided share only,
   ``interval_two_sided`` in the JSON).

A drift verdict on a clean batch is a false alarm; on a changed batch a detection. The error-ratio rule
(``thresholds.performance_ratio``, realized MASE over the backtest's) is counted beside it.

    TQDM_DISABLE=1 nice -n 10 .venv/bin/python benchmarks/interval_drift_check.py --alphas 0.01,0.02,0.05  # 5 panels, < 3 min
    nice -n 10 .venv/bin/python benchmarks/interval_drift_check.py --datasets nn5_daily --families theta
    .venv/bin/python benchmarks/interval_drift_check.py --report

Output: ``benchmarks/results/interval_drift_check.json`` and markdown tables on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from day_n_replay import CHANGE_KINDS  # noqa: E402
from drift_calibration import RUNS, cutoff_history, primary_panel, with_change  # noqa: E402

from ts_kedro.frequency import profile_for_panel  # noqa: E402
from ts_kedro.pipelines.monitoring.performance import measure_performance_drift  # noqa: E402
from ts_kedro.pipelines.monitoring.verdict import summarise_drift  # noqa: E402
from ts_kedro.pipelines.training.nodes import backtest_model, fit_model  # noqa: E402

SERIES_ID, TIMESTAMP = "series_id", "timestamp"
CONF = ROOT / "conf" / "base"
RESULTS = ROOT / "benchmarks" / "results" / "interval_drift_check.json"
CLEAN = "clean"
NO_DATA_DRIFT = {"drift_share": 0.0, "drifted_series": [], "n_series": 0, "feature_drift_share": {}, "panel_level": {}}


def champion_forecasts(history: pd.DataFrame, family: str, panel_params: dict[str, Any],
                       backtest_params: dict[str, Any]) -> pd.DataFrame:
    """The family fitted on ``history`` with intervals calibrated on its backtest, forecasting the next horizon,
    with the columns inference saves (``champion_metric``, ``champion_backtest_score``: the backtest MASE)."""
    from ts_kedro.evaluation.backtest import evaluate_backtest

    spec = {"name": family, "class": family, "hyperparameters": {}}
    backtest, _ = backtest_model(history, spec, panel_params, backtest_params)
    _, forecasts, _ = fit_model(history, spec, panel_params, backtest_params, backtest)
    _, means = evaluate_backtest(backtest, history, int(panel_params["season_length"]))
    mase = float(means.get("mase", float("nan")))
    return forecasts.assign(champion_metric="mase", champion_backtest_score=mase)


def run_dataset(dataset: str, n_series: int, n_cutoffs: int, families: list[str], alphas: list[float],
                inject_every: int) -> dict[str, Any]:
    started = time.process_time()
    primary, panel_params = primary_panel(dataset, n_series)
    horizon = panel_params["horizon"]
    monitoring = yaml.safe_load((CONF / "parameters_monitoring.yml").read_text())["monitoring"]
    backtest_params = yaml.safe_load((CONF / "parameters_training.yml").read_text())["backtest"]
    rows = []
    for cutoff in range(1, n_cutoffs + 1):
        history = cutoff_history(primary, cutoff, horizon)
        before = history[history.groupby(SERIES_ID).cumcount(ascending=False) >= horizon].reset_index(drop=True)
        profile = profile_for_panel(history, panel_params)
        params = {**panel_params, "season_length": profile.season_length}
        variants = (CLEAN, *CHANGE_KINDS) if (cutoff - 1) % inject_every == 0 else (CLEAN,)
        for family in families:
            try:
                forecasts = champion_forecasts(before, family, params, backtest_params)
            except Exception as error:  # noqa: BLE001 - a family that cannot take the panel is counted
                rows.append({"cutoff": cutoff, "family": family, "error": f"{type(error).__name__}: {error}"})
                continue
            for variant in variants:
                seed = cutoff * 5 + (0 if variant == CLEAN else 1 + CHANGE_KINDS.index(variant))
                batch = history if variant == CLEAN else with_change(history, variant, horizon,
                                                                     profile.season_length, seed)
                performance = measure_performance_drift(forecasts, batch, monitoring, params)
                verdicts, two_sided = {}, {}
                for alpha in alphas:
                    for tails, out in ((True, verdicts), (False, two_sided)):
                        thresholds = {**monitoring["thresholds"], "interval_p_value": alpha,
                                      "performance_ratio": float("inf"), "interval_tails": tails}
                        out[str(alpha)] = bool(summarise_drift(NO_DATA_DRIFT, performance,
                                                               {**monitoring, "thresholds": thresholds})["drift"])
                ratio = performance.get("ratio")
                rows.append({"cutoff": cutoff, "family": family, "variant": variant, "interval": verdicts,
                             "interval_two_sided": two_sided,
                             "ratio": ratio, "ratio_drift": bool(ratio is not None
                                                                 and ratio > monitoring["thresholds"]["performance_ratio"]),
                             "exceedance": performance.get("interval_exceedance")})
        print(f"{dataset}: cutoff {cutoff}/{n_cutoffs} done ({time.process_time() - started:.0f} s CPU)", flush=True)
    return {"dataset": dataset, "freq": panel_params["freq"], "horizon": horizon, "n_series": n_series,
            "cutoffs": n_cutoffs, "families": families, "alphas": alphas, "rows": rows,
            "cpu_s": round(time.process_time() - started, 1)}


def _rate(values: list[bool]) -> str:
    return f"{np.mean(values):.2f} ({len(values)})" if values else "–"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| panel | family | rule | false alarms (clean batches) | " + " | ".join(f"detected: {k}" for k in CHANGE_KINDS)
             + " |", "|---|---|---|---|" + "---|" * len(CHANGE_KINDS)]
    for result in results:
        for family in result["families"]:
            rows = [r for r in result["rows"] if r["family"] == family and "error" not in r]
            errors = sum(1 for r in result["rows"] if r["family"] == family and "error" in r)
            rules = [(f"interval test, p < {alpha}", lambda r, a=str(alpha): r["interval"][a]) for alpha in result["alphas"]]
            if all("interval_two_sided" in r for r in rows):  # results from before the tail tests lack it
                rules += [(f"two-sided interval test only, p < {alpha}",
                           lambda r, a=str(alpha): r["interval_two_sided"][a]) for alpha in result["alphas"]]
            rules.append(("error ratio > 1.5", lambda r: r["ratio_drift"]))
            for name, flagged in rules:
                clean = [flagged(r) for r in rows if r["variant"] == CLEAN]
                found = [_rate([flagged(r) for r in rows if r["variant"] == kind]) for kind in CHANGE_KINDS]
                note = f" ({errors} cutoffs failed)" if errors else ""
                lines.append(f"| {result['dataset']} | {family}{note} | {name} | {_rate(clean)} | " + " | ".join(found) + " |")
    lines += ["", "The verdict's performance part before (error ratio alone) and with the interval test added (either "
              "rule says drift); mean over panels and families:", "",
              "| rule | false alarms, mean | false alarms added by the interval test, worst panel | detection, mean of all changes |",
              "|---|---|---|---|"]
    two_sided = all("interval_two_sided" in r for result in results for r in result["rows"] if "error" not in r)
    for alpha, key in [(None, None), *[(a, "interval_two_sided") for a in results[0]["alphas"] if two_sided],
                       *[(a, "interval") for a in results[0]["alphas"]]]:
        false_alarms, added, detection = [], [], []
        for result in results:
            for family in result["families"]:
                rows = [r for r in result["rows"] if r["family"] == family and "error" not in r]
                interval = (lambda r: False) if alpha is None else (lambda r, a=str(alpha), k=key: r[k][a])
                clean = [r for r in rows if r["variant"] == CLEAN]
                false_alarms.append(np.mean([r["ratio_drift"] or interval(r) for r in clean]))
                added.append(np.mean([interval(r) and not r["ratio_drift"] for r in clean]))
                detection.append(np.mean([np.mean([r["ratio_drift"] or interval(r) for r in rows if r["variant"] == kind])
                                          for kind in CHANGE_KINDS]))
        test = "two-sided interval test" if key == "interval_two_sided" else "interval test"
        name = "error ratio > 1.5" if alpha is None else f"error ratio > 1.5 or {test} p < {alpha}"
        lines.append(f"| {name} | {np.mean(false_alarms):.3f} | {max(added):.3f} | {np.mean(detection):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(RUNS))
    parser.add_argument("--families", default="seasonal_naive,theta")
    parser.add_argument("--alphas", default="0.01,0.05")
    parser.add_argument("--inject-every", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="print the tables of the saved results only")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads(RESULTS.read_text())["results"]))
        return
    results = []
    for dataset in args.datasets.split(","):
        n_series, n_cutoffs = RUNS[dataset]
        results.append(run_dataset(dataset, n_series, n_cutoffs, args.families.split(","),
                                   [float(a) for a in args.alphas.split(",")], args.inject_every))
    RESULTS.write_text(json.dumps({"command": " ".join(["benchmarks/interval_drift_check.py", *(argv or sys.argv[1:])]),
                                   "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1, default=str))
    print(markdown(results))


if __name__ == "__main__":
    main()
