"""CarRacing with its five discrete actions (``--env carracing-discrete``): a second game for the pipeline.

Gymnasium's ``continuous=False`` mode: 0 nothing, 1 left, 2 right, 3 gas, 4 brake. The agent action is a
one-hot vector of 5 (what rollouts store and M reads); C has 5 outputs and takes the largest (one-hot
of the argmax); the env gets its index. Random rollouts hold a random action for 1..10 frames. Frames,
renderers and the episode cap are CarRacing's.

It exists to show what a new game takes: this file, nothing outside envs/.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from envs import carracing
from envs.policies import discrete_held_actions
from envs.spec import EnvSpec, ModelSizes

N_ACTIONS = 5


KEYS = ("left", "right", "up", "down")  # actions 1 to 4; no key held is 0, nothing


def keyboard(held: frozenset[str]) -> np.ndarray:
    """One-hot of the first of left, right, up (gas), down (brake) held; nothing when none is."""
    index = next((1 + i for i, key in enumerate(KEYS) if key in held), 0)
    return np.eye(N_ACTIONS, dtype=np.float32)[index]


def squash(raw: torch.Tensor) -> torch.Tensor:
    """C's raw outputs (..., 5) -> the one-hot vector of the largest."""
    return torch.nn.functional.one_hot(raw.argmax(-1), N_ACTIONS).to(raw.dtype)


SPEC = EnvSpec(
    name="carracing-discrete",
    make=functools.partial(carracing.make, continuous=False),
    preprocess=carracing.preprocess,
    preprocessings=carracing.PREPROCESSINGS,
    action_size=N_ACTIONS,
    action_low=np.zeros(N_ACTIONS, np.float32),
    action_high=np.ones(N_ACTIONS, np.float32),
    squash=squash,
    to_env_action=lambda action: int(np.argmax(action)),
    policies={"held": lambda rng, n: discrete_held_actions(rng, N_ACTIONS, n)},
    max_episode_steps=1000,
    model=ModelSizes(latent=32, hidden=256, gaussians=5, controller_inputs=("z", "h"), controller_bias=True),
    renderers=carracing.SPEC.renderers,
    inexact_renderers=carracing.SPEC.inexact_renderers,
    keyboard=keyboard,
)
