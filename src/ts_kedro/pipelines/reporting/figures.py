"""Small drawing helpers shared by the reporting nodes (matplotlib object API: no pyplot state, no GUI backend)."""
from __future__ import annotations

import matplotlib.dates as mdates
from matplotlib.figure import Figure

MODEL_COLOURS = {
    "seasonal_naive": "#7f7f7f", "arima": "#1f77b4", "prophet": "#2ca02c", "lstm": "#d62728", "ensemble": "#9467bd",
}
_FALLBACK = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e"]


def model_colour(model: str, index: int = 0) -> str:
    """A stable colour per family so every plot uses the same one for the same model."""
    return MODEL_COLOURS.get(model, _FALLBACK[index % len(_FALLBACK)])


def new_figure(n_rows: int, n_cols: int, width: float, height: float, **subplot_kw):
    """A figure and a 2-D array of axes (always 2-D, even for one panel)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)
    return figure, axes


#: the note of an importance plot whose family fitted no series of the panel (all served by its fallback)
FITTED_NOTHING = ("Not computed: {family} fitted no series of this panel; every series is served by its fallback "
                  "(the data-quality report's families say why, e.g. too short, or a history longer than the "
                  "family can hold).")


def note_figure(title: str, note: str) -> Figure:
    """A valid, readable figure that only states why there is nothing to draw yet."""
    figure, axes = new_figure(1, 1, 8, 3)
    axes[0, 0].axis("off")
    axes[0, 0].text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=11)
    figure.suptitle(title)
    return figure


def concise_dates(ax, max_ticks: int = 5) -> None:
    """Few, short date labels: narrow panels otherwise print overlapping full timestamps."""
    locator = mdates.AutoDateLocator(maxticks=max_ticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
