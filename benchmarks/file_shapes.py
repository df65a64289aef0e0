"""A new user's files, as they come: does ``kedro run`` read them, or say exactly what to set?

Each shape is real values from ``../shared/data`` (AirPassengers and wineind, two monthly series of different
spans; the pedestrian counts; the M3 monthly sample) written the way exports write them: ';' and decimal commas,
thousands separators, a column per series, headers in other case, stamps on the 15th, year-month or quarter
labels, a year column of integers, UTC offsets across a DST change, rows newest first, a byte-order mark and CRLF,
integer or '|'-holding series ids; and panels of awkward content: a new product of 8 months beside 15 years,
a constant series, every series constant, extreme scales, negative values, business hours, one series with
horizon 1, a daily horizon of a year. Content changes are labelled SYNTHETIC in their description.

Every shape runs twice where it has a setting: as is (the shipped ``conf/``, only ``panel.freq`` and
``panel.horizon``), where it must either complete or stop with the setting named (``hint`` below), and with that
setting, where the whole Day-0 ``kedro run`` must complete. Each run has its own working directory, ``conf/`` copy
and MLflow store (``matrix.run_kedro``'s layout).

    TQDM_DISABLE=1 .venv/bin/python benchmarks/file_shapes.py                  # every shape
    TQDM_DISABLE=1 .venv/bin/python benchmarks/file_shapes.py wide,midmonth     # some

Prints one line per run and a markdown table at the end (rc, wall time, series forecast, the first error line).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ts_kedro.frequency import candidate_periods, season_length_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "data" / "benchmarks" / "file_shapes"


def _monthly() -> pd.DataFrame:
    air = pd.read_csv(DATA / "fpp_small_series" / "AirPassengers.csv")
    wine = pd.read_csv(DATA / "fpp_small_series" / "wineind.csv")
    return pd.concat([
        pd.DataFrame({"series_id": "air", "timestamp": pd.to_datetime(air["Month"]), "value": air["#Passengers"]}),
        pd.DataFrame({"series_id": "wine", "timestamp": pd.to_datetime(wine["date"]), "value": wine["Y"]}),
    ], ignore_index=True)


def _pedestrians() -> pd.DataFrame:
    wide = pd.read_csv(DATA / "prophet_examples" / "example_pedestrians_multivariate.csv", parse_dates=["ds"])
    return wide.melt(id_vars="ds", var_name="series_id", value_name="value").rename(columns={"ds": "timestamp"})


@dataclass
class Shape:
    description: str
    write: Callable[[Path], None]
    freq: str = "MS"
    horizon: int | None = None         # None: the profile's season (12 months, 24 hours, 8 business hours)
    hint: str | None = None            # regex the as-is refusal must match (None: the as-is run must complete)
    params: str = ""                   # the setting, as --params
    local_params: dict = field(default_factory=dict)  # the setting, as conf/local/parameters.yml (values --params
                                                      # cannot carry: Kedro reads them as YAML, '%d' included)
    load_args: dict = field(default_factory=dict)  # the setting, as raw_panel load_args


def _csv(frame_fn, **to_csv):
    return lambda path: frame_fn().to_csv(path, index=False, **to_csv)


def shapes() -> dict[str, Shape]:
    m = _monthly
    eur = lambda: m().assign(value=m()["value"] * 1.5)  # noqa: E731 - decimals worth a comma
    return {
        "semicolon": Shape("';'-separated, decimal commas (a European spreadsheet export)",
                           _csv(eur, sep=";", decimal=","), hint=r"looks semicolon-separated.*load_args: \{sep: ';'\}",
                           load_args={"sep": ";", "decimal": ","}),
        "thousands": Shape("values written with thousands separators ('11,200')",
                           _csv(lambda: m().assign(value=m()["value"].map(lambda v: f"{v * 100:,.0f}"))),
                           hint=r"thousands separator.*\{thousands: ','\}", load_args={"thousands": ","}),
        "wide": Shape("a timestamp column and one column per series",
                      _csv(lambda: m().pivot(index="timestamp", columns="series_id", values="value").reset_index()),
                      hint=r"looks wide.*layout: wide", params="data_processing.source.layout=wide"),
        "wide_hourly": Shape("the pedestrian counts as shipped (ds, location_4, location_41)",
                             lambda path: shutil.copy(DATA / "prophet_examples" / "example_pedestrians_multivariate.csv", path),
                             freq="h", hint=r"looks wide.*layout: wide, timestamp_column: 'ds'",
                             params="data_processing.source.timestamp_column=ds,data_processing.source.layout=wide"),
        "midmonth": Shape("monthly stamps on the 15th", _csv(lambda: m().assign(timestamp=m()["timestamp"] + pd.Timedelta(days=14))),
                          hint=r"snap_to_freq: true", params="data_processing.source.snap_to_freq=true"),
        "headers": Shape("headers in other case ('Series_ID', 'Timestamp', 'Value')",
                         _csv(lambda: m().rename(columns={"series_id": "Series_ID", "timestamp": "Timestamp", "value": "Value"})),
                         hint=r"id_column: 'Series_ID'",
                         params="data_processing.source.id_column=Series_ID,data_processing.source.timestamp_column="
                                "Timestamp,data_processing.source.target_column=Value"),
        "dayfirst": Shape("day-first dates (01/02/1949)", _csv(lambda: m().assign(timestamp=m()["timestamp"].dt.strftime("%d/%m/%Y"))),
                          hint=r"ambiguous.*set data_processing.source.timestamp_format",
                          local_params={"data_processing": {"source": {"timestamp_format": "%d/%m/%Y"}}}),
        "yyyymm": Shape("year-month labels (1949-01)", _csv(lambda: m().assign(timestamp=m()["timestamp"].dt.strftime("%Y-%m")))),
        "quarter_labels": Shape("quarter labels (1956Q1) of ausbeer", lambda path: _ausbeer("Q").to_csv(path, index=False),
                                freq="QS", horizon=8),
        "quarter_dash": Shape("quarter labels (1956-Q1) of ausbeer", lambda path: _ausbeer("-Q").to_csv(path, index=False),
                              freq="QS", horizon=8),
        "year_ints": Shape("a year column of integers (yearly sums of the monthly series)", _csv(_yearly), freq="YS", horizon=3),
        "tz_offsets": Shape("hourly stamps with UTC offsets (+11:00 then +10:00 across a DST change)",
                            _csv(_with_offsets), freq="h"),
        "descending": Shape("rows newest first", _csv(lambda: m().sort_values("timestamp", ascending=False))),
        "bom_crlf": Shape("a byte-order mark and CRLF line ends", _csv(m, encoding="utf-8-sig", lineterminator="\r\n")),
        "int_ids": Shape("integer series ids", _csv(lambda: m().assign(series_id=m()["series_id"].map({"air": 1001, "wine": 7})))),
        "pipe_ids": Shape("series ids holding '|', spaces and accents ('store|A 1')",
                          _csv(lambda: m().assign(series_id=m()["series_id"].map({"air": "store|A 1", "wine": "vin rouge é"})))),
        "new_product": Shape("SYNTHETIC cut: air's last 8 months (no backtest window at horizon 12) beside wine",
                             _csv(lambda: pd.concat([m()[m().series_id == "air"].tail(8).assign(series_id="air_new"),
                                                     m()[m().series_id == "wine"]]))),
        "no_window": Shape("SYNTHETIC cut: air's last 8 months and wine's last 10 (no series affords a backtest window "
                           "at horizon 12)", _csv(lambda: pd.concat([m()[m().series_id == "air"].tail(8),
                                                                     m()[m().series_id == "wine"].tail(10)]))),
        "constant": Shape("SYNTHETIC: a constant series beside the two real ones",
                          _csv(lambda: pd.concat([m(), m()[m().series_id == "air"].assign(series_id="flat", value=5.0)]))),
        "all_constant": Shape("SYNTHETIC values: every series constant (0 and 3) on the real calendars",
                              _csv(lambda: m().assign(value=m()["series_id"].map({"air": 0.0, "wine": 3.0})))),
        "scales": Shape("SYNTHETIC scale: air x 1e12, wine x 1e-9", _csv(lambda: m().assign(
            value=m()["value"] * m()["series_id"].map({"air": 1e12, "wine": 1e-9})))),
        "negatives": Shape("SYNTHETIC shift: a10 minus its mean (negative values) beside the two real ones",
                           _csv(lambda: pd.concat([m(), _a10_centred()]))),
        "business_hours": Shape("the pedestrian counts on weekdays 09:00-16:00 only, panel.freq bh",
                                _csv(lambda: _pedestrians().pipe(lambda f: f[(f.timestamp.dt.weekday < 5)
                                                                             & f.timestamp.dt.hour.between(9, 16)])),
                                freq="bh"),
        "single_h1": Shape("one series (wineind), horizon 1", _csv(lambda: m()[m().series_id == "wine"]), horizon=1),
        "daily_h365": Shape("pedestrians_covid daily (1,490 days), horizon a year", _csv(_covid_daily), freq="D",
                            horizon=round(candidate_periods("D")[-1])),
    }


def _ausbeer(separator: str) -> pd.DataFrame:
    beer = pd.read_csv(DATA / "fpp_small_series" / "ausbeer.csv")
    labels = pd.PeriodIndex(pd.to_datetime(beer["date"]), freq="Q").astype(str).str.replace("Q", separator)
    return pd.DataFrame({"series_id": "beer", "timestamp": labels, "value": beer["Y"]})


def _yearly() -> pd.DataFrame:
    frame = _monthly().assign(timestamp=lambda f: f["timestamp"].dt.year)
    return frame.groupby(["series_id", "timestamp"], as_index=False)["value"].sum()


def _with_offsets() -> pd.DataFrame:
    frame = _pedestrians()
    local = frame["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Australia/Melbourne")
    return frame.assign(timestamp=local.map(lambda t: t.isoformat()))


def _a10_centred() -> pd.DataFrame:
    a10 = pd.read_csv(DATA / "fpp_small_series" / "a10.csv")
    return pd.DataFrame({"series_id": "a10_centred", "timestamp": pd.to_datetime(a10["date"]),
                         "value": a10["value"] - a10["value"].mean()})


def _covid_daily() -> pd.DataFrame:
    daily = pd.read_csv(DATA / "prophet_examples" / "example_pedestrians_covid.csv")
    return pd.DataFrame({"series_id": "pedestrians", "timestamp": daily["ds"], "value": daily["y"]})


def run(name: str, shape: Shape, configured: bool) -> dict:
    """One ``kedro run`` of the shape (as is, or with its setting) in its own working directory."""
    workdir = WORK / f"{name}{'_configured' if configured else ''}"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", workdir / "conf")
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "src").mkdir()
    raw = workdir / "raw.csv"
    shape.write(raw)
    if configured and shape.load_args:
        entry = {"raw_panel": {"type": "ts_kedro.datasets.CSVChunkSourceDataset",
                               "filepath": "${runtime_params:raw_panel_path, data/01_raw/m4_hourly_sample.csv}",
                               "load_args": shape.load_args}}
        (workdir / "conf" / "local" / "catalog.yml").write_text(json.dumps(entry))  # JSON is YAML
    if configured and shape.local_params:
        (workdir / "conf" / "local" / "parameters.yml").write_text(json.dumps(shape.local_params))
    horizon = shape.horizon or season_length_for(shape.freq)
    params = f"raw_panel_path={raw},panel.freq={shape.freq},panel.horizon={horizon}"
    if configured and shape.params:
        params += "," + shape.params
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "TS_KEDRO_CONF_SOURCE": str(workdir / "conf"),
           "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    with open(workdir / "run.log", "w") as log:
        code = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", "--params", params], cwd=workdir,
                              env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    text = (workdir / "run.log").read_text(errors="replace")
    error = _first_error(text)
    record = {"shape": name, "configured": configured, "rc": code, "wall_s": round(time.perf_counter() - started),
              "error": error}
    if code == 0:
        versions = sorted((workdir / "data" / "07_model_output" / "forecasts.csv").iterdir())
        forecasts = pd.read_csv(versions[-1] / "forecasts.csv")
        record["series_forecast"] = int(forecasts["series_id"].nunique())
        record["rows_forecast"] = int(len(forecasts))
    expected = shape.hint if not configured and _has_setting(shape) else None
    record["as_expected"] = (code != 0 and bool(re.search(expected, error or "", re.S))) if expected else code == 0
    return record


def _has_setting(shape: Shape) -> bool:
    return bool(shape.params or shape.load_args or shape.local_params)


def _first_error(log: str) -> str | None:
    """The exception line of a failed run (rich wraps it over several lines: joined)."""
    match = re.search(r"\n(\w+(?:Error|Exception)): (.*?)(?:\n\s*\n|\Z)", log, re.S)
    if not match:
        return None
    return f"{match.group(1)}: " + re.sub(r"\s*\n\s*", " ", match.group(2)).strip()[:400]


def main(argv: list[str]) -> None:
    every = shapes()
    chosen = argv[0].split(",") if argv else list(every)
    records = []
    for name in chosen:
        shape = every[name]
        for configured in ([False, True] if _has_setting(shape) else [False]):
            record = run(name, shape, configured)
            print(json.dumps(record), flush=True)
            records.append(record)
    print("\n| shape | run | rc | as expected | wall s | series forecast | first error line |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        shape = every[r["shape"]]
        setting = (shape.params or json.dumps(shape.load_args or shape.local_params)) if r["configured"] else "as is"
        print(f"| {r['shape']}: {every[r['shape']].description} | {setting} | {r['rc']} | "
              f"{'yes' if r['as_expected'] else '**no**'} | {r['wall_s']} | {r.get('series_forecast', '-')} | "
              f"{(r['error'] or '').replace('|', '/')[:220]} |")


if __name__ == "__main__":
    main(sys.argv[1:])
