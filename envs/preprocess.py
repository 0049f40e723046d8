"""Frame resizing shared by every env's preprocessing: exact area averaging to 64x64 uint8.

An env spec's ``preprocess`` crops what V should not see (CarRacing's dashboard, Doom's status bar), then
calls :func:`area_resize`. The result is bit-identical for a frame alone or in any batch, so generation
(one frame at a time) and control (a batch of episodes) see the same pixels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

FRAME_SIZE = 64


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


def area_resize(frames: np.ndarray) -> np.ndarray:
    """Area-average RGB frames to 64x64.

    Args:
        frames: (H, W, 3) or (N, H, W, 3), any numeric dtype.
    Returns:
        (64, 64, 3) or (N, 64, 64, 3) uint8, rounded to nearest.
    """
    frames = np.asarray(frames)
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
