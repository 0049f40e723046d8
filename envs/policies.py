"""Random action processes for data generation, shared by the env specs (each names its own).

* brownian: a_0 ~ U(low, high); a_{t+1} = clip(a_t + sqrt(dt) * N(0, I), low, high), dt = 1/50.
  Consecutive actions are correlated, so a car keeps steering, accelerating or braking for a while.
* white: every action an independent uniform sample.
* held: a ~ U(low, high) held for a random 1..max_hold steps, then redrawn (the paper's Doom policy).
* discrete_held: one of n one-hot actions, held for a random 1..max_hold steps, then redrawn.

Each returns the whole (n, dim) float32 sequence, drawn up front from ``rng``.
"""

from __future__ import annotations

import numpy as np

BROWNIAN_DT = 1.0 / 50.0


def brownian_actions(
    rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int, dt: float = BROWNIAN_DT
) -> np.ndarray:
    """(n, dim) float32 brownian action sequence (see the module docstring)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    actions = np.empty((n, low.shape[0]), dtype=np.float32)
    a = rng.uniform(low, high)
    for t in range(n):
        actions[t] = a
        a = np.clip(a + np.sqrt(dt) * rng.standard_normal(low.shape[0]), low, high)
    return actions


def white_actions(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """(n, dim) float32 independent uniform actions."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return rng.uniform(low, high, size=(n, low.shape[0])).astype(np.float32)


def _hold_lengths(rng: np.random.Generator, n: int, max_hold: int) -> list[int]:
    """Random run lengths in 1..max_hold covering n steps."""
    lengths, total = [], 0
    while total < n:
        lengths.append(int(rng.integers(1, max_hold + 1)))
        total += lengths[-1]
    return lengths


def held_actions(
    rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int, max_hold: int = 10
) -> np.ndarray:
    """(n, dim) float32: uniform actions, each held for a random 1..max_hold steps."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    runs = [np.repeat(rng.uniform(low, high)[None], k, axis=0) for k in _hold_lengths(rng, n, max_hold)]
    return np.concatenate(runs)[:n].astype(np.float32)


def discrete_held_actions(rng: np.random.Generator, n_actions: int, n: int, max_hold: int = 10) -> np.ndarray:
    """(n, n_actions) float32 one-hot actions, each held for a random 1..max_hold steps."""
    eye = np.eye(n_actions, dtype=np.float32)
    runs = [np.repeat(eye[rng.integers(n_actions)][None], k, axis=0) for k in _hold_lengths(rng, n, max_hold)]
    return np.concatenate(runs)[:n]
