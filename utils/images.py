"""Image grids written with torch and Pillow (no torchvision)."""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from utils.checkpoint import atomic_write


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (rows * (H + p) + p, nrow * (W + p) + p, 3) uint8, row-major."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = torch.ones(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def save_png(grid: np.ndarray, path: str | os.PathLike) -> None:
    """Write an (H, W, 3) uint8 array as a PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
