"""The benchmark matrix: the Day-0 ``kedro run`` itself on real panels, scored on their test parts, beside peers.

One engine: for each dataset the training part is written as a long CSV, the project's Day-0 pipeline runs on
it in a fresh working directory (``kedro run`` with only ``raw_panel_path``, ``panel.freq`` and
``panel.horizon``; every other frequency-dependent value comes from the frequency profile), and the
``forecasts`` it writes are scored on the held-out test part. statsforecast's SeasonalNaive, AutoETS,
AutoARIMA (``approximation=True`` where the season is 24 or longer), AutoTheta, MSTL with the profile's periods
(where it has any) and the mean of AutoETS and AutoARIMA (the classic M3 combination) run in the same run, on
the same cores and on the same series: the panel the pipeline trained on (``03_primary/primary_panel``, gaps
regularised and imputed), which is also the in-sample part of every scaled measure. The test part is scored on
its observed steps.

Datasets (``DATASETS``): M3 yearly / quarterly / monthly, NN5 daily, car parts (intermittent), Ansett weekly,
ILINet weekly, Stallion monthly, bike sharing daily and hourly, ETTh1 hourly and M4 Hourly from ``../shared/data``
(README.md, MORE_DATASETS.md).

    .venv/bin/python benchmarks/matrix.py --datasets m3_yearly,m3_quarterly --every 4
    .venv/bin/python benchmarks/matrix.py --quick          # 6 series of every dataset, local families, minutes
    .venv/bin/python benchmarks/matrix.py --summary m3_yearly,m3_quarterly,m3_monthly   # joint M3 table

Scores: sMAPE, MASE (m = the profile's season length, 1 where a series is shorter), OWA against Naive2, MSIS
and coverage of the 80 / 95 % intervals, each a mean over series (M4 aggregation); wall time of the Kedro run
and of each peer, and the Kedro run's peak RSS (its largest process, and all its processes together). Output: ``benchmarks/results/<dataset>.json`` and a
markdown table on stdout for ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

from selection_replay import score  # noqa: E402  (the same scoring for ours and the peers)

from ts_kedro.frequency import season_length_for  # noqa: E402

LEVELS = [80, 95]
APPROXIMATE_FROM = 24  # not a period: a cost rule (AutoARIMA exact search ~27 s per series from this season on)


def _m3(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda part: pd.read_csv(SHARED / "m3" / f"M3_{name}_{part}_long.csv", parse_dates=["timestamp"],  # noqa: E731
                                    dtype={"series_id": str})
    return read("train"), read("test")


def _m4_hourly() -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda part: pd.read_csv(SHARED / "m4_hourly" / f"Hourly-{part}-long.csv", parse_dates=["timestamp"],  # noqa: E731
                                    dtype={"series_id": str})
    return read("train"), read("test")


def _split_last(long: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / test of a long panel: the last ``horizon`` rows of each series are the test part. Leading and
    trailing missing values are trimmed first (a series starts at its first and ends at its last observation);
    missing values inside a series stay (the pipeline's cleaning handles them; the test part scores observed
    steps only)."""
    long = long.sort_values(["series_id", "timestamp"])
    observed = long["value"].notna()
    grouped = observed.groupby(long["series_id"])
    inside = grouped.cummax() & observed[::-1].groupby(long["series_id"][::-1]).cummax()[::-1]
    long = long[inside]
    position = long.groupby("series_id").cumcount(ascending=False)
    return long[position >= horizon].reset_index(drop=True), long[position < horizon].reset_index(drop=True)


def _melt(wide: pd.DataFrame, time_column: str) -> pd.DataFrame:
    long = wide.melt(id_vars=time_column, var_name="series_id", value_name="value").rename(
        columns={time_column: "timestamp"})
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long[["series_id", "timestamp", "value"]]


