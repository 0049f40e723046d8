"""Two small plots drawn with Pillow (no matplotlib): a histogram and line curves, saved as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from utils.visuals import save_png

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 70, 20, 40, 50


def _axes(title: str, xlabel: str, ylabel: str, x0: float, x1: float, y0: float, y1: float):
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline="black")
    d.text((W // 2 - 4 * len(title), 12), title, fill="black")
    d.text((W // 2 - 3 * len(xlabel), H - 18), xlabel, fill="black")
    d.text((4, TOP - 16), ylabel, fill="black")

    def sx(x):
        return LEFT + (x - x0) / max(x1 - x0, 1e-9) * (W - LEFT - RIGHT)

    def sy(y):
        return H - BOTTOM - (y - y0) / max(y1 - y0, 1e-9) * (H - TOP - BOTTOM)

    for v in np.linspace(y0, y1, 5):
        d.line([LEFT - 4, sy(v), LEFT, sy(v)], fill="black")
        d.text((6, sy(v) - 6), f"{v:.0f}", fill="black")
    for v in np.linspace(x0, x1, 6):
        d.line([sx(v), H - BOTTOM, sx(v), H - BOTTOM + 4], fill="black")
        d.text((sx(v) - 10, H - BOTTOM + 8), f"{v:.0f}", fill="black")
    return img, d, sx, sy


def histogram_png(
    values: Sequence[float], path: str | Path, title: str, bins: int = 20, xlabel: str = "return"
) -> None:
    """Histogram of ``values`` with their mean marked."""
    values = np.asarray(values, dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    img, d, sx, sy = _axes(title, xlabel, "episodes", lo, hi, 0, max(int(counts.max()), 1))
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c:
            d.rectangle([sx(a) + 1, sy(c), sx(b) - 1, sy(0)], fill=COLOURS[0])
    mean = float(values.mean())
    d.line([sx(mean), TOP, sx(mean), H - BOTTOM], fill=COLOURS[3], width=2)
    d.text((sx(mean) + 4, TOP + 4), f"mean {mean:.1f}", fill=COLOURS[3])
    save_png(np.asarray(img), path)


def curves_png(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str,
    xlabel: str = "generation",
    ylabel: str = "return",
) -> None:
    """Line plot of ``{label: (xs, ys)}`` with a legend."""
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    x0, x1 = float(xs.min()), float(max(xs.max(), xs.min() + 1))
    y0, y1 = float(ys.min()), float(max(ys.max(), ys.min() + 1))
    img, d, sx, sy = _axes(title, xlabel, ylabel, x0, x1, y0, y1)
    for k, (label, (x, y)) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(sx(a), sy(b)) for a, b in zip(x, y, strict=True)]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        for px, py in points:
            d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        d.text((LEFT + 10, TOP + 8 + 14 * k), label, fill=colour)
    save_png(np.asarray(img), path)
