"""Reporting nodes: plots (matplotlib figures saved by the catalog), confidence, anomaly and importance reports."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ts_kedro.interpretability import (
    LSTM_IMPORTANCE_COLUMNS,
    InterpretabilityError,
    actuals_anomalies,
    arima_coefficients,
    confidence_scores,
    history_anomalies,
    lstm_permutation_importance,
    prophet_component_shares,
)
from ts_kedro.interpretability.errors import TooFewWindowsError, require_columns

from .figures import FITTED_NOTHING, concise_dates, model_colour, new_figure, note_figure

logger = logging.getLogger(__name__)


# -- shared inputs ------------------------------------------------------------------------------------------------
def select_report_series(primary_panel: pd.DataFrame, reporting: dict[str, Any]) -> list[str]:
    """The series the per-series plots draw: ``reporting.series`` if set, else the first ``n_series`` ids.

    Returns:
        Series ids, in order.
    """
    available = sorted(primary_panel["series_id"].unique())
    wanted = reporting.get("series")
    if wanted:
        known = set(available)
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise InterpretabilityError(
                f"reporting.series in conf/base/parameters_reporting.yml names {unknown}, which are not in "
                f"primary_panel (first ids: {available[:5]})"
            )
        return list(wanted)
    return available[: int(reporting["n_series"])]


def chosen_backtests(candidate_backtests: pd.DataFrame, selection: dict) -> pd.DataFrame:
    """The backtest rows of each series' chosen model (the champion of that series)."""
    require_columns(candidate_backtests, ["model", "series_id", "timestamp", "cutoff", "window", "mean", "actual"],
                    "candidate_backtests")
    choice = pd.Series(selection["choice"], name="chosen").rename_axis("series_id").reset_index()
    merged = candidate_backtests.merge(choice, on="series_id", how="left")
    merged["chosen"] = merged["chosen"].fillna(selection["overall_model"])
    return merged[merged["model"] == merged["chosen"]].drop(columns="chosen").reset_index(drop=True)


# -- confidence and anomalies -------------------------------------------------------------------------------------
def compute_confidence(candidate_backtests: pd.DataFrame, selection: dict, primary_panel: pd.DataFrame,
                       panel: dict[str, Any]) -> pd.DataFrame:
    """Per-series forecast confidence (see ``ts_kedro.interpretability.confidence``) at ``panel.levels``."""
    return confidence_scores(candidate_backtests, selection, primary_panel, panel["levels"])


def anomaly_level(reporting: dict[str, Any], panel: dict[str, Any]) -> int:
    """The interval level whose bounds make an actual "unexpected": ``reporting.anomalies.level``, or where that is
    null the widest of ``panel.levels`` (the strictest; a panel forecast with other levels than the shipped 80 and 95
    gets a report without configuring it). A set level must be one of ``panel.levels``: the models produce no
    other intervals. Checked before the first node too (``hooks.ParameterChecksHook``)."""
    levels = [int(v) for v in (panel.get("levels") or [])]
    configured = (reporting.get("anomalies") or {}).get("level")
    if configured is None:
        if not levels:
            raise InterpretabilityError("reporting.anomalies.level is null and panel.levels is empty: set "
                                        "panel.levels (e.g. [80, 95]) in conf/base/parameters.yml")
        return max(levels)
    if isinstance(configured, bool) or not isinstance(configured, (int, float)) or int(configured) != configured \
            or int(configured) not in levels:
        raise InterpretabilityError(
            f"reporting.anomalies.level is {configured!r}, but the models forecast only the intervals of "
            f"panel.levels {levels}: set it to one of them, or to null for the widest "
            f"(conf/base/parameters_reporting.yml)")
    return int(configured)


def check_reporting_params(reporting: dict[str, Any], panel: dict[str, Any]) -> None:
    """What ``build_anomaly_report`` would refuse after Day 0's training, checked before it starts."""
    anomaly_level(reporting, panel)