def _nn5() -> tuple[pd.DataFrame, pd.DataFrame]:
    """NN5 daily, 111 series: the competition's 735 training days and its 56 test days (MORE_DATASETS.md 2)."""
    wide = pd.read_csv(SHARED / "nn5_daily" / "NN5_FINAL_DATASET_WITH_TEST_DATA.csv", sep=";", encoding="utf-8-sig")
    wide = wide.loc[:, ~wide.columns.str.startswith("Unnamed")]
    wide["Date"] = pd.to_datetime(wide["Date"])
    long = _melt(wide, "Date")
    cut = wide["Date"].iloc[735]
    return long[long["timestamp"] < cut].reset_index(drop=True), long[long["timestamp"] >= cut].reset_index(drop=True)


def _carparts() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Car parts, intermittent monthly demand: the 2,509 complete parts (51 months), the last 12 as test."""
    wide = pd.read_csv(SHARED / "carparts_intermittent" / "carparts.csv").dropna()
    months = pd.to_datetime(wide.columns[1:], format="%b-%y")
    wide = wide.rename(columns=dict(zip(wide.columns[1:], months))).set_index("Part").T
    wide.index.name = "timestamp"
    long = _melt(wide.reset_index(), "timestamp")
    long["series_id"] = long["series_id"].astype(str)
    return _split_last(long, 12)


def _ansett(horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ansett weekly passengers, 10 routes x 3 classes (fields as tsibbledata's ansett.R reads them)."""
    rows = []
    for line in (SHARED / "ansett_weekly" / "WKLYPAXS.DAT").read_text().splitlines():
        fields = line.split()
        if len(fields) < 11 or fields[3].strip('"') == "NA":
            continue  # all-route totals
        week = pd.to_datetime(fields[2], format="%d%m%y")
        for name, index in (("First", 4), ("Business", 6), ("Economy", 10)):
            rows.append((f"{fields[3]}_{name}", week, pd.to_numeric(fields[index], errors="coerce")))
    long = pd.DataFrame(rows, columns=["series_id", "timestamp", "value"])
    return _split_last(long, horizon)


