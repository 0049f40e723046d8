"""Frame preprocessing, in one place for generation, training and control: 96x96 RGB -> 64x64 uint8.

Two modes:

* ``crop84`` (default, the paper's): drop the 12-row dashboard (rows 84..95), then area-average the
  84x96 playfield to 64x64.
* ``full``: area-average the whole 96x96 frame, dashboard included (what the earlier PyTorch port fed
  its VAE).

Every rollout file records the mode it was made with, and later stages read it from there.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PREPROCESSINGS: tuple[str, ...] = ("crop84", "full")
DEFAULT_PREPROCESSING = "crop84"
FRAME_SIZE = 64
DASHBOARD_ROW = 84  # first dashboard row of the 96x96 CarRacing frame


@lru_cache(maxsize=8)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 weights of exact area averaging along one axis.

    Output pixel ``i`` covers input interval ``[i * s, (i + 1) * s)`` with ``s = n_in / n_out``; each
    input pixel contributes the length of its overlap with it, divided by ``s``. Rows sum to 1.
    """
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            weights[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
    weights /= scale
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero entries of :func:`area_matrix`: (n_out, K) input indices and float32 weights.

    Each output pixel overlaps at most K = ceil(scale) + 1 input pixels (3 for 84 or 96 -> 64);
    missing taps get weight 0.
    """
    m = area_matrix(n_in, n_out)
    k = int((m > 0).sum(axis=1).max())
    index = np.zeros((n_out, k), np.int64)
    weight = np.zeros((n_out, k), np.float32)
    for i in range(n_out):
        nz = np.flatnonzero(m[i])
        index[i, : len(nz)], weight[i, : len(nz)] = nz, m[i, nz]
    return index, weight


def preprocess(frames: np.ndarray, mode: str = DEFAULT_PREPROCESSING) -> np.ndarray:
    """Crop and area-resize CarRacing frames.

    Args:
        frames: (96, 96, 3) or (N, 96, 96, 3) uint8.
        mode: one of :data:`PREPROCESSINGS`.
    Returns:
        (64, 64, 3) or (N, 64, 64, 3) uint8, rounded to nearest.
    """
    if mode not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {mode!r}; expected one of {PREPROCESSINGS}")
    frames = np.asarray(frames)
    if frames.shape[-3:] != (96, 96, 3):
        raise ValueError(f"expected (..., 96, 96, 3) frames, got {frames.shape}")
    if mode == "crop84":
        frames = frames[..., :DASHBOARD_ROW, :, :]
    x = frames.reshape(-1, *frames.shape[-3:]).astype(np.float32)  # (N, h, w, 3)
    # Area averaging as a weighted sum of at most 3 neighbouring rows, then columns: the same maths as
    # multiplying by area_matrix, with ~30x fewer operations. Taps are added one after the other,
    # element by element, so a frame gets bit-identical results alone or in any batch.
    rows, row_w = area_taps(x.shape[1], FRAME_SIZE)
    tall = row_w[:, 0, None, None] * x[:, rows[:, 0]]
    for k in range(1, rows.shape[1]):
        tall += row_w[:, k, None, None] * x[:, rows[:, k]]  # (N, 64, w, 3)
    cols, col_w = area_taps(x.shape[2], FRAME_SIZE)
    out = col_w[:, 0, None] * tall[:, :, cols[:, 0]]
    for k in range(1, cols.shape[1]):
        out += col_w[:, k, None] * tall[:, :, cols[:, k]]  # (N, 64, 64, 3)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.reshape(*frames.shape[:-3], FRAME_SIZE, FRAME_SIZE, 3)