def build_anomaly_report(primary_panel: pd.DataFrame, candidate_backtests: pd.DataFrame, selection: dict,
                         reporting: dict[str, Any], panel: dict[str, Any]) -> tuple[pd.DataFrame, dict]:
    """History anomalies plus the backtest actuals that the champion did not expect (outside the interval of
    ``anomaly_level``, or a residual outlier).

    On Day 0 the "newly arrived actuals" are the backtest windows' actuals: each was unseen by the model that
    forecast it.

    Returns:
        The flagged points (``source`` history | actuals) and a JSON summary (counts per series and source).
    """
    settings = reporting["anomalies"]
    level = anomaly_level(reporting, panel)
    history = history_anomalies(primary_panel)
    scored = actuals_anomalies(chosen_backtests(candidate_backtests, selection), level, settings["z_threshold"])
    actuals = scored.loc[scored["is_anomaly"], ["series_id", "timestamp", "model", "actual", "mean", f"lo-{level}",
                                                f"hi-{level}", "residual", "robust_z", "reason"]]
    report = pd.concat([history.rename(columns={"value": "actual"}), actuals.assign(source="actuals")],
                       ignore_index=True)
    report = report[["series_id", "timestamp", "source", "model", "actual", "mean", f"lo-{level}", f"hi-{level}",
                     "residual", "robust_z", "reason"]].sort_values(["series_id", "timestamp"], ignore_index=True)
    summary = {
        "level": level,
        "z_threshold": float(settings["z_threshold"]),
        "n_history_points": int(len(primary_panel)),
        "n_history_anomalies": int(len(history)),
        "n_actuals_scored": int(len(scored)),
        "n_actuals_anomalies": int(scored["is_anomaly"].sum()),
        "n_outside_interval": int(scored["outside_interval"].sum()),
        "n_residual_outliers": int(scored["residual_outlier"].sum()),
        "outside_interval_share": float(scored["outside_interval"].mean()) if len(scored) else 0.0,
        "per_series": _counts_per_series(report),
    }
    return report, summary


