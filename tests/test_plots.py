"""utils.plots: the histogram and curve PNGs are valid images, survive degenerate data and show references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.plots import curves_png, histogram_png

SIZE = (800, 500)  # 8x5 inches at 100 dpi


def _pixels(path: Path) -> np.ndarray:
    """The PNG at ``path`` as an array, after checking it is an RGB(A) image of the expected size."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.mode in ("RGB", "RGBA")
        assert img.size == SIZE
        return np.asarray(img.convert("RGB"))


def _only(tmp_path: Path, *names: str) -> None:
    """``tmp_path`` holds exactly ``names``: no temporaries left behind by the atomic write."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_histogram_is_a_valid_png(tmp_path):
    rng = np.random.default_rng(0)
    histogram_png(rng.normal(800, 60, size=100), tmp_path / "h.png", "returns over 100 tracks")
    pixels = _pixels(tmp_path / "h.png")
    assert pixels.std() > 0  # not a blank canvas
    _only(tmp_path, "h.png")


@pytest.mark.parametrize("values", [[500.0] * 10, [123.4], [0.0, 0.0]], ids=["constant", "single", "zeros"])
def test_histogram_degenerate_values(tmp_path, values):
    histogram_png(values, tmp_path / "h.png", "degenerate", reference={"paper 906": 906})
    _pixels(tmp_path / "h.png")
    _only(tmp_path, "h.png")


def test_histogram_reference_line_changes_the_picture(tmp_path):
    values = np.random.default_rng(1).normal(850, 40, size=50)
    histogram_png(values, tmp_path / "plain.png", "returns")
    histogram_png(values, tmp_path / "ref.png", "returns", reference={"paper 906": 906})
    assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "ref.png"))
    # Same call twice gives the same picture, so the difference above comes from the reference line.
    histogram_png(values, tmp_path / "plain2.png", "returns")
    assert np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "plain2.png"))
    _only(tmp_path, "plain.png", "plain2.png", "ref.png")


def test_histogram_overwrites_existing_file(tmp_path):
    path = tmp_path / "h.png"
    path.write_bytes(b"not a png")
    histogram_png([1.0, 2.0, 3.0], path, "overwrite")
    _pixels(path)
    _only(tmp_path, "h.png")


def test_curves_is_a_valid_png(tmp_path):
    gens = list(range(20))
    series = {
        "CMA-ES mean": (gens, [100 + 40 * g for g in gens]),
        "best candidate": (gens, [150 + 40 * g for g in gens]),
    }
    curves_png(series, tmp_path / "c.png", "controller return per generation")
    assert _pixels(tmp_path / "c.png").std() > 0
    _only(tmp_path, "c.png")


@pytest.mark.parametrize(
    "series",
    [
        {"one point": ([3], [250.0])},
        {"empty": ([], []), "two points": ([0, 1], [5.0, 7.0])},
        {"empty": ([], [])},
        {"flat": ([0, 1, 2], [4.0, 4.0, 4.0])},
        {},
    ],
    ids=["single-point", "empty-and-full", "all-empty", "flat", "no-series"],
)
def test_curves_degenerate_series(tmp_path, series):
    curves_png(series, tmp_path / "c.png", "degenerate")
    _pixels(tmp_path / "c.png")
    curves_png(series, tmp_path / "r.png", "degenerate", reference={"paper: 906": 906.0})
    _pixels(tmp_path / "r.png")
    _only(tmp_path, "c.png", "r.png")


def test_curves_reference_line_changes_the_picture(tmp_path):
    gens = list(range(10))
    series = {"mean": (gens, [600 + 30 * g for g in gens])}
    curves_png(series, tmp_path / "plain.png", "curves")
    curves_png(series, tmp_path / "ref.png", "curves", reference={"paper: 906": 906.0})
    assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "ref.png"))
    curves_png(series, tmp_path / "plain2.png", "curves")
    assert np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "plain2.png"))
    _only(tmp_path, "plain.png", "plain2.png", "ref.png")
