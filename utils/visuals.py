"""Images and animations people look at: grids, strips, GIFs (Pillow and imageio, no torchvision)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageDraw

from utils.checkpoint import atomic_write


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] (torch) or (B, H, W, 3) uint8 -> (B, H, W, 3) uint8."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()
    return np.asarray(images, dtype=np.uint8)


def image_grid(images: np.ndarray, ncols: int, pad: int = 2, scale: int = 1, fill: int = 255) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows * (H + pad) + pad, ..., 3) image, row-major, ``scale``x nearest."""
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), fill, np.uint8)
    for i in range(n):
        y, x = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write an (H, W, 3) uint8 image as PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def save_animation(frames: Sequence[np.ndarray], path: str | Path, fps: float = 20) -> None:
    """Write (H, W, 3) uint8 frames as a GIF or MP4 (by suffix), atomically.

    MP4 needs the ``imageio-ffmpeg`` package (in requirements.txt).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        data = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)
    elif suffix == ".mp4":
        data = iio.imwrite(
            "<bytes>", np.stack(frames), extension=".mp4", fps=fps, codec="libx264", macro_block_size=1
        )
    else:
        raise ValueError(f"{path}: unsupported animation format '{suffix}'; use .gif or .mp4")
    atomic_write(path, lambda f: f.write(data))


def label_rows(grid: np.ndarray, labels: Sequence[str], width: int = 90) -> np.ndarray:
    """Prefix an image grid of ``len(labels)`` equal rows with a white margin naming each row."""
    margin = Image.new("RGB", (width, grid.shape[0]), "white")
    draw = ImageDraw.Draw(margin)
    row_height = grid.shape[0] / len(labels)
    for i, label in enumerate(labels):
        draw.text((4, int((i + 0.5) * row_height) - 6), label, fill="black")
    return np.concatenate([np.asarray(margin), grid], axis=1)