def _counts_per_series(report: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{series: {"history": n, "actuals": n}}`` for the series with a flagged point, in one group-by (a filter
    per series is quadratic: a 100,000-series run was stopped after 28 minutes in it, docs/benchmarks.md "Scale")."""
    counts = report.groupby(["series_id", "source"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=["history", "actuals"], fill_value=0)
    return {str(sid): {"history": int(row["history"]), "actuals": int(row["actuals"])}
            for sid, row in sorted(counts.iterrows(), key=lambda item: str(item[0]))}


# -- plots --------------------------------------------------------------------------------------------------------
def plot_seasonal_decomposition(series_decomposition: pd.DataFrame, primary_panel: pd.DataFrame,
                                report_series: list[str]) -> Figure:
    """Observed, trend, each seasonal component and remainder of the selected series (one column per series)."""
    require_columns(series_decomposition, ["series_id", "timestamp", "trend", "resid"], "series_decomposition")
    seasonal = [c for c in series_decomposition.columns if c.startswith("seasonal_")]
    rows = ["observed", "trend", *seasonal, "resid"]
    figure, axes = new_figure(len(rows), len(report_series), 4.2 * len(report_series), 1.6 * len(rows) + 0.6)
    for col, series_id in enumerate(report_series):
        parts = series_decomposition[series_decomposition["series_id"] == series_id]
        observed = primary_panel[primary_panel["series_id"] == series_id]
        for row, name in enumerate(rows):
            ax = axes[row, col]
            if name == "observed":
                ax.plot(observed["timestamp"], observed["value"], lw=0.6, color="black")
            elif parts[name].notna().any():
                ax.plot(parts["timestamp"], parts[name], lw=0.6, color="#1f77b4" if name != "resid" else "#7f7f7f")
            else:
                ax.text(0.5, 0.5, "series too short for this period", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
            if row == 0:
                ax.set_title(series_id, fontsize=10)
            ax.tick_params(labelsize=7)
            concise_dates(ax, 4)
            if row < len(rows) - 1:
                ax.tick_params(labelbottom=False)
    figure.suptitle("Seasonal decomposition (in-sample STL/MSTL)")
    return figure


def plot_feature_correlation(feature_panel: pd.DataFrame, feature_manifest: dict, reporting: dict[str, Any]) -> Figure:
    """Correlation heatmap of the target and every engineered feature, ordered by feature group."""
    groups = feature_manifest.get("groups") or {}
    ordered = [f for group in groups.values() for f in group if f in feature_panel.columns]
    columns = ["value", *dict.fromkeys(ordered)]
    if len(columns) < 2:
        return note_figure("Feature correlation", "feature_panel holds no engineered feature to correlate")
    sample = feature_panel[columns]
    max_rows = int(reporting["correlation"]["max_rows"])
    if len(sample) > max_rows:  # a fixed random sample keeps the node fast on large panels; the heatmap barely moves
        sample = sample.sample(max_rows, random_state=0)
    corr = sample.astype(float).corr(method=reporting["correlation"]["method"])
    size = max(6.0, 0.28 * len(columns) + 2)
    figure, axes = new_figure(1, 1, size + 1.5, size)
    ax = axes[0, 0]
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(columns)), columns, fontsize=7)
    boundary = 0.5  # lines between groups make the block structure readable
    for group in groups.values():
        boundary += len([f for f in group if f in feature_panel.columns])
        ax.axhline(boundary, color="black", lw=0.6)
        ax.axvline(boundary, color="black", lw=0.6)
    figure.colorbar(image, ax=ax, shrink=0.7, label=f"{reporting['correlation']['method']} correlation")
    ax.set_title(f"Feature correlation ({len(sample):,} rows; groups: {', '.join(groups)})")
    return figure


def _bands(ax, frame: pd.DataFrame, levels: list[int], colour: str) -> None:
    for level in sorted(levels, reverse=True):
        alpha = 0.15 + 0.2 * (1 - level / 100) / (1 - min(levels) / 100 + 1e-9) if len(levels) > 1 else 0.25
        ax.fill_between(frame["timestamp"], frame[f"lo-{level}"], frame[f"hi-{level}"], color=colour,
                        alpha=min(alpha, 0.45), lw=0)


def plot_prediction_vs_actual(primary_panel: pd.DataFrame, candidate_backtests: pd.DataFrame, selection: dict,
                              forecasts: pd.DataFrame, anomaly_report: pd.DataFrame, report_series: list[str],
                              reporting: dict[str, Any], panel: dict[str, Any]) -> Figure:
    """History tail, the champion's backtest windows and future forecast with intervals, and anomalies."""
    levels = [int(level) for level in panel["levels"]]
    backtests = chosen_backtests(candidate_backtests, selection)
    forecasts = forecasts.assign(timestamp=pd.to_datetime(forecasts["timestamp"]))
    anomalies = anomaly_report.assign(timestamp=pd.to_datetime(anomaly_report["timestamp"]))
    tail = reporting.get("history_tail")
    if tail is None:  # the backtest windows plus two horizons of history before them
        span = backtests.groupby("series_id")["timestamp"].nunique().max() if not backtests.empty else 0
        tail = int(span) + 2 * int(panel["horizon"])
    tail = int(tail)
    figure, axes = new_figure(len(report_series), 1, 13, 3.0 * len(report_series))
    for row, series_id in enumerate(report_series):
        ax = axes[row, 0]
        history = primary_panel[primary_panel["series_id"] == series_id].tail(tail)
        model = selection["choice"].get(series_id, selection["overall_model"])
        colour = model_colour(model)
        ax.plot(history["timestamp"], history["value"], color="black", lw=0.9, label="actual")
        for _, window in backtests[backtests["series_id"] == series_id].groupby("window"):
            _bands(ax, window, levels, colour)
            ax.plot(window["timestamp"], window["mean"], color=colour, lw=1.0, ls="--")
            ax.axvline(window["timestamp"].min(), color="grey", ls=":", lw=0.8)
        future = forecasts[forecasts["series_id"] == series_id]
        if not future.empty:
            _bands(ax, future, levels, colour)
            ax.plot(future["timestamp"], future["mean"], color=colour, lw=1.4)
            ax.axvline(history["timestamp"].max(), color="black", ls="-", lw=0.8)
        shown = anomalies[(anomalies["series_id"] == series_id)
                          & (anomalies["timestamp"] >= history["timestamp"].min())]
        for source, marker, mcolour in (("history", "x", "#ff7f0e"), ("actuals", "o", "#d62728")):
            points = shown[shown["source"] == source]
            ax.scatter(points["timestamp"], points["actual"], marker=marker, s=28, color=mcolour, zorder=5,
                       facecolors="none" if marker == "o" else mcolour)
        ax.set_title(f"{series_id}: champion {model}", fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
        concise_dates(ax, 10)
    legend = [
        Line2D([], [], color="black", lw=0.9, label="actual"),
        Line2D([], [], color="grey", ls="--", label="backtest forecast (champion)"),
        Line2D([], [], color="grey", lw=1.4, label="future forecast"),
        Line2D([], [], color="grey", lw=6, alpha=0.3, label=f"intervals {', '.join(f'{lv}%' for lv in levels)}"),
        Line2D([], [], marker="x", ls="", color="#ff7f0e", label="history anomaly"),
        Line2D([], [], marker="o", ls="", color="#d62728", markerfacecolor="none", label="unexpected actual"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncol=6, fontsize=8)
    figure.suptitle("Prediction vs actual: backtest windows (dotted line = cutoff) and future horizon")
    return figure


def _with_steps(candidate_backtests: pd.DataFrame) -> pd.DataFrame:
    frame = candidate_backtests.sort_values(["model", "series_id", "window", "timestamp"]).copy()
    frame["step"] = frame.groupby(["model", "series_id", "window"]).cumcount() + 1
    denominator = (frame["actual"].abs() + frame["mean"].abs()).replace(0, np.nan)
    frame["sape"] = (200 * (frame["actual"] - frame["mean"]).abs() / denominator).fillna(0.0)
    scale = frame.groupby("series_id")["actual"].transform(lambda v: v.abs().mean()).replace(0, np.nan)
    frame["scaled_residual"] = (frame["actual"] - frame["mean"]) / scale
    return frame


def _shown_series(reporting: dict[str, Any]) -> int | None:
    """How many series a per-series bar chart draws (``reporting.max_series_shown``; None: all).

    One bar and one tick label per series does not scale: at 100,000 series the error-by-series chart sat in
    matplotlib for over 10 minutes and the confidence chart would have been 35,000 inches wide (0.35 per series).
    """
    shown = reporting["max_series_shown"]
    return None if shown is None else int(shown)


def plot_error_analysis(candidate_backtests: pd.DataFrame, selection: dict, reporting: dict[str, Any]) -> Figure:
    """Backtest errors by horizon step, by series, by model family, and the residual distribution.

    The error-by-series chart draws the ``reporting.max_series_shown`` worst series (all when null); the other
    three panels use every series.
    """
    frame = _with_steps(candidate_backtests)
    models = sorted(frame["model"].unique())
    figure, axes = new_figure(2, 2, 14, 9)
    ax = axes[0, 0]
    for index, model in enumerate(models):
        by_step = frame[frame["model"] == model].groupby("step")["sape"].mean()
        ax.plot(by_step.index, by_step.to_numpy(), color=model_colour(model, index), label=model)
    ax.set(xlabel="horizon step", ylabel="sMAPE (%)", title="Error by horizon step")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    champion = chosen_backtests(candidate_backtests, selection)
    champion = _with_steps(champion)
    per_series = champion.groupby("series_id").agg(smape=("sape", "mean"), model=("model", "first"))
    per_series = per_series.sort_values("smape", ascending=False)
    total, shown = len(per_series), _shown_series(reporting)
    per_series = per_series.head(shown) if shown is not None else per_series
    ax.bar(range(len(per_series)), per_series["smape"],
           color=[model_colour(m, models.index(m) if m in models else 0) for m in per_series["model"]])
    ax.set_xticks(range(len(per_series)), per_series.index, rotation=90, fontsize=7)
    which = f"the {len(per_series)} worst of {total} series" if len(per_series) < total else "every series"
    ax.set(ylabel="sMAPE (%)", title=f"Error by series ({which}: champion of each series; colour = model)")

    ax = axes[1, 0]
    per_model_series = frame.groupby(["model", "series_id"])["sape"].mean()
    data = [per_model_series.loc[model].to_numpy() for model in models]
    boxes = ax.boxplot(data, patch_artist=True, showfliers=True)
    ax.set_xticks(range(1, len(models) + 1), models)
    for patch, model, index in zip(boxes["boxes"], models, range(len(models))):
        patch.set_facecolor(model_colour(model, index))
        patch.set_alpha(0.5)
    ax.set(ylabel="per-series sMAPE (%)", title="Error by model family (one point per series)")

    ax = axes[1, 1]
    residuals = frame["scaled_residual"].replace([np.inf, -np.inf], np.nan).dropna()
    low, high = np.nanpercentile(residuals, [0.5, 99.5]) if len(residuals) else (-1, 1)
    bins = np.linspace(low, high, 60)
    for index, model in enumerate(models):
        values = frame.loc[frame["model"] == model, "scaled_residual"].clip(low, high)
        ax.hist(values, bins=bins, histtype="step", density=True, color=model_colour(model, index), label=model)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="(actual - forecast) / mean |actual| of the series", ylabel="density",
           title="Residual distribution (0.5-99.5 percentile range)")
    ax.legend(fontsize=8)
    figure.suptitle("Backtest error analysis (all candidates, all rolling-origin windows)")
    return figure


def plot_model_comparison(candidate_scores: pd.DataFrame, panel: dict[str, Any]) -> Figure:
    """sMAPE, MASE and interval coverage of every candidate: bar = mean over series, dots = series."""
    levels = [int(level) for level in panel["levels"]]
    metrics = ["smape", "mase", *[f"coverage-{level}" for level in levels]]
    require_columns(candidate_scores, ["model", "series_id", *metrics], "candidate_scores")
    models = sorted(candidate_scores["model"].unique())
    figure, axes = new_figure(1, len(metrics), 4.2 * len(metrics), 4.2)
    rng = np.random.default_rng(0)  # jitter only, fixed so the picture does not change between runs
    for ax, metric in zip(axes[0], metrics):
        for index, model in enumerate(models):
            values = candidate_scores.loc[candidate_scores["model"] == model, metric].dropna()
            ax.bar(index, values.mean(), color=model_colour(model, index), alpha=0.6)
            ax.scatter(index + rng.uniform(-0.2, 0.2, len(values)), values, s=8, color="black", zorder=3)
            ax.text(index, values.mean(), f"{values.mean():.3g}", ha="center", va="bottom", fontsize=8)
        if metric.startswith("coverage-"):
            nominal = int(metric.split("-")[1]) / 100
            ax.axhline(nominal, color="black", ls="--", lw=1, label=f"nominal {nominal:.0%}")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=8, loc="lower right")
        if metric == "mase":
            ax.axhline(1.0, color="grey", ls=":", lw=1)  # 1 = as good as the in-sample seasonal naive
        ax.set_xticks(range(len(models)), models, rotation=30, fontsize=8)
        ax.set_title(metric)
    figure.suptitle("Model comparison on the backtest (bar = mean over series, dots = series)")
    return figure


def plot_confidence(confidence: pd.DataFrame, reporting: dict[str, Any]) -> Figure:
    """Per-series confidence with its two factors, calibration and sharpness: the ``reporting.max_series_shown``
    least confident series (all when null; the CSV ``forecasts_with_confidence`` has every series)."""
    ordered = confidence.sort_values("confidence")
    total, shown = len(ordered), _shown_series(reporting)
    ordered = ordered.head(shown) if shown is not None else ordered
    figure, axes = new_figure(1, 1, max(8, 0.35 * len(ordered) + 2), 4.5)
    ax = axes[0, 0]
    x = np.arange(len(ordered))
    ax.bar(x, ordered["confidence"], color=[model_colour(m) for m in ordered["model"]], alpha=0.7, label="confidence")
    ax.plot(x, ordered["calibration"], "o", color="black", ms=4, label="calibration")
    ax.plot(x, ordered["sharpness"], "s", color="#ff7f0e", ms=4, label="sharpness")
    ax.set_xticks(x, ordered["series_id"], rotation=90, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    which = f"the {len(ordered)} least confident of {total} series" if len(ordered) < total else "every series"
    ax.set_title(f"Forecast confidence per series = calibration x sharpness ({which}; bar colour = champion model)")
    return figure


def plot_drift_history(drift_summary_history: list[dict]) -> Figure:
    """Drift share and performance ratio of every Day-N monitoring run, with thresholds; a note before Day N."""
    if not drift_summary_history:
        return note_figure("Drift over time",
                           "No Day-N monitoring run yet: drift_summary has no saved version.\n"
                           "Run the monitoring pipeline on new data to fill this plot.")
    frame = pd.DataFrame(drift_summary_history)
    frame["checked_at"] = pd.to_datetime(frame.get("checked_at", frame["version"]), utc=True, errors="coerce")
    frame = frame.sort_values("checked_at")
    thresholds = frame["thresholds"].iloc[-1] if "thresholds" in frame else {}
    figure, axes = new_figure(2, 1, 10, 6, sharex=True)
    for ax, column, threshold_key, label in (
        (axes[0, 0], "drift_share", "drift_share", "share of drifted series"),
        (axes[1, 0], "performance_ratio", "performance_ratio", "realized / backtest error"),
    ):
        values = pd.to_numeric(frame.get(column), errors="coerce")
        ax.plot(frame["checked_at"], values, marker="o", color="#1f77b4")
        drifted = frame["drift"].astype(bool) if "drift" in frame else pd.Series(False, index=frame.index)
        ax.scatter(frame.loc[drifted, "checked_at"], values[drifted], color="#d62728", zorder=5, s=50,
                   label="drift verdict")
        if isinstance(thresholds, dict) and threshold_key in thresholds:
            ax.axhline(float(thresholds[threshold_key]), color="black", ls="--", lw=1, label="threshold")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    figure.suptitle(f"Drift over time ({len(frame)} monitoring runs)")
    return figure


# -- feature importance -------------------------------------------------------------------------------------------
def lstm_importance(model, primary_panel: pd.DataFrame, reporting: dict[str, Any]) -> pd.DataFrame:
    """LSTM permutation importance by input group (settings: ``reporting.importance.lstm``).

    A panel with fewer than two series long enough for a held-out window (a one-series panel, say) has nothing to
    permute across: the table is empty (its columns kept) and the plot says why, instead of stopping the run.
    """
    settings = reporting["importance"]["lstm"]
    try:
        return lstm_permutation_importance(model, primary_panel, settings["n_repeats"], settings["seed"])
    except TooFewWindowsError as reason:
        logger.warning("lstm importance skipped: %s", reason)
        return pd.DataFrame(columns=LSTM_IMPORTANCE_COLUMNS)


def plot_lstm_importance(importance: pd.DataFrame) -> Figure:
    """Error increase when each LSTM input group is permuted (error bars: spread over repeats)."""
    if importance.empty:
        return note_figure("LSTM permutation importance",
                           "Not computed: permutation importance shuffles the LSTM's inputs across the held-out "
                           "windows of different series, and this panel has fewer than two series with a "
                           "whole window (the lookback plus one horizon), or the LSTM fitted no series at all "
                           "(every one served by its fallback: the data-quality report's families say why).")
    figure, axes = new_figure(1, 1, 7, 3.5)
    ax = axes[0, 0]
    ordered = importance.sort_values("importance")
    ax.barh(ordered["group"], ordered["importance"], xerr=ordered["permuted_error_std"], color="#d62728", alpha=0.7)
    for y, (value, ratio) in enumerate(zip(ordered["importance"], ordered["importance_ratio"])):
        ax.text(value, y, f"  x{ratio:.2f}", va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"increase of scaled MAE (baseline {importance['baseline_error'].iloc[0]:.4f})")
    ax.set_title(f"LSTM permutation importance ({importance['n_windows'].iloc[0]} held-out windows, "
                 f"{importance['n_repeats'].iloc[0]} repeats)")
    return figure


def arima_coefficient_table(model, reporting: dict[str, Any]) -> pd.DataFrame:
    """ARIMA coefficients with p-values per series (settings: ``reporting.importance.arima``)."""
    return arima_coefficients(model, float(reporting["importance"]["arima"]["alpha"]))


def plot_arima_coefficients(coefficients: pd.DataFrame, reporting: dict[str, Any]) -> Figure:
    """Per-term coefficient values across series (filled = significant) and the share of series where significant."""
    if coefficients.empty:
        return note_figure("ARIMA coefficients", FITTED_NOTHING.format(family="arima"))
    alpha = float(reporting["importance"]["arima"]["alpha"])
    terms = [t for t in coefficients["term"].unique() if t != "sigma2"]  # sigma2 is a variance, not an effect
    if not terms:
        return note_figure("ARIMA coefficients", "every series was fitted with ARIMA(0,d,0): no coefficient to show")
    figure, axes = new_figure(1, 2, 13, 4.5)
    ax = axes[0, 0]
    rng = np.random.default_rng(0)
    for index, term in enumerate(terms):
        rows = coefficients[coefficients["term"] == term]
        x = index + rng.uniform(-0.15, 0.15, len(rows))
        significant = rows["significant"].to_numpy(bool)
        ax.scatter(x[significant], rows["coef"][significant], color="#1f77b4", s=18, label="significant" if index == 0 else None)
        ax.scatter(x[~significant], rows["coef"][~significant], facecolors="none", edgecolors="#1f77b4", s=18,
                   label="not significant" if index == 0 else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(terms)), terms)
    ax.set(title=f"Coefficients per series (p < {alpha:g} filled)", ylabel="coefficient")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    share = coefficients[coefficients["term"].isin(terms)].groupby("term")["significant"].agg(["mean", "size"])
    share = share.reindex(terms)
    ax.bar(range(len(terms)), share["mean"], color="#1f77b4", alpha=0.7)
    for index, (value, size) in enumerate(zip(share["mean"], share["size"])):
        ax.text(index, value, f"{value:.0%} of {size}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(terms)), terms)
    ax.set_ylim(0, 1.1)
    ax.set(title="Share of series where the term is significant", ylabel="share")
    orders = coefficients.drop_duplicates("series_id")["order"].value_counts()
    figure.suptitle("ARIMA (on the seasonally adjusted series): " + ", ".join(f"{o} x{n}" for o, n in orders.items()))
    return figure


def prophet_components(model, reporting: dict[str, Any]) -> pd.DataFrame:
    """Prophet component shares of variance per series (settings: ``reporting.importance.prophet``)."""
    return prophet_component_shares(model, reporting["importance"]["prophet"].get("max_series"))


def plot_prophet_components(shares: pd.DataFrame) -> Figure:
    """Stacked share of variance of trend / seasonalities / holidays per series, plus the mean over series."""
    if shares.empty:
        return note_figure("Prophet components", FITTED_NOTHING.format(family="prophet"))
    table = shares.pivot(index="series_id", columns="component", values="share").fillna(0.0)
    table.loc["(mean)"] = table.mean()
    figure, axes = new_figure(1, 1, max(8, 0.35 * len(table) + 2), 4.5)
    ax = axes[0, 0]
    bottom = np.zeros(len(table))
    palette = {"trend": "#7f7f7f", "daily": "#1f77b4", "weekly": "#2ca02c", "yearly": "#ff7f0e", "holidays": "#d62728"}
    for component in table.columns:
        ax.bar(range(len(table)), table[component], bottom=bottom, label=component,
               color=palette.get(component, None))
        bottom += table[component].to_numpy()
    ax.set_xticks(range(len(table)), table.index, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.0)
    ax.set(ylabel="share of variance of the fitted values", title="Prophet component contributions")
    ax.legend(fontsize=8, loc="upper right")
    return figure
