"""Drift calibration: false alarms of the Day-N data-drift verdict on clean real data, and detection of injected
(synthetic) changes, for several monitoring designs, all run through the product's own monitoring functions.

One engine: for each real panel (``benchmarks/matrix.py``'s loaders) the series are put on their grid and imputed
by the data_processing nodes (``regularise_index``, ``impute_missing``, ``flag_anomalies``,
``conform_primary_panel``), then a cutoff slides back from the end one horizon at a time. At each cutoff the
history up to it plus the next real batch (one horizon) is the ``history_primary_panel`` that monitoring sees;
``build_drift_windows`` -> ``calibrate_drift_thresholds`` -> ``detect_data_drift`` -> ``summarise_drift`` run on it
as ``kedro run --pipeline day_n`` runs them, with ``params:monitoring`` = the shipped
``conf/base/parameters_monitoring.yml`` plus the overrides of each design (``CONFIGS``). The script adds only the
data loading, the cutoffs, the injected changes and the counting.

Per cutoff it runs (a) the clean batch: a drift verdict there is a false alarm (and every drifted series a false
per-series flag), and (b), at every ``--inject-every``-th cutoff, the same batch with one synthetic change from its
first step: ``level_shift`` (+1 standard deviation), ``trend_change`` (a slope reaching 0.5 sd per horizon),
``variance_change`` (noise x2) and ``seasonal_shape_change`` (the seasonal profile moved by half a season), defined
once in ``benchmarks/day_n_replay.py`` (``inject``, with each series' statistics from its history before the
batch). Detection = verdict says drift on the batch that carries the change (within one batch).

Evidently's report widgets (plotly figures, ~85% of a report's time) are not built here (``_without_widgets``):
scores, thresholds, tests and snapshots are Evidently's as in the product; ``--quick`` checks on one batch that the
results are the same with the widgets, ``--with-widgets`` builds them everywhere.

    nice -n 10 .venv/bin/python benchmarks/drift_calibration.py --quick     # ~3 min: 2 panels, 4 series, 3 cutoffs
    nice -n 10 .venv/bin/python benchmarks/drift_calibration.py             # ~20 min: 5 panels, every design
    .venv/bin/python benchmarks/drift_calibration.py --report               # tables from benchmarks/results/

Output: ``benchmarks/results/drift_calibration.json`` (``drift_calibration_quick.json`` with ``--quick``) and
markdown tables on stdout (``docs/benchmarks.md``, "Drift calibration").
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from day_n_replay import CHANGE_KINDS, LEVEL_SHIFT_SD, NOISE_FACTOR, TREND_SD_PER_HORIZON, inject, series_statistics  # noqa: E402
from matrix import DATASETS  # noqa: E402

from ts_kedro.frequency import profile_for_panel  # noqa: E402
from ts_kedro.pipelines.data_processing.nodes import (  # noqa: E402
    conform_primary_panel,
    flag_anomalies,
    impute_missing,
    regularise_index,
)
from ts_kedro.pipelines.monitoring.calibration import calibrate_drift_thresholds  # noqa: E402
from ts_kedro.pipelines.monitoring.data_drift import detect_data_drift  # noqa: E402
from ts_kedro.pipelines.monitoring.verdict import summarise_drift  # noqa: E402
from ts_kedro.pipelines.monitoring.windows import build_drift_windows  # noqa: E402

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
RESULTS = ROOT / "benchmarks" / "results"
CONF = ROOT / "conf" / "base"
CLEAN = "clean"
VARIANTS = (CLEAN, *CHANGE_KINDS)
SHARES = (0.5, 0.3)  # verdict thresholds on the share of drifted series: the shipped one and a lower one
NO_PERFORMANCE = {"available": False, "reason": "data drift only"}
# per panel: series and cutoffs (run size, not tuning: cutoffs as many as a typical history affords, up to 10;
# M3 monthly series are short, so more series and fewer cutoffs)
RUNS = {"m4_hourly": (10, 10), "nn5_daily": (10, 8), "m3_monthly": (30, 3), "ansett_weekly": (10, 10),
        "ilinet_weekly": (10, 10)}
QUICK_RUNS = {"m4_hourly": (4, 3), "nn5_daily": (4, 3)}

# The designs compared. "before": the shipped design until this change (KS p-value < 0.05 on the target, fixed;
# seasonal difference at the season; the reference window of the old profile rule). The others run on the
# windows the frequency profile derives now; "*_calibrated": each column's threshold from its own earlier windows;
# the series' seasonal difference decides, except in "*_value" (the target itself, as before).
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"data_drift": {"method": "ks", "threshold": 0.05, "series_feature": "value",
                              "calibration": {"quantile": None}}},
    "wasserstein_fixed": {"data_drift": {"method": "wasserstein", "threshold": None,
                                         "calibration": {"quantile": None}}},
    "ks_calibrated": {"data_drift": {"method": "ks", "threshold": None}},
    "wasserstein_calibrated": {"data_drift": {"method": "wasserstein", "threshold": None}},
    "wasserstein_calibrated_value": {"data_drift": {"method": "wasserstein", "threshold": None,
                                                    "series_feature": "value"}},
    "psi_calibrated": {"data_drift": {"method": "psi", "threshold": None}},
    "jensenshannon_calibrated": {"data_drift": {"method": "jensenshannon", "threshold": None}},
    # the shipped psi design, a series deciding on its seasonal difference or its short difference (lag one season)
    "psi_calibrated_short": {"data_drift": {"method": "psi", "threshold": None,
                                            "series_feature": ["seasonal_diff", "short_diff"]}},
}
QUICK_CONFIGS = ("before", "wasserstein_calibrated")


# -- data ------------------------------------------------------------------------------------------------------

def primary_panel(dataset: str, n_series: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``n_series`` series of ``dataset`` (every k-th id in sorted order among the longest half), on their grid
    and imputed by the data_processing nodes; and its ``params:panel``."""
    loader, freq, horizon, _ = DATASETS[dataset]
    train, test = loader()
    raw = pd.concat([train, test], ignore_index=True)[[SERIES_ID, TIMESTAMP, VALUE]]
    raw = raw.astype({SERIES_ID: str, VALUE: float})
    lengths = raw.dropna(subset=[VALUE]).groupby(SERIES_ID).size()
    eligible = sorted(lengths.index[lengths >= lengths.median()])
    chosen = eligible[::max(1, len(eligible) // n_series)][:n_series]
    panel_params = {"freq": freq, "horizon": int(horizon), "levels": [80, 95]}
    processing = yaml.safe_load((CONF / "parameters_data_processing.yml").read_text())["data_processing"]
    regular = regularise_index(raw[raw[SERIES_ID].isin(chosen)].sort_values([SERIES_ID, TIMESTAMP]), panel_params)
    primary = conform_primary_panel(flag_anomalies(impute_missing(regular, panel_params, processing),
                                                   panel_params, processing))
    return primary, panel_params


def cutoff_history(primary: pd.DataFrame, cutoff: int, horizon: int) -> pd.DataFrame:
    """Each series up to the end of batch ``cutoff`` (1 = its last horizon; 2 = the one before, ...)."""
    from_end = primary.groupby(SERIES_ID).cumcount(ascending=False)
    return primary[from_end >= (cutoff - 1) * horizon].reset_index(drop=True)


def with_change(history: pd.DataFrame, kind: str, horizon: int, season: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC: ``history`` with change ``kind`` injected from the first step of its last batch, every series."""
    changed = history.copy()
    rng = np.random.default_rng(seed)
    before = history[history.groupby(SERIES_ID).cumcount(ascending=False) >= horizon]
    stats = series_statistics(before, season)
    for series_id, index in changed.groupby(SERIES_ID, sort=True).groups.items():
        values = changed.loc[index, VALUE].to_numpy(float)
        changed.loc[index, VALUE] = inject(kind, values, len(values) - horizon, stats[str(series_id)], season,
                                           horizon, rng)
    return changed


# -- the product's monitoring, per design ----------------------------------------------------------------------

def monitoring_params(shipped: dict[str, Any], config: str, history: pd.DataFrame,
                      panel_params: dict[str, Any]) -> dict[str, Any]:
    """The shipped ``params:monitoring`` with the overrides of design ``config``."""
    params = copy.deepcopy(shipped)
    for key, value in CONFIGS[config].items():
        params[key] = {**params.get(key, {}), **value} if isinstance(value, dict) else value
    params["data_drift"]["calibration"] = {**shipped["data_drift"].get("calibration", {}),
                                           **CONFIGS[config]["data_drift"].get("calibration", {})}
    if config == "before":
        profile = profile_for_panel(history, panel_params, monitoring_params=params)
        params["reference_window_steps"] = reference_before(profile)
        params["seasonal_lag_steps"] = max(profile.season_length, 1)
    return params


def reference_before(profile) -> int:
    """The reference window of the profile rule before this change: two of the longest kept period a typical
    series affords before its recent window, at least four horizons, never more than it has."""
    recent = profile.monitoring["recent_window_steps"]
    budget = int(profile.lengths["median"]) - recent
    wanted = [2 * p for p in profile.seasonal_periods if 2 * p <= budget]
    return int(min(max(math.ceil(max(wanted, default=0.0)), 4 * profile.horizon), max(budget, 2)))


def run_monitoring(history: pd.DataFrame, params: dict[str, Any], panel_params: dict[str, Any]) -> dict[str, Any]:
    """build_drift_windows -> calibrate_drift_thresholds -> detect_data_drift -> summarise_drift (per share)."""
    reference, current = build_drift_windows(history, params, panel_params)
    thresholds = calibrate_drift_thresholds(history, params, panel_params)
    data_drift, _, _ = detect_data_drift(reference, current, thresholds, params)
    verdicts = {share: summarise_drift(data_drift, NO_PERFORMANCE,
                                       {**params, "thresholds": {**params["thresholds"], "drift_share": share}})
                for share in SHARES}
    return {"n_series": data_drift["n_series"], "drifted": len(data_drift["drifted_series"]),
            "drift_share": data_drift["drift_share"], "sources": data_drift["calibration"]["columns_by_source"],
            "verdict": {str(share): bool(v["drift"]) for share, v in verdicts.items()},
            "reference_rows": data_drift["reference_rows"], "current_rows": data_drift["current_rows"],
            "data_drift": data_drift}


@contextlib.contextmanager
def _without_widgets(enabled: bool = True) -> Iterator[None]:
    """Evidently's reports without their plotly widgets (scores, tests and snapshots unchanged)."""
    if not enabled:
        yield
        return
    from evidently.metrics.column_statistics import ValueDriftCalculation
    from evidently.presets.drift import DataDriftPreset

    saved = ValueDriftCalculation._render, DataDriftPreset.render
    ValueDriftCalculation._render = lambda self, *args, **kwargs: []
    DataDriftPreset.render = lambda self, *args, **kwargs: []
    try:
        yield
    finally:
        ValueDriftCalculation._render, DataDriftPreset.render = saved


def check_widgets_change_nothing(history: pd.DataFrame, params: dict[str, Any], panel_params: dict[str, Any]) -> None:
    with _without_widgets(True):
        fast = run_monitoring(history, params, panel_params)["data_drift"]
    full = run_monitoring(history, params, panel_params)["data_drift"]
    if json.dumps(fast, sort_keys=True, default=str) != json.dumps(full, sort_keys=True, default=str):
        raise AssertionError("results differ without Evidently's widgets: run with --with-widgets")
    print("checked: the same data_drift with and without Evidently's widgets", flush=True)


# -- the run ---------------------------------------------------------------------------------------------------

def run_dataset(dataset: str, n_series: int, n_cutoffs: int, configs: tuple[str, ...], inject_every: int,
                widgets: bool, check: bool) -> dict[str, Any]:
    started = time.process_time()
    primary, panel_params = primary_panel(dataset, n_series)
    horizon = panel_params["horizon"]
    shipped = yaml.safe_load((CONF / "parameters_monitoring.yml").read_text())["monitoring"]
    rows = []
    for cutoff in range(1, n_cutoffs + 1):
        history = cutoff_history(primary, cutoff, horizon)
        profile = profile_for_panel(history, panel_params)
        variants = VARIANTS if (cutoff - 1) % inject_every == 0 else (CLEAN,)
        for variant in variants:
            seed = cutoff * len(VARIANTS) + VARIANTS.index(variant)  # deterministic per batch
            panel = history if variant == CLEAN else with_change(history, variant, horizon, profile.season_length, seed)
            for config in configs:
                params = monitoring_params(shipped, config, panel, panel_params)
                if check and not rows:
                    check_widgets_change_nothing(panel, params, panel_params)
                tic = time.process_time()
                try:
                    with _without_widgets(not widgets):
                        outcome = run_monitoring(panel, params, panel_params)
                except Exception as error:  # noqa: BLE001 - a design that cannot check this panel is counted
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                outcome.pop("data_drift", None)
                rows.append({"cutoff": cutoff, "variant": variant, "config": config,
                             "cpu_s": round(time.process_time() - tic, 2), "history_rows": int(len(history)),
                             "windows": profile_for_panel(panel, panel_params,
                                                          monitoring_params=params).monitoring, **outcome})
        print(f"{dataset}: cutoff {cutoff}/{n_cutoffs} done ({time.process_time() - started:.0f} s CPU)", flush=True)
    return {"dataset": dataset, "freq": panel_params["freq"], "horizon": horizon,
            "series": sorted(primary[SERIES_ID].unique()), "cutoffs": n_cutoffs, "inject_every": inject_every,
            "rows": rows, "summary": summarise(rows, configs), "cpu_s": round(time.process_time() - started, 1)}


def _rate(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict[str, Any]], configs) -> dict[str, Any]:
    """Per design: false-alarm rate of the verdict (clean batches) and of per-series flags; detection per change."""
    out = {}
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        ok = [r for r in mine if "error" not in r]
        entry = {"errors": len(mine) - len(ok), "cpu_s": round(sum(r["cpu_s"] for r in mine), 1)}
        clean = [r for r in ok if r["variant"] == CLEAN]
        entry["clean_batches"] = len(clean)
        entry["series_false_flag_rate"] = (sum(r["drifted"] for r in clean) / sum(r["n_series"] for r in clean)
                                           if clean and sum(r["n_series"] for r in clean) else None)
        for share in SHARES:
            entry[f"false_alarm_rate@{share}"] = _rate([r["verdict"][str(share)] for r in clean])
            entry[f"detection@{share}"] = {kind: _rate([r["verdict"][str(share)] for r in ok if r["variant"] == kind])
                                           for kind in CHANGE_KINDS}
        entry["series_detection_rate"] = {
            kind: (sum(r["drifted"] for r in ok if r["variant"] == kind)
                   / max(1, sum(r["n_series"] for r in ok if r["variant"] == kind))) for kind in CHANGE_KINDS}
        entry["changed_batches"] = sum(r["variant"] == CHANGE_KINDS[0] for r in ok)
        out[config] = entry
    return out


# -- tables ----------------------------------------------------------------------------------------------------

def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    lines = []
    configs = list(next(iter(result["datasets"].values()))["summary"])
    short = {"level_shift": "level", "trend_change": "trend", "variance_change": "variance",
             "seasonal_shape_change": "seasonal shape"}
    for share in SHARES:
        lines += [f"Verdict: drift when more than {share:.0%} of the series drifted"
                  f"{' (shipped)' if share == SHARES[0] else ''}.", "",
                  "| panel | design | false alarms (clean batches) | false series flags | "
                  + " | ".join(f"detected: {short[k]}" for k in CHANGE_KINDS) + " |",
                  "|---|---|---|---|" + "---|" * len(CHANGE_KINDS)]
        for dataset, block in result["datasets"].items():
            for config in configs:
                entry = block["summary"][config]
                detection = entry[f"detection@{share}"]
                lines.append(f"| {dataset} | {config} | {_fmt(entry[f'false_alarm_rate@{share}'])} "
                             f"({entry['clean_batches']}) | {_fmt(entry['series_false_flag_rate'])} | "
                             + " | ".join(_fmt(detection[k]) for k in CHANGE_KINDS) + " |")
        lines.append("")
        lines += ["All panels together (mean of the per-panel rates; worst panel's false-alarm rate):", "",
                  "| design | false alarms, mean | false alarms, worst panel | detection, mean of all changes |",
                  "|---|---|---|---|"]
        for config in configs:
            entries = [b["summary"][config] for b in result["datasets"].values()]
            alarms = [e[f"false_alarm_rate@{share}"] for e in entries if e[f"false_alarm_rate@{share}"] is not None]
            detections = [e[f"detection@{share}"][k] for e in entries for k in CHANGE_KINDS
                          if e[f"detection@{share}"][k] is not None]
            lines.append(f"| {config} | {_fmt(_rate(alarms) if alarms else None)} | "
                         f"{_fmt(max(alarms) if alarms else None)} | {_fmt(_rate(detections) if detections else None)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 panels, 4 series, 3 cutoffs, 2 designs")
    parser.add_argument("--datasets", help="comma-separated panels (default: all of RUNS)")
    parser.add_argument("--configs", help=f"comma-separated designs (default: all of {list(CONFIGS)})")
    parser.add_argument("--inject-every", type=int, default=2, help="inject changes at every k-th cutoff")
    parser.add_argument("--with-widgets", action="store_true", help="build Evidently's report widgets too")
    parser.add_argument("--report", action="store_true", help="print the tables of the saved results only")
    args = parser.parse_args(argv)
    path = RESULTS / ("drift_calibration_quick.json" if args.quick else "drift_calibration.json")
    if args.report:
        print(markdown(json.loads(path.read_text())))
        return
    runs = QUICK_RUNS if args.quick else RUNS
    datasets = args.datasets.split(",") if args.datasets else list(runs)
    configs = tuple(args.configs.split(",")) if args.configs else (QUICK_CONFIGS if args.quick else tuple(CONFIGS))
    started = time.process_time()
    result = {"command": "benchmarks/drift_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "injection": {"level_shift_sd": LEVEL_SHIFT_SD, "trend_sd_per_horizon": TREND_SD_PER_HORIZON,
                            "noise_factor": NOISE_FACTOR, "synthetic": True},
              "shares": list(SHARES), "configs": {c: CONFIGS[c] for c in configs}, "datasets": {}}
    for dataset in datasets:
        n_series, n_cutoffs = runs.get(dataset, RUNS.get(dataset, (10, 10)))
        result["datasets"][dataset] = run_dataset(dataset, n_series, n_cutoffs, configs, args.inject_every,
                                                  args.with_widgets, check=args.quick and dataset == datasets[0])
    result["cpu_s"] = round(time.process_time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    print(markdown(result))
    print(f"written {path.relative_to(ROOT)} ({result['cpu_s']:.0f} s CPU)")


if __name__ == "__main__":
    main()
