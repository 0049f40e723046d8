"""Random exploration policies for data generation.

* ``brown``: a_0 ~ U(low, high); a_{t+1} = clip(a_t + sqrt(dt) * N(0, I), low, high), dt = 1/50.
  Consecutive actions are correlated, so the car keeps steering, accelerating or braking for a while:
  rollouts that move along the track and show turns, speed and skids.
* ``white``: every action an independent uniform sample. The car mostly jitters in place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

POLICIES: tuple[str, ...] = ("brown", "white")
BROWNIAN_DT = 1.0 / 50.0


def brownian_actions(
    rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int, dt: float = BROWNIAN_DT
) -> np.ndarray:
    """(n, dim) float32 brownian action sequence (see module docstring)."""
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


def make_policy(
    name: str, rng: np.random.Generator, low: np.ndarray, high: np.ndarray, horizon: int
) -> Callable[[int], np.ndarray]:
    """A function ``t -> action`` for step ``t`` of an episode of at most ``horizon`` steps.

    The whole sequence is drawn up front from ``rng``, so the actions depend only on the seed.
    """
    if name == "brown":
        actions = brownian_actions(rng, low, high, horizon)
    elif name == "white":
        actions = white_actions(rng, low, high, horizon)
    else:
        raise ValueError(f"unknown policy {name!r}; expected one of {POLICIES}")
    return lambda t: actions[t]
