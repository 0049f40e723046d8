"""The agent: V's encoder, M's LSTM and a batch of controllers, stepped together for many episodes.

Each step, for every running episode i: z_t = encode(o_t); a_t = squash(C_i(z_t, h_t[, c_t]));
(h_{t+1}, c_{t+1}) = LSTM([z_t, a_t], (h_t, c_t)). No decoder and no mixture head run while acting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs import DEFAULT_ENV, get_env_spec
from models.controller import ControllerBatch, ControllerConfig
from models.mdrnn import MDRNN, MDRNNCell
from models.vae import VAE, frames_to_tensor


@dataclass(frozen=True)
class AgentSpec:
    """What a worker needs to rebuild the agent: the env, V's encoder and M's LSTM (configs and CPU
    weights), and C's shape. Sent once per worker; controllers vary per episode as flat vectors.

    Attributes:
        env: the env spec's name.
        preprocessing: the frame transform V was trained on.
        vae_config, encoder_state: V's ``model_config`` and :meth:`models.vae.VAE.acting_state_dict`.
        mdrnn_config, rnn_state: M's ``model_config`` and :meth:`models.mdrnn.MDRNN.acting_state_dict`.
        controller: C's shape.
    """

    env: str
    preprocessing: str
    vae_config: dict
    encoder_state: dict
    mdrnn_config: dict
    rnn_state: dict
    controller: ControllerConfig

    @classmethod
    def of(
        cls, vae: VAE, mdrnn: MDRNN, env: str, preprocessing: str, controller: ControllerConfig
    ) -> AgentSpec:
        """The spec of live V and M modules (weights copied to the CPU)."""
        return cls(
            env=env,
            preprocessing=preprocessing,
            vae_config=dict(vae.config),
            encoder_state={k: v.detach().cpu() for k, v in vae.acting_state_dict().items()},
            mdrnn_config=dict(mdrnn.config),
            rnn_state={k: v.detach().cpu() for k, v in mdrnn.acting_state_dict().items()},
            controller=controller,
        )


def random_agent_spec(seed: int = 0, env: str = DEFAULT_ENV, preprocessing: str | None = None) -> AgentSpec:
    """Freshly initialised V and M of the env's default sizes: what benchmarks and tests drive with when
    the weights do not matter."""
    spec = get_env_spec(env)
    sizes = spec.model
    torch.manual_seed(seed)
    vae = VAE(sizes.latent)
    mdrnn = MDRNN(sizes.latent, spec.action_size, sizes.hidden, sizes.gaussians)
    controller = ControllerConfig(
        sizes.latent, sizes.hidden, spec.action_size, sizes.controller_inputs, sizes.controller_bias
    )
    return AgentSpec.of(vae, mdrnn, spec.name, preprocessing or spec.default_preprocessing, controller)


class Agent:
    """The agent of an :class:`AgentSpec` on ``device``; :meth:`step` acts for a batch of episodes."""

    def __init__(self, spec: AgentSpec, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.env = get_env_spec(spec.env)
        self.device = torch.device(device)
        self.vae = VAE.from_config(spec.vae_config)
        self.vae.load_state_dict(spec.encoder_state, strict=False)
        self.mdrnn = MDRNNCell.from_config(spec.mdrnn_config)
        self.mdrnn.load_state_dict(spec.rnn_state, strict=False)
        self.vae.to(self.device).eval()
        self.mdrnn.to(self.device).eval()
        self.latent, self.hidden = self.mdrnn.latent, self.mdrnn.hidden

    def controllers(self, vectors: np.ndarray) -> ControllerBatch:
        """(N, P) flat controller vectors as a batch on this agent's device."""
        return ControllerBatch(self.spec.controller, vectors, self.device)

    def initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c), each (n, H)."""
        return self.mdrnn.initial_hidden(n, self.device)

    def preprocess(self, observations: np.ndarray) -> np.ndarray:
        """(N, ...) env observations -> (N, 64, 64, 3) uint8 frames, as V was trained."""
        return self.env.preprocess(observations, self.spec.preprocessing)

    def act(
        self,
        observations: np.ndarray,
        controllers: ControllerBatch,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: list[np.random.Generator] | None = None,
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`step` on B raw env observations (B, ...); ``noise``: one z stream per episode
        (:func:`driving.episode.z_noise`) for z sampled around mu, or None for mu. What every episode
        loop calls, so that a batch of one (world_models.py) acts as the workers do."""
        eps = None
        if noise is not None:
            eps = np.stack([rng.standard_normal(self.latent) for rng in noise]).astype(np.float32)
        return self.step(self.preprocess(observations), controllers, state, eps)

    @torch.no_grad()
    def step(
        self,
        frames: np.ndarray,
        controllers: ControllerBatch,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """Actions for a batch of B episodes.

        Args:
            frames: (B, 64, 64, 3) uint8 preprocessed frames.
            controllers: B controllers, one per episode.
            state: (h, c), each (B, H).
            noise: (B, L) standard normal draws to feed z = mu + sigma * noise, or None to feed mu.
        Returns:
            (B, A) float32 agent actions and the new (h, c).
        """
        mu, logsigma = self.vae.encode(frames_to_tensor(frames, self.device))
        z = mu if noise is None else mu + logsigma.exp() * torch.as_tensor(noise, device=self.device)
        h, c = state
        actions = self.env.squash(controllers.raw_rows(z, h, c))
        state = self.mdrnn.recurrent_step(actions, z, (h, c))
        return actions.cpu().numpy().astype(np.float32), state
