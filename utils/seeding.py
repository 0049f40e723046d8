"""One place where every random stream is derived from ``--seed``."""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that depends only on ``keys`` (e.g. ``(seed, rollout_index)``).

    Uses NumPy's SeedSequence, so nearby keys give unrelated streams and the result does not depend
    on process, thread count or call order. Generation's (seed, index, 0) equals an episode's
    (seed, namespace, 0) when index == namespace, and SeedSequence ignores trailing zero keys: with the
    same seed, test track 0 is generated rollout 3's track (README, test_controller.py); kept so that
    every recorded track stays the same.
    """
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global generator and torch."""
    random.seed(seed)
    np.random.seed(derive_seed(seed))
    torch.manual_seed(seed)


# Namespaces of episode seeds, so training, evaluation and testing never drive the same tracks; dreams
# (start latents and M's draws) have their own. Pick episodes choose between finished agents (a
# temperature, a controller, a lever): a number that chose something is not a test number.
TRAIN_EPISODES, EVAL_EPISODES, TEST_EPISODES, DREAM_EPISODES, PICK_EPISODES = 1, 2, 3, 4, 5
# Probe episodes are those of diagnostics that read the simulator's state (scripts/probe_socnav.py).
PROBE_EPISODES = 6


def episode_seed(seed: int, namespace: int, *keys: int) -> int:
    """The track seed of an episode: training uses (generation, sample), evaluation and testing (index,)."""
    return derive_seed(seed, namespace, *keys)
