"""``--policy controller``: rollouts driven by the trained controller, for iterative training.

The paper's recipe for tasks a random policy cannot explore: collect rollouts with the current C (plus
exploration noise), retrain V and M on them, train C again. The agent is the one the controller stage
drives with (utils.rollout.BatchedAgent, here with a batch of one): z_t = V's encoder mean of o_t,
a_t = C(z_t, h_t), h_{t+1} = M's LSTM([z_t, a_t], h_t). Gaussian noise of std ``noise`` is added to the
squashed action, which is then clipped to the action space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_controller_agent(logdir: str | Path) -> tuple[dict, np.ndarray]:
    """(bundle of V's encoder and M's LSTM, flat controller vector) from ``<logdir>``'s checkpoints."""
    from utils.rollout import load_controller_vector, load_world_model

    params, _ = load_controller_vector(logdir)  # the controller first: it is what this policy is about
    return load_world_model(logdir), params


class ControllerPolicy:
    """``act(frame) -> action`` for one episode: C on (z, h), plus clipped Gaussian noise.

    frame: (64, 64, 3) uint8, preprocessed as V was trained. Deterministic given ``rng``.
    """

    def __init__(
        self,
        logdir: str | Path,
        rng: np.random.Generator,
        low: np.ndarray,
        high: np.ndarray,
        noise: float = 0.0,
    ) -> None:
        import multiprocessing as mp

        from models.controller import unflatten_controller_vectors
        from utils.rollout import BatchedAgent

        if mp.current_process().name != "MainProcess":
            torch.set_num_threads(1)  # batch 1 in parallel workers: more threads only oversubscribe the cores
        bundle, params = load_controller_agent(logdir)
        self.preprocessing = bundle["preprocessing"]
        self.agent = BatchedAgent(bundle, "cpu")
        self.weights, self.biases = unflatten_controller_vectors(
            params[None], latent=self.agent.latent, hidden=self.agent.hidden
        )
        self.state = self.agent.mdrnn.initial_hidden(1)
        self.rng, self.noise = rng, noise
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        actions, self.state = self.agent.step(frame[None], self.weights, self.biases, self.state)
        action = actions[0]
        if self.noise > 0:
            action = action + self.noise * self.rng.standard_normal(action.shape).astype(np.float32)
        return np.clip(action, self.low, self.high).astype(np.float32)
