"""Robustness sweep: the shipped ``kedro run`` on small real panels of unusual shape that the matrix does not cover.

Panels from ``../shared/data`` (``fpp_small_series``, ``prophet_examples``): five classic monthly series, two
quarterly ones, three daily Prophet examples, one weekly series anchored on Fridays (``W-FRI``: a one-series panel),
the two-series hourly pedestrian counts and 5-minute Yosemite temperatures; and from statsmodels' offline datasets
the weekly (``W-SAT``) Mauna Loa CO2 series, yearly sunspots since 1700 and six quarterly US macro series, plus
NN5 on weekdays only (``B``). Each panel's last horizon is held out
(the sub-daily panels: one day, their profile's season); the Day-0 pipeline runs through ``matrix.run_kedro`` (its own working directory, conf copy and MLflow store) and
statsforecast's seasonal naive, AutoETS and AutoARIMA run on the same training part (``matrix.run_peers``). Scores
by ``selection_replay.score`` (the matrix's). A panel whose run fails is reported with the error, not skipped.

    TQDM_DISABLE=1 .venv/bin/python benchmarks/small_panels.py                      # every panel
    TQDM_DISABLE=1 .venv/bin/python benchmarks/small_panels.py weekly_fri,monthly5  # some
    TQDM_DISABLE=1 .venv/bin/python benchmarks/small_panels.py yearly_sunspots --origins 0,1,2,3  # earlier windows too
    .venv/bin/python benchmarks/small_panels.py --summary yearly_sunspots   # per origin and the mean, from the file

One JSON line per panel on stdout, appended to ``benchmarks/results/small_panels.jsonl`` with the date and commit.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ts_kedro.frequency import season_length_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import matrix  # noqa: E402
from selection_replay import score  # noqa: E402

DATA = matrix.SHARED
RESULTS = ROOT / "benchmarks" / "results" / "small_panels.jsonl"
PEERS = ["autoets", "autoarima"]


def _one(name: str, path: Path, time_column: str, value_column: str, fmt: str | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return pd.DataFrame({"series_id": name, "timestamp": pd.to_datetime(frame[time_column], format=fmt),
                         "value": pd.to_numeric(frame[value_column], errors="coerce")}).sort_values("timestamp")


def panels() -> dict[str, tuple]:
    """``{name: loader}``; a loader returns ``(long panel, panel.freq, panel.horizon)``."""
    small, prophet = DATA / "fpp_small_series", DATA / "prophet_examples"
    return {
        "monthly5": lambda: (pd.concat([
            _one("airpassengers", small / "AirPassengers.csv", "Month", "#Passengers", fmt="%Y-%m"),
            _one("a10", small / "a10.csv", "date", "value"),
            _one("elecequip", small / "elecequip.csv", "date", "value"),
            _one("wineind", small / "wineind.csv", "date", "Y"),
            _one("retail_sales", prophet / "example_retail_sales.csv", "ds", "y")]), "MS", 12),
        "quarterly2": lambda: (pd.concat([_one("woolyrnq", small / "woolyrnq.csv", "date", "Y"),
                                          _one("ausbeer", small / "ausbeer.csv", "date", "Y")]), "QS", 8),
        "daily3": lambda: (pd.concat([
            _one("peyton", prophet / "example_wp_log_peyton_manning.csv", "ds", "y"),
            _one("wp_log_R", prophet / "example_wp_log_R.csv", "ds", "y"),
            _one("pedestrians_covid", prophet / "example_pedestrians_covid.csv", "ds", "y")]), "D", 28),
        "weekly_fri": lambda: (_one("us_gasoline", small / "us_gasoline.csv", "Week", "Gasoline", fmt="%m/%d/%Y"),
                               "W-FRI", 13),
        "hourly2": lambda: (matrix._melt(pd.read_csv(prophet / "example_pedestrians_multivariate.csv",
                                                     parse_dates=["ds"]), "ds"), "h", season_length_for("h")),
        "min5": lambda: (_one("yosemite", prophet / "example_yosemite_temps.csv", "ds", "y"), "5min", season_length_for("5min")),
        # real data that ships offline with statsmodels (../shared/data/README.md, last section)
        "weekly_sat_co2": lambda: (_statsmodels_co2(), "W-SAT", 52),
        "yearly_sunspots": lambda: (_statsmodels_sunspots(), "YS", 10),
        "quarterly_macro": lambda: (_statsmodels_macro(), "QS", 8),
        "business_daily": lambda: (_nn5_weekdays(6), "B", 20),
    }


def _statsmodels_co2() -> pd.DataFrame:
    """Mauna Loa CO2, weekly (Saturdays) 1958-2001, 59 of 2,284 weeks missing."""
    import statsmodels.api as sm

    data = sm.datasets.co2.load_pandas().data
    return pd.DataFrame({"series_id": "co2", "timestamp": data.index, "value": data["co2"].to_numpy()})


def _statsmodels_sunspots() -> pd.DataFrame:
    """Yearly sunspot numbers 1700-2008: a history longer than a pandas Timedelta holds (292 years)."""
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    return pd.DataFrame({"series_id": "sunspots", "timestamp": pd.to_datetime(data["YEAR"].astype(int).astype(str)),
                         "value": data["SUNACTIVITY"].astype(float)})


def _statsmodels_macro() -> pd.DataFrame:
    """Six US quarterly macro series 1959-2009 (the held-out 8 quarters are the 2007-2009 recession)."""
    import statsmodels.api as sm

    data = sm.datasets.macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int),
                                          freq="Q").to_timestamp()
    return pd.concat([pd.DataFrame({"series_id": column, "timestamp": quarters, "value": data[column]})
                      for column in ("realgdp", "realcons", "realinv", "cpi", "unemp", "infl")], ignore_index=True)


def _nn5_weekdays(n_series: int) -> pd.DataFrame:
    """NN5's first ``n_series`` series on weekdays only: real values on a business-day calendar (the weekends are
    dropped here; NN5 itself is daily). The only ``B`` panel at hand."""
    train, test = matrix._nn5()
    long = pd.concat([train, test], ignore_index=True)
    long = long[long["series_id"].isin(sorted(long["series_id"].unique())[:n_series])]
    return long[long["timestamp"].dt.dayofweek < 5].reset_index(drop=True)


def run_panel(name: str, loader, workdir: Path, origin: int = 0) -> dict:
    """One panel's run and peers; ``origin`` k > 0 forecasts the horizon that ends k horizons before the data's
    end (``matrix.earlier_origin``): a one-series panel has one test window per origin."""
    long, freq, horizon = loader()
    long = long.drop_duplicates(["series_id", "timestamp"])
    train, test = matrix.earlier_origin(*matrix._split_last(long, horizon), horizon, origin)
    try:
        result = matrix.run_kedro(workdir / (name + (f"_o{origin}" if origin else "")), train, freq, horizon, None)
    except Exception as error:  # noqa: BLE001 - a failed run is the finding
        return {"panel": name, "origin": origin, "freq": freq, "horizon": horizon, "error": repr(error)[:500]}
    m = int(result["profile"]["season_length"])
    ours = score(result["forecasts"], test, result["panel"], m, matrix.LEVELS)
    peers = matrix.run_peers(result["panel"][["series_id", "timestamp", "value"]], horizon, freq, m,
                             list(result["profile"]["seasonal_periods"]), cores=1, only=PEERS)
    peer_scores = {peer: score(forecasts, test, result["panel"], m, matrix.LEVELS)
                   for peer, (forecasts, _) in peers.items()}
    return {"panel": name, "origin": origin, "freq": freq, "horizon": horizon,
            "n_series": int(train["series_id"].nunique()),
            "wall_s": round(result["wall_s"]), "selected": result["overall_model"], "choice": result["choice_counts"],
            "ours": {k: round(ours[k], 3) for k in ("mase", "smape", "coverage-80", "coverage-95")},
            **{peer: {k: round(v[k], 3) for k in ("mase", "smape")} for peer, v in peer_scores.items()}}


def origins_summary(name: str) -> str:
    """Per origin, the newest record of panel ``name`` in the results file, and the mean over the origins: MASE
    and sMAPE of ours and of each peer (which origins were run decides the table)."""
    records = {}
    for line in RESULTS.read_text().splitlines():
        record = json.loads(line)
        if record.get("panel") == name and "error" not in record:
            records[record.get("origin", 0)] = record  # the file is in run order: the newest wins
    if not records:
        return f"no records of {name} in {RESULTS}"
    models = ["ours", *[key for key in records[min(records)] if key.startswith("sf_")]]
    lines = [f"{name}, test window k horizons before the data's end (MASE / sMAPE):", "",
             "| origin | selected | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
    for origin, record in sorted(records.items()):
        lines.append(f"| {origin} | {record['selected']} | " + " | ".join(
            f"{record[m]['mase']:.3f} / {record[m]['smape']:.2f}" for m in models) + " |")
    means = {m: [sum(r[m][k] for r in records.values()) / len(records) for k in ("mase", "smape")] for m in models}
    lines.append(f"| mean of {len(records)} | | " + " | ".join(f"**{means[m][0]:.3f}** / {means[m][1]:.2f}"
                                                              for m in models) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--summary"]:
        for name in argv[1].split(","):
            print(origins_summary(name) + "\n")
        return
    origins = [0]
    if "--origins" in argv:  # k: the test window ends k horizons before the data's end (one run per origin)
        at = argv.index("--origins")
        origins = [int(k) for k in argv[at + 1].split(",")]
        argv = argv[:at] + argv[at + 2:]
    chosen = argv[0].split(",") if argv else list(panels())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for name in chosen:
        for origin in origins:
            record = {**run_panel(name, panels()[name], ROOT / "data" / "benchmarks" / "small_panels", origin),
                      "date": time.strftime("%Y-%m-%d"), "commit": commit}
            print(json.dumps(record), flush=True)
            with RESULTS.open("a") as out:
                out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
