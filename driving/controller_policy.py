"""``--policy controller``: rollouts driven by the trained agent, for iterative training.

The paper's recipe for tasks a random policy cannot explore: collect rollouts with the current C (plus
exploration noise), retrain V and M on them, train C again. The agent is the one the controller stage
drives with (:class:`driving.agent.Agent`, here with a batch of one): z_t = V's encoder mean of o_t,
a_t = squash(C(z_t, h_t)), h_{t+1} = M's LSTM([z_t, a_t], h_t). Gaussian noise of std ``noise`` is
added to the agent action, which is then clipped to the env's action bounds.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch

from driving.agent import Agent, AgentSpec


class ControllerPolicy:
    """``policy(frame) -> agent action`` for one episode: the agent plus clipped Gaussian noise.

    frame: (64, 64, 3) uint8, preprocessed as V was trained. Deterministic given ``rng``.
    """

    def __init__(
        self,
        spec: AgentSpec,
        params: np.ndarray,
        rng: np.random.Generator,
        noise: float = 0.0,
        z_mode: str = "mu",
    ) -> None:
        if mp.current_process().name != "MainProcess":
            torch.set_num_threads(1)  # batch 1 in parallel workers: more threads only oversubscribe the cores
        self.agent = Agent(spec, "cpu")
        self.controller = self.agent.controllers(np.asarray(params)[None])
        self.state = self.agent.initial_state(1)
        self.rng, self.noise, self.z_mode = rng, noise, z_mode
        self.low, self.high = self.agent.env.action_low, self.agent.env.action_high

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        z_noise = None
        if self.z_mode == "sample":  # as C was trained: z = mu + sigma * eps
            z_noise = self.rng.standard_normal((1, self.agent.latent)).astype(np.float32)
        actions, self.state = self.agent.step(frame[None], self.controller, self.state, z_noise)
        action = actions[0]
        if self.noise > 0:
            action = action + self.noise * self.rng.standard_normal(action.shape).astype(np.float32)
        return np.clip(action, self.low, self.high).astype(np.float32)
