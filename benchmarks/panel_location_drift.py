"""Would a panel-level location test find the changes the per-series drift test misses? Measured, not adopted.

The shipped data-drift verdict (``docs/benchmarks.md``, "Drift calibration") tests each series on its own and
says drift when more than half of them drifted. It misses NN5's trend change (0.5 standard deviations per
horizon): in its first batch the change moves each series' seasonal difference by about a quarter of a standard
deviation, which no per-series test of 56 noisy days separates from clean batches. Pooling the series could: a
common shift of 0.18 of each series' spread, summed over 12 series, is a z of about 3.8 if the series are
independent.

The statistic, per batch, on the same features monitoring uses (``windows.series_features``: the seasonal
difference at the profile's ``seasonal_lag_steps``) and the same geometry (recent window = one horizon; earlier
windows of that length every half window back, up to 40):

- per series, the mean of the seasonal difference in each window; the recent window's mean standardised by the
  earlier windows' means (``z``);
- the panel statistic ``Z = mean(z) * sqrt(n_series)``, the same at every earlier window position (each
  standardised by the others);
- drift when ``|Z|`` of the recent window exceeds the 0.95 quantile of ``|Z|`` at the earlier positions (a
  threshold calibrated on the panel's own history, as the per-series test's is).

Data and injected (SYNTHETIC) changes as ``drift_calibration.py`` makes them: the same five real panels, series,
cutoffs and ``inject`` of ``day_n_replay.py``.

    .venv/bin/python benchmarks/panel_location_drift.py

Prints, per panel and variant, how many batches were flagged, and writes
``benchmarks/results/panel_location_drift.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from day_n_replay import CHANGE_KINDS  # noqa: E402
from drift_calibration import CONF, RUNS, cutoff_history, primary_panel, with_change  # noqa: E402

from ts_kedro.frequency import profile_for_panel  # noqa: E402
from ts_kedro.pipelines.monitoring.windows import SEASONAL_DIFF, series_features  # noqa: E402

MAX_WINDOWS = 40
QUANTILE = 0.95
MIN_POSITIONS = 6  # a series needs the recent window and at least five earlier ones


def window_means(history, panel_params, monitoring) -> list[np.ndarray]:
    """Per series: the seasonal difference's mean in the recent window (first) and in each earlier window."""
    profile = profile_for_panel(history, panel_params, monitoring_params=monitoring)
    recent = profile.monitoring["recent_window_steps"]
    stride = max(1, recent // 2)
    out = []
    for _, features in series_features(history, profile):
        x = features[SEASONAL_DIFF].to_numpy()
        means = []
        for k in range(MAX_WINDOWS + 1):
            end = len(x) if k == 0 else len(x) - recent - (k - 1) * stride
            window = x[max(end - recent, 0):end]
            window = window[np.isfinite(window)]
            if end - recent < 0 or len(window) < 2:
                break
            means.append(window.mean())
        if len(means) >= MIN_POSITIONS:
            out.append(np.array(means))
    return out


def panel_test(means: list[np.ndarray]) -> dict:
    """|Z| of the recent window against the 0.95 quantile of |Z| at the earlier positions."""
    positions = min(len(m) for m in means)
    table = np.array([m[:positions] for m in means])  # series x positions, recent first
    z = np.empty_like(table)
    for j in range(positions):
        others = np.delete(table, j, axis=1)
        z[:, j] = (table[:, j] - others.mean(axis=1)) / others.std(axis=1, ddof=1)
    statistic = z.mean(axis=0) * np.sqrt(len(means))
    threshold = float(np.quantile(np.abs(statistic[1:]), QUANTILE))
    return {"z": round(float(statistic[0]), 2), "threshold": round(threshold, 2),
            "drift": bool(abs(statistic[0]) > threshold), "positions": int(positions), "series": len(means)}


def main() -> None:
    monitoring = yaml.safe_load((CONF / "parameters_monitoring.yml").read_text())["monitoring"]
    results = {}
    for dataset, (n_series, n_cutoffs) in RUNS.items():
        primary, panel_params = primary_panel(dataset, n_series)
        horizon = panel_params["horizon"]
        rows = []
        for cutoff in range(1, n_cutoffs + 1):
            history = cutoff_history(primary, cutoff, horizon)
            season = profile_for_panel(history, panel_params).season_length
            variants = ("clean", *CHANGE_KINDS) if (cutoff - 1) % 2 == 0 else ("clean",)
            for variant in variants:
                # the seeds of drift_calibration.py, so the injected noise is the same
                seed = cutoff * (1 + len(CHANGE_KINDS)) + ("clean", *CHANGE_KINDS).index(variant)
                panel = history if variant == "clean" else with_change(history, variant, horizon, season, seed)
                means = window_means(panel, panel_params, monitoring)
                if len(means) >= 2:
                    rows.append({"cutoff": cutoff, "variant": variant, **panel_test(means)})
        results[dataset] = rows
        for variant in ("clean", *CHANGE_KINDS):
            flags = [r["drift"] for r in rows if r["variant"] == variant]
            print(f"{dataset:14s} {variant:22s} flagged {sum(flags)} of {len(flags)}", flush=True)
    out = ROOT / "benchmarks" / "results" / "panel_location_drift.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
