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
from threadpoolctl import threadpool_limits

# A frame is two small matrix products: BLAS threads only add synchronisation, and with other busy
# processes on the machine (rollout workers, training) a threaded OpenBLAS slows them ~100x (measured
# 56 ms instead of 0.3 ms per frame). One thread for BLAS in every process that preprocesses frames.
threadpool_limits(limits=1, user_api="blas")

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
    h, w = frames.shape[-3], frames.shape[-2]
    rows, cols = area_matrix(h, FRAME_SIZE), area_matrix(w, FRAME_SIZE)
    # Two small matrix products per frame (rows over height, then columns over width): exact area
    # averaging without per-pixel Python. The batch axis is looped so every frame goes through the
    # same kernels whatever the batch size, and so gets bit-identical results alone or in a batch.
    x = frames.reshape(-1, h, w * 3).astype(np.float32)
    out = np.empty((x.shape[0], FRAME_SIZE, 3, FRAME_SIZE), np.float32)
    cols_t = np.ascontiguousarray(cols.T)
    for i in range(x.shape[0]):
        tall = (rows @ x[i]).reshape(FRAME_SIZE, w, 3)  # (64, w, 3)
        by_channel = np.ascontiguousarray(tall.transpose(0, 2, 1)).reshape(FRAME_SIZE * 3, w)
        out[i] = (by_channel @ cols_t).reshape(FRAME_SIZE, 3, FRAME_SIZE)  # (64 rows, 3, 64 cols)
    out = np.clip(np.rint(out.transpose(0, 1, 3, 2)), 0, 255).astype(np.uint8)
    return out.reshape(*frames.shape[:-3], FRAME_SIZE, FRAME_SIZE, 3)
