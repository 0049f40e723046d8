"""Two small plots saved as PNG, a histogram and line curves, drawn with matplotlib's Agg backend
(``Figure`` + ``FigureCanvasAgg``, no pyplot and no display)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.checkpoint import atomic_write

FIGSIZE = (8.0, 5.0)  # inches; 800x500 pixels at DPI
DPI = 100


def _new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A figure with one titled, labelled, gridded axes whose ticks fall on round numbers."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10]))
    return fig, ax


def _save(fig: Figure, ax: Axes, path: str | Path) -> None:
    """Add a legend if anything is labelled, then write the PNG atomically and free the figure."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", framealpha=0.85)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.clear()
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _reference_colour(k: int) -> str:
    """Colours for reference lines, taken from the end of the default cycle to stay apart from data."""
    return ["tab:gray", "tab:olive", "tab:cyan", "tab:brown", "tab:pink"][k % 5]


def histogram_png(
    values: Sequence[float],
    path: str | Path,
    title: str,
    bins: int = 20,
    xlabel: str = "return",
    reference: dict[str, float] | None = None,
) -> None:
    """Histogram of ``values`` (episodes per bin) with the mean and ``{label: x}`` reference lines."""
    values = np.asarray(values, dtype=float).ravel()
    fig, ax = _new_axes(title, xlabel, "episodes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        if hi - lo < 1e-9:  # constant values: one bar centred on the value, as wide as a bin would be
            span = max([abs(float(x) - lo) for x in (reference or {}).values()], default=0.0)
            width = max(1.0, span / bins)
            bins, lo, hi = 1, lo - width / 2, hi + width / 2
            ax.update_datalim([(lo - 2 * width, 0.0), (hi + 2 * width, 0.0)])
        ax.hist(values, bins=bins, range=(lo, hi), color="tab:blue", edgecolor="white", linewidth=0.5)
        mean = float(values.mean())
        ax.axvline(mean, color="tab:red", linewidth=2, label=f"mean {mean:.1f}")
    for k, (label, x) in enumerate((reference or {}).items()):
        ax.axvline(float(x), color=_reference_colour(k), linestyle="--", linewidth=1.5, label=label)
    _save(fig, ax, path)


def curves_png(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str,
    xlabel: str = "generation",
    ylabel: str = "return",
    reference: dict[str, float] | None = None,
) -> None:
    """Line plot of ``{label: (xs, ys)}`` with markers, ``{label: y}`` reference lines and a legend."""
    fig, ax = _new_axes(title, xlabel, ylabel)
    for k, (label, (xs, ys)) in enumerate(series.items()):
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        if xs.size == 0:
            continue
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.5, color=f"C{k % 10}", label=label)
    for k, (label, y) in enumerate((reference or {}).items()):
        ax.axhline(float(y), color=_reference_colour(k), linestyle="--", linewidth=1.5, label=label)
    _save(fig, ax, path)
