"""Families alone, fitted on the observed values (``anomalies: keep``) and around flagged anomalies (``impute``), on
the matrix datasets' test parts: the family-level measurement behind the ``anomalies`` default.

No selection, no backtest, no calibration (the intervals are each model's own): the training part goes through
data_processing's own gap filling and anomaly flagging nodes with the shipped ``conf/base`` settings, each family
is built as ``kedro run`` builds it (the panel's frequency profile), fitted both ways and scored by
``selection_replay.score`` (the matrix's means over series).

    .venv/bin/python benchmarks/anomaly_treatment_check.py ilinet_weekly,ansett_weekly,nn5_daily seasonal_naive,theta,ets
    .venv/bin/python benchmarks/anomaly_treatment_check.py m3_monthly seasonal_naive,theta 4   # every 4th series

One JSON line per dataset and family on stdout.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matrix  # noqa: E402
from selection_replay import score  # noqa: E402

from ts_kedro.forecasters import build_forecaster  # noqa: E402
from ts_kedro.frequency import profile_for_panel  # noqa: E402
from ts_kedro.pipelines.data_processing.nodes import flag_anomalies, impute_missing  # noqa: E402

LEVELS = [80, 95]
SETTINGS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_data_processing.yml"


def check(name: str, families: list[str], every: int = 1) -> list[dict]:
    load, freq, horizon, _ = matrix.DATASETS[name]
    train, test = load()
    if every > 1:
        kept = sorted(train["series_id"].unique())[::every]
        train, test = train[train["series_id"].isin(kept)], test[test["series_id"].isin(kept)]
    panel_params = {"freq": freq, "horizon": horizon}
    settings = yaml.safe_load(SETTINGS.read_text())["data_processing"]
    train = train.sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    train = flag_anomalies(impute_missing(train, panel_params, settings), panel_params, settings)
    profile = profile_for_panel(train, panel_params, {"n_windows": 2})
    rows = []
    for family in families:
        row = {"dataset": name, "family": family, "n_series": int(train["series_id"].nunique()),
               "flagged": int(train["is_anomaly"].sum())}
        for treatment in ("keep", "impute"):
            start = time.perf_counter()
            model = build_forecaster({"class": family, "anomalies": treatment}, freq=freq,
                                     season_length=profile.season_length,
                                     profile_defaults=profile.forecaster_defaults()).fit(train)
            result = score(model.predict(horizon, LEVELS), test, train, profile.season_length, LEVELS)
            row[treatment] = {k: round(result[k], 4) for k in ("mase", "smape", "coverage-80", "msis-95")}
            row[treatment]["wall_s"] = round(time.perf_counter() - start, 1)
            row["imputed"] = int(getattr(model, "imputed_anomalies_", 0))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    for dataset in sys.argv[1].split(","):
        check(dataset, sys.argv[2].split(","), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
