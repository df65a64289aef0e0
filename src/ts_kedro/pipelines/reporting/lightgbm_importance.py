"""Reporting nodes of the lightgbm family's feature importance: the gain / SHAP table and its plot."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ts_kedro.interpretability import InterpretabilityError, lightgbm_feature_importance
from ts_kedro.interpretability.errors import require_columns

from .figures import FITTED_NOTHING, new_figure, note_figure

# One colour per feature group of LightGBMForecaster.feature_importance (the same group, the same colour in every panel)
_GROUP_COLOURS = {"lag": "#1f77b4", "seasonal": "#2ca02c", "rolling": "#9467bd", "calendar": "#ff7f0e",
                  "horizon": "#7f7f7f", "scale": "#8c564b", "covariate": "#d62728"}


def lightgbm_importance(model, model_stats: dict[str, Any], reporting: dict[str, Any]) -> pd.DataFrame:
    """Gain share and mean |SHAP| per feature and horizon bucket (settings: ``reporting.importance.lightgbm``).

    Args:
        model: ``lightgbm.model``.
        model_stats: ``lightgbm.model_stats``, whose ``feature_importance`` records hold the gain share and group.
        reporting: ``params:reporting``.

    Returns:
        The tidy table of ``ts_kedro.interpretability.lightgbm_feature_importance``.
    """
    records = model_stats.get("feature_importance")
    if not records and getattr(model, "fitted_series_ids_", None):  # fitted series, yet no gain: stats are stale
        raise InterpretabilityError("lightgbm.model_stats has no feature_importance records though the model fitted "
                                    "series: they come from another training run; rerun training")
    settings = reporting["importance"]["lightgbm"]
    # a model that fitted no series (all at the fallback) has no gain records and gives the empty table itself
    gain = pd.DataFrame(records) if records else pd.DataFrame(columns=["feature", "gain", "group"])
    return lightgbm_feature_importance(model, gain,
                                       int(settings["n_buckets"]), int(settings["max_rows"]),
                                       int(settings["seed"]))


def plot_lightgbm_importance(importance: pd.DataFrame, reporting: dict[str, Any]) -> Figure:
    """The ``top_features`` features by mean |SHAP|: SHAP bars, gain share beside them, SHAP by horizon bucket.

    Returns:
        A figure of two panels (three when the table has horizon buckets) sharing the feature axis.
    """
    require_columns(importance, ["feature", "label", "group", "horizon_bucket", "gain_share", "mean_abs_shap",
                                 "shap_share", "n_rows", "n_series"], "lightgbm_feature_importance")
    if importance.empty:
        return note_figure("LightGBM feature importance", FITTED_NOTHING.format(family="lightgbm"))
    overall = importance[importance["horizon_bucket"] == "all"].sort_values("mean_abs_shap", ascending=False)
    shown = overall.head(int(reporting["importance"]["lightgbm"]["top_features"]))
    ordered = shown.iloc[::-1]  # barh draws bottom-up: the largest on top
    buckets = [b for b in dict.fromkeys(importance["horizon_bucket"]) if b != "all"]
    n = len(ordered)
    widths = [3, 2, 0.6 * len(buckets) + 0.4] if buckets else [3, 2]
    figure, axes = new_figure(1, len(widths), 5.5 + 2.2 * len(widths), 0.32 * n + 2.2, sharey=True,
                              gridspec_kw={"width_ratios": widths})
    y = np.arange(n)
    colours = [_GROUP_COLOURS.get(group, "#bcbd22") for group in ordered["group"]]

    ax = axes[0, 0]
    ax.barh(y, ordered["mean_abs_shap"], color=colours)
    largest = float(overall["mean_abs_shap"].max())
    for position, value in zip(y, ordered["mean_abs_shap"]):
        ax.text(value, position, f" {_shap_text(value, largest)}", va="center", fontsize=7)
    ax.set_yticks(y, ordered["label"], fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, 1.18 * max(float(ordered["mean_abs_shap"].max()), 1e-9))  # all 0: trees that never split
    ax.set_xlabel("mean |SHAP| on the forecast rows (scaled target units)", fontsize=8)
    ax.set_title("SHAP: what moves the forecasts", fontsize=10)

    ax = axes[0, 1]
    gain = 100 * ordered["gain_share"].to_numpy(float)
    ax.barh(y, gain, color=colours, alpha=0.55)
    for position, value in zip(y, gain):
        ax.text(value, position, f" {value:.1f}%", va="center", fontsize=7)
    ax.set_xlim(0, 1.25 * max(float(np.nanmax(gain)), 1.0))
    ax.set_xlabel("share of the point model's split gain (%)", fontsize=8)
    ax.set_title("gain: what the trees split on", fontsize=10)

    if buckets:
        ax = axes[0, 2]
        by_bucket = importance[importance["horizon_bucket"] != "all"].pivot(
            index="feature", columns="horizon_bucket", values="mean_abs_shap").reindex(
            index=ordered["feature"], columns=buckets)
        values = by_bucket.to_numpy(float)
        ax.imshow(values, cmap="Blues", aspect="auto", origin="lower", extent=(-0.5, len(buckets) - 0.5, -0.5, n - 0.5),
                  vmin=0, vmax=float(np.nanmax(values)))
        high = 0.6 * float(np.nanmax(values))  # darker cells get white numbers
        for row in range(n):
            for col in range(len(buckets)):
                ax.text(col, row, _shap_text(values[row, col], largest), ha="center", va="center", fontsize=6.5,
                        color="white" if values[row, col] > high else "black")
        ax.set_xticks(range(len(buckets)), [f"h {b}" for b in buckets], fontsize=8)
        ax.set_title("mean |SHAP| by horizon step", fontsize=10)

    hidden = overall.iloc[len(shown):]
    note = (f"; top {len(shown)} of {len(overall)} features (the other {len(hidden)} hold "
            f"{hidden['shap_share'].sum():.0%} of the summed mean |SHAP|)" if len(hidden) else "")
    figure.suptitle(f"LightGBM feature importance: {int(overall['n_rows'].iloc[0]):,} forecast rows of "
                    f"{int(overall['n_series'].iloc[0])} series{note}", fontsize=11)
    groups = list(dict.fromkeys(ordered["group"]))
    figure.legend(handles=[Patch(color=_GROUP_COLOURS.get(g, "#bcbd22"), label=g) for g in groups],
                  loc="outside lower center", ncol=len(groups), fontsize=8, title="feature group",
                  title_fontsize=8)
    return figure


def _shap_text(value: float, largest: float) -> str:
    """Two significant digits; below 1% of the largest value only "~0" (a column of 3e-06 reads as noise)."""
    return f"{value:.2g}" if value >= 0.01 * largest else "~0"