def _ilinet(horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CDC ILINet weekly: each of its 11 numeric columns is one series (an age column that stops early, with no
    test part, is left out by the split)."""
    wide = pd.read_csv(SHARED / "ilinet_weekly" / "ILINet.csv", parse_dates=["DATE"])
    long = _melt(wide, "DATE")
    train, test = _split_last(long, horizon)
    last = long.dropna().groupby("series_id")["timestamp"].max()
    current = set(last.index[last == long["timestamp"].max()])  # series still observed at the file's end
    return train[train["series_id"].isin(current)], test[test["series_id"].isin(current)]


def _stallion() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stallion beverage volumes, 350 agency x SKU series of 60 months (MORE_DATASETS.md 4), the target only (the
    covariates are measured by ``stallion_selected.py``); the last 6 months are the test part (the customary
    horizon). 12 % of the volumes are 0."""
    frame = pd.read_parquet(SHARED / "stallion_covariates" / "stallion.parquet")
    long = pd.DataFrame({"series_id": frame["agency"].astype(str) + "/" + frame["sku"].astype(str),
                         "timestamp": pd.to_datetime(frame["date"]), "value": frame["volume"].astype(float)})
    return _split_last(long, 6)


def _bike(file: str, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """UCI bike sharing (MORE_DATASETS.md 5): the ``casual`` and ``registered`` rentals as two series (``cnt`` is
    their sum). The hourly file lacks 165 of its 17,544 hours: they stay missing (the pipeline's grid and
    imputation handle them; the test part scores the observed hours only). No horizon is customary."""
    frame = pd.read_csv(SHARED / "bike_sharing_covariates" / file)
    stamps = pd.to_datetime(frame["dteday"]) + (pd.to_timedelta(frame["hr"], unit="h") if "hr" in frame else
                                                 pd.Timedelta(0))
    wide = pd.DataFrame({"timestamp": stamps, "casual": frame["casual"], "registered": frame["registered"]})
    return _split_last(_melt(wide, "timestamp"), horizon)


def _etth1() -> tuple[pd.DataFrame, pd.DataFrame]:
    """ETTh1 (README.md, ETT): its seven hourly columns (six loads and the oil temperature) as seven series of
    17,420 hours, read from the original file; the last 96 hours (the literature's shortest prediction length)
    are the test part."""
    wide = pd.read_csv(SHARED / "ett" / "ETTh1.csv", parse_dates=["date"])
    return _split_last(_melt(wide, "date"), 96)


def _m3_other() -> tuple[pd.DataFrame, pd.DataFrame]:
    """M3 "other", 174 series whose time column numbers the periods (1, 2, ...; no dates, no season in Mcomp):
    the last 8 of each series (M3's horizon for them) are the test part. The kedro run reads the steps with
    ``timestamp_format: steps`` (``STEP_DATASETS``)."""
    long = pd.read_csv(SHARED / "m3" / "M3_other_TSTS.csv", dtype={"series_id": str})
    return _split_last(long[["series_id", "timestamp", "value"]], 8)


# panels whose time column holds integer steps: the kedro run's extra parameters (the steps are dated from the
# default step_origin at the dataset's panel.freq, and the test part is dated the same way for scoring)
STEP_DATASETS = {"m3_other": "data_processing.source.timestamp_format=steps,panel.seasonal_periods=1"}

# name -> (loader, panel.freq, panel.horizon, published references for the table)
DATASETS = {
    "m3_yearly": (lambda: _m3("yearly"), "YS", 6, "M3, all 3,003 series (Hyndman, Mcomp Comparisons.md): Theta sMAPE 13.01 / MASE 1.39, ETS+ARIMA average 12.77 / 1.40; Chronos (last window, Monash copy): seasonal naive MASE 3.172 (yearly)"),
    "m3_quarterly": (lambda: _m3("quarterly"), "QS", 8, "M3, all 3,003 series (Hyndman, Mcomp Comparisons.md): Theta sMAPE 13.01 / MASE 1.39, ETS+ARIMA average 12.77 / 1.40; Chronos (last window, Monash copy): seasonal naive MASE 1.425 (quarterly)"),
    "m3_monthly": (lambda: _m3("monthly"), "MS", 18, "M3, all 3,003 series (Hyndman, Mcomp Comparisons.md): Theta sMAPE 13.01 / MASE 1.39, ETS+ARIMA average 12.77 / 1.40; Chronos (last window, Monash copy): seasonal naive MASE 1.146 (monthly)"),
    "nn5_daily": (_nn5, "D", 56, "NN5 (Chronos, imputed Monash copy, h=56): seasonal naive MASE 1.292, "
                  "chronos-bolt-base 0.576"),
    "carparts": (_carparts, "MS", 12, "car parts (Chronos, h=12): seasonal naive MASE 1.201, "
                 "chronos-bolt-base 0.855"),
    "ansett_weekly": (lambda: _ansett(13), "W-SUN", 13, "none published"),
    "ilinet_weekly": (lambda: _ilinet(26), "W-SUN", 26, "none published for this file"),
    "stallion_monthly": (_stallion, "MS", 6, "Stallion (pytorch-forecasting tutorial, last 6 months): last-value "
                         "baseline MAE 293.0, TFT 359.3 (short training)"),
    "bike_daily": (lambda: _bike("day.csv", 28), "D", 28, "none published"),
    # no customary horizon: two of the profile's seasons (two days)
    "bike_hourly": (lambda: _bike("hour.csv", 2 * season_length_for("h")), "h", 2 * season_length_for("h"),
                    "none published"),
    "etth1": (_etth1, "h", 96, "published ETTh1 scores use another protocol (fixed 12/4/4-month split, "
              "normalised, multivariate): not comparable"),
    "m3_other": (_m3_other, "D", 8, "M3 other (Mcomp frequency 1): none copied here"),
    "m4_hourly": (_m4_hourly, "h", 48, "M4 Hourly, all 414 (M4_REFERENCE.md): Smyl ES-RNN OWA 0.440, sNaive 0.627, Theta 1.006"),  # dataset fact
}


def earlier_origin(train: pd.DataFrame, test: pd.DataFrame, horizon: int, origin: int):
    """Train / test with the forecast origin moved ``origin`` horizons back: each series (training and test part
    together) loses its last ``origin * horizon`` rows, and the last ``horizon`` rows of what is left are the test
    part. ``origin`` 0 is the dataset's own split. A series too short to keep two horizons of training is dropped.

    One test window is one draw: on a panel of a few long series (bike sharing hourly, ETTh1) the dataset's own
    last window decides the whole comparison. Earlier origins, each a full ``kedro run`` and peer run of its own,
    say whether a gap is the method's or that window's."""
    if origin <= 0:
        return train, test
    whole = pd.concat([train, test]).sort_values(["series_id", "timestamp"]).reset_index(drop=True)
    whole = whole[whole.groupby("series_id").cumcount(ascending=False) >= origin * horizon]
    whole = whole[whole.groupby("series_id")["timestamp"].transform("size") >= 3 * horizon]
    position = whole.groupby("series_id").cumcount(ascending=False)
    return whole[position >= horizon].reset_index(drop=True), whole[position < horizon].reset_index(drop=True)


def subset(train: pd.DataFrame, test: pd.DataFrame, every: int, limit: int | None):
    ids = list(dict.fromkeys(train["series_id"]))[::every]
    if limit:
        ids = ids[:limit]
    keep = set(ids)
    return train[train["series_id"].isin(keep)], test[test["series_id"].isin(keep)]


def _watch_memory(process: subprocess.Popen, every_s: float = 0.5) -> tuple[float, float]:
    """Wait for ``process``; the peak RSS (MB) of its largest single process and of its whole tree (the kedro
    process and its joblib/torch workers), sampled every ``every_s`` seconds."""
    import psutil

    root = psutil.Process(process.pid)
    peak_one = peak_tree = 0.0
    while process.poll() is None:
        try:
            sizes = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
        except psutil.Error:
            sizes = []
        if sizes:
            peak_one, peak_tree = max(peak_one, max(sizes) / 2**20), max(peak_tree, sum(sizes) / 2**20)
        time.sleep(every_s)
    return peak_one, peak_tree


def run_kedro(workdir: Path, train: pd.DataFrame, freq: str, horizon: int, families: str | None,
              extra_params: str = "", prepare=None) -> dict:
    """The Day-0 pipeline in ``workdir`` (its own conf copy, data/ and MLflow store); its forecasts and costs.

    ``extra_params`` are appended to ``--params`` (``key=value,...``); ``prepare(workdir)`` may edit the conf copy
    before the run (``stallion_selected.py`` declares covariates that way)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", workdir / "conf")
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "src").mkdir()  # the project is installed; Kedro only checks that a source folder exists
    if prepare is not None:
        prepare(workdir)
    raw = workdir / "train.csv"
    train.to_csv(raw, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
           "TS_KEDRO_CONF_SOURCE": str(workdir / "conf"), "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    if families:
        env["TS_KEDRO_FAMILIES"] = families
    command = [str(Path(sys.executable).parent / "kedro"), "run", "--params",
               f"raw_panel_path={raw},panel.freq={freq},panel.horizon={horizon}" + (f",{extra_params}" if extra_params else "")]
    started = time.perf_counter()
    with open(workdir / "run.log", "w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak_mb, peak_tree_mb = _watch_memory(process)
    wall = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"kedro run failed (exit {process.returncode}): see {workdir / 'run.log'}")
    return {**read_run(workdir), "wall_s": wall, "peak_rss_mb_max_child": peak_mb, "peak_rss_mb_tree": peak_tree_mb}


def read_run(workdir: Path) -> dict:
    """A finished Day-0 run's outputs: its latest forecasts, cleaned panel, frequency profile and selection."""
    data = workdir / "data"
    versions = sorted((data / "07_model_output" / "forecasts.csv").iterdir())
    forecasts = pd.read_csv(versions[-1] / "forecasts.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    selection = json.loads((data / "08_reporting" / "model_selection.json").read_text())
    return {"forecasts": forecasts, "panel": pd.read_parquet(data / "03_primary" / "primary_panel.parquet"),
            "profile": json.loads((data / "08_reporting" / "frequency_profile.json").read_text()),
            "choice_counts": selection["choice_counts"], "overall_model": selection["overall_model"],
            "ensemble_members": selection["ensemble_members"]}


def run_peers(train: pd.DataFrame, horizon: int, freq: str, season: int, periods: list[float],
              cores: int = -1, only: list[str] | None = None) -> dict[str, tuple[pd.DataFrame, float]]:
    """statsforecast peers on the same series; each a (forecasts in our columns, wall seconds) pair.

    Every peer gets ``SeasonalNaive`` as statsforecast's own ``fallback_model`` for the series it cannot fit.
    MSTL runs where the profile has seasonal periods, with those periods (rounded to whole steps, the ones
    the series can afford) and an AutoETS trend without season."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    frame = train.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    models = {"sf_seasonal_naive": SeasonalNaive(season_length=season, alias="sf_seasonal_naive"),
              "sf_autoets": AutoETS(season_length=season, alias="sf_autoets"),
              "sf_autoarima": AutoARIMA(season_length=season, approximation=season >= APPROXIMATE_FROM, alias="sf_autoarima"),
              "sf_autotheta": AutoTheta(season_length=season, alias="sf_autotheta")}
    shortest = int(frame.groupby("unique_id").size().min())
    mstl_periods = sorted({int(round(p)) for p in periods if 1 < round(p) and 2 * round(p) < shortest})
    if mstl_periods:
        models["sf_mstl"] = MSTL(season_length=mstl_periods, trend_forecaster=AutoETS(model="ZZN"), alias="sf_mstl")
    if only:  # sf_seasonal_naive is always run: it is every table's reference
        models = {k: v for k, v in models.items() if k == "sf_seasonal_naive" or k.removeprefix("sf_") in only}
    results = {}
    for name, model in models.items():
        started = time.perf_counter()
        engine = StatsForecast(models=[model], freq=freq, n_jobs=cores,
                               fallback_model=SeasonalNaive(season_length=season, alias=name))
        out = engine.forecast(df=frame, h=horizon, level=LEVELS)
        wall = time.perf_counter() - started
        out = out.reset_index() if "unique_id" not in out.columns else out
        renamed = {"unique_id": "series_id", "ds": "timestamp", name: "mean",
                   **{f"{name}-{side}-{lv}": f"{side}-{lv}" for lv in LEVELS for side in ("lo", "hi")}}
        results[name] = (out.rename(columns=renamed)[["series_id", "timestamp", "mean",
                                                      *[f"{s}-{lv}" for lv in LEVELS for s in ("lo", "hi")]]], wall)
        print(f"  peer {name}: {wall:.0f} s", flush=True)
    if not {"sf_autoets", "sf_autoarima"} <= set(results):
        return results
    ets, arima = results["sf_autoets"][0], results["sf_autoarima"][0]
    combo = ets.copy()
    for column in ["mean", *[f"{s}-{lv}" for lv in LEVELS for s in ("lo", "hi")]]:
        combo[column] = (ets[column].to_numpy() + arima[column].to_numpy()) / 2
    results["sf_mean_ets_arima"] = (combo, results["sf_autoets"][1] + results["sf_autoarima"][1])
    return results


def benchmark(name: str, every: int, limit: int | None, families: str | None, workroot: Path,
              peers: list[str] | None = None, tag: str | None = None, origin: int = 0) -> dict:
    """One dataset: the kedro run on its training part, the peers on the same cleaned panel, all scored.

    ``tag`` names a variant (e.g. other families): its working folder and result file get ``_<tag>``, so the
    shipped configuration's results are not overwritten. ``origin`` k > 0 forecasts the horizon that ends k
    horizons before the data's end instead (``earlier_origin``; folder and result file get ``_o<k>``)."""
    loader, freq, horizon, published = DATASETS[name]
    train, test = subset(*earlier_origin(*loader(), horizon, origin), every, limit)
    label = (f"{name}_{tag}" if tag else name) + (f"_o{origin}" if origin > 0 else "")
    print(f"{label}: {train['series_id'].nunique()} series, kedro run ...", flush=True)
    ours = run_kedro(workroot / label, train, freq, horizon, families, extra_params=STEP_DATASETS.get(name, ""))
    if name in STEP_DATASETS:  # the run dated the steps; date the test part's the same way
        from ts_kedro.pipelines.data_processing.schema import DEFAULT_STEP_ORIGIN, StepClock

        test = test.assign(timestamp=StepClock.from_params(DEFAULT_STEP_ORIGIN, freq).dates(test["timestamp"].to_numpy()))
    test.to_csv(workroot / label / "test.csv", index=False)  # for benchmarks/selection_replay.py --test
    # The panel the pipeline trained on (gaps regularised and imputed, quarantined series out): the peers get
    # the same, and it is the in-sample part of every scaled measure.
    panel = ours["panel"]
    test = test[test["series_id"].isin(set(panel["series_id"]))]
    profile = ours["profile"]
    season = int(profile["season_length"])
    rows = {"ts_kedro (kedro run)": {**score(ours["forecasts"], test, panel, season, LEVELS), "wall_s": ours["wall_s"],
                                     "peak_rss_mb": ours["peak_rss_mb_max_child"],
                                     "peak_rss_mb_tree": ours["peak_rss_mb_tree"]}}
    rows.update(_scored_peers(panel, test, horizon, freq, profile, peers))
    result = {"dataset": name, "tag": tag, "origin": origin, "freq": freq, "horizon": horizon, "season_length": season,
              "n_series": int(train["series_id"].nunique()), "n_kept": int(panel["series_id"].nunique()),
              "every": every, "published": published, "families": families or "shipped",
              "selection": {k: ours[k] for k in ("choice_counts", "overall_model", "ensemble_members")},
              "scores": rows}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{label}.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def _scored_peers(panel: pd.DataFrame, test: pd.DataFrame, horizon: int, freq: str, profile: dict,
                  peers: list[str] | None) -> dict[str, dict]:
    """The peers on the run's cleaned panel, each scored on the test part like ours, with its wall seconds."""
    season = int(profile["season_length"])
    return {peer: {**score(forecast, test, panel, season, LEVELS), "wall_s": wall}
            for peer, (forecast, wall) in run_peers(panel[["series_id", "timestamp", "value"]], horizon, freq, season,
                                                    list(profile["seasonal_periods"]), only=peers).items()}


def add_peers(name: str, workroot: Path, peers: list[str], tag: str | None = None) -> dict:
    """More peers for a finished run: scored on its own cleaned panel and test part, added to its result file
    (the kedro run is not repeated; a peer already in the file is replaced)."""
    label = f"{name}_{tag}" if tag else name
    out = ROOT / "benchmarks" / "results" / f"{label}.json"
    data = workroot / label / "data"
    if not out.exists() or not (data / "03_primary" / "primary_panel.parquet").exists():
        raise SystemExit(f"--add-peers needs a finished run: {out} and {data / '03_primary'} (run the matrix first)")
    result = json.loads(out.read_text())
    panel = pd.read_parquet(data / "03_primary" / "primary_panel.parquet")
    profile = json.loads((data / "08_reporting" / "frequency_profile.json").read_text())
    test = pd.read_csv(workroot / label / "test.csv", parse_dates=["timestamp"], dtype={"series_id": str})
    test = test[test["series_id"].isin(set(panel["series_id"]))]
    result["scores"].update(_scored_peers(panel, test, result["horizon"], result["freq"], profile, peers))
    out.write_text(json.dumps(result, indent=2, default=float))
    return result


def markdown(result: dict) -> str:
    """One dataset's table: every row's measures and its MASE relative to statsforecast's seasonal naive."""
    scores = result["scores"]
    reference = scores["sf_seasonal_naive"]["mase"]
    subset_note = "all series" if result["every"] == 1 else f"every {result['every']}th series"
    if result.get("origin"):
        subset_note += f"; test window {result['origin']} horizons before the data's end"
    lines = [f"### {result['dataset']}: {result['n_series']} series ({subset_note}), freq {result['freq']}, "
             f"horizon {result['horizon']}, m = {result['season_length']}", "",
             "| model | sMAPE | MASE | MASE / sNaive | OWA | MSIS-95 | cov-80 | cov-95 | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, s in scores.items():
        lines.append(f"| {model} | {s['smape']:.3f} | {s['mase']:.3f} | {s['mase'] / reference:.3f} | {s['owa']:.3f} | "
                     f"{s['msis-95']:.2f} | {s['coverage-80']:.3f} | {s['coverage-95']:.3f} | {s['wall_s']:.0f} |")
    ours = scores["ts_kedro (kedro run)"]
    lines += ["", f"Kedro run: {ours['wall_s']:.0f} s wall, peak RSS of its largest process "
              f"{ours['peak_rss_mb']:.0f} MB (all its processes together {ours['peak_rss_mb_tree']:.0f} MB); {result['n_kept']} of {result['n_series']} series kept, "
              f"{ours['n_series_without_mase']} without a MASE scale (no seasonal variation in training). "
              f"Families: {result['families']}. Selection: {result['selection']}.",
              f"Published: {result['published']}.", ""]
    return "\n".join(lines)


def summary(names: list[str]) -> str:
    """Series-weighted means over several finished datasets (e.g. M3 yearly + quarterly + monthly)."""
    results = [json.loads((ROOT / "benchmarks" / "results" / f"{n}.json").read_text()) for n in names]
    models = [m for m in results[0]["scores"] if all(m in r["scores"] for r in results)]
    lines = [f"### together: {', '.join(names)}", "", "| model | sMAPE | MASE | series |", "|---|---|---|---|"]
    for model in models:
        weights = np.array([r["scores"][model]["n_series"] for r in results], float)
        smape = np.average([r["scores"][model]["smape"] for r in results], weights=weights)
        mase = np.average([r["scores"][model]["mase"] for r in results], weights=weights)
        lines.append(f"| {model} | {smape:.3f} | {mase:.3f} | {int(weights.sum())} |")
    return "\n".join(lines + [""])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--every", type=int, default=1, help="every n-th series (deterministic subset)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many series per dataset")
    parser.add_argument("--quick", action="store_true", help="6 series per dataset, the local families (minutes)")
    parser.add_argument("--families", default=None, help="TS_KEDRO_FAMILIES for the kedro run (default: shipped)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "benchmarks")
    parser.add_argument("--peers", default=None, help="only these peers, e.g. autoets,autotheta,mstl (default: all; "
                        "seasonal_naive always runs)")
    parser.add_argument("--tag", default=None, help="variant name: results go to benchmarks/results/<dataset>_<tag>.json")
    parser.add_argument("--origins", default="0", help="forecast origins, comma-separated: k moves the test window k "
                        "horizons back from the data's end (0: the dataset's own split); one run per origin")
    parser.add_argument("--summary", default=None, help="only print the joint table of these finished datasets")
    parser.add_argument("--add-peers", action="store_true", help="only run --peers on the finished runs of "
                        "--datasets (and --tag) in --workdir, adding them to their result files")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.summary.split(",")))
        return
    limit = 6 if args.quick else args.limit
    args.workdir = args.workdir.resolve()  # the kedro run's conf source must be absolute
    families = args.families or ("seasonal_naive,arima,ets,theta,intermittent" if args.quick else None)
    for name in args.datasets.split(","):
        peers = args.peers.split(",") if args.peers else None
        if args.add_peers:
            print(markdown(add_peers(name, args.workdir, peers or [], args.tag)), flush=True)
            continue
        for origin in (int(k) for k in args.origins.split(",")):
            print(markdown(benchmark(name, args.every, limit, families, args.workdir, peers, args.tag, origin)),
                  flush=True)


if __name__ == "__main__":
    main()
