"""Driving CarRacing with V, M and C: the batched agent and the lock-step episode loop.

Used by the worker processes of :mod:`utils.engine`, and in-process for ``--display`` and recording.

Determinism: on CPU, torch kernels give results that depend (in the last bits) on the batch size, and
CarRacing amplifies a last-bit difference in an action into a different trajectory. So episodes run in
fixed *chunks*: the episodes of one chunk start together and step in lock-step until each ends, and
a chunk's results depend on its own contents only, never on which worker, backend or neighbouring
chunk ran it. The chunk size (``--envs-per-worker``) is part of what makes a run reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs import DEFAULT_RENDERER, MAX_EPISODE_STEPS
from envs.preprocess import DEFAULT_PREPROCESSING, preprocess
from utils.seeding import derive_seed

Z_MODES = ("mu", "sample")
ENCODER_KEYS = ("enc", "fc_mu.", "fc_logsigma.")  # V's parameters that encode() uses


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode is driven.

    Attributes:
        max_steps: time limit (truncation).
        renderer: CarRacing implementation (see envs.RENDERERS).
        preprocessing: frame transform, read from V's checkpoint.
        z_mode: ``mu`` feeds C and M the encoder mean; ``sample`` draws z = mu + sigma * eps.
    """

    max_steps: int = MAX_EPISODE_STEPS
    renderer: str = DEFAULT_RENDERER
    preprocessing: str = DEFAULT_PREPROCESSING
    z_mode: str = "mu"


@dataclass(frozen=True)
class Episode:
    """One episode to drive: controller ``params`` (flat vector) on track ``seed``.

    ``negative_cutoff`` ends it after that many consecutive steps of negative reward (0: never), the
    return so far being its return: it saves time on hopeless candidates during training.
    ``max_steps`` caps this episode below ``EpisodeSettings.max_steps`` (0: no extra cap).
    """

    task_id: int
    params: np.ndarray
    seed: int
    negative_cutoff: int = 0
    max_steps: int = 0


def make_bundle(vae_checkpoint: dict[str, Any], mdrnn_checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a worker needs to rebuild V's encoder and M's recurrent cell: configs and CPU weights.

    The decoder and M's heads are left out: acting never uses them.
    """
    vae_state = {k: v.cpu() for k, v in vae_checkpoint["model"].items() if k.startswith(ENCODER_KEYS)}
    keep = ("rnn.",)
    mdrnn_state = {k: v.cpu() for k, v in mdrnn_checkpoint["model"].items() if k.startswith(keep)}
    return {
        "vae_config": dict(vae_checkpoint["model_config"]),
        "vae_state": vae_state,
        "mdrnn_config": dict(mdrnn_checkpoint["model_config"]),
        "mdrnn_state": mdrnn_state,
        "preprocessing": vae_checkpoint["preprocessing"],
    }


def load_world_model(logdir: str | Path) -> dict[str, Any]:
    """V's encoder and M's LSTM from ``<logdir>`` as a bundle; one clear line when a stage is missing or
    when M was trained on another VAE than the one there now."""
    from data.latents import file_digest
    from models.mdrnn import load_mdrnn
    from models.vae import load_vae
    from utils.cli import UserError

    logdir = Path(logdir)
    _, vae_ckpt = load_vae(logdir)
    _, mdrnn_ckpt = load_mdrnn(logdir)
    if mdrnn_ckpt.get("vae_id") != file_digest(logdir / "vae" / "best.tar"):
        raise UserError(
            f"{logdir / 'mdrnn' / 'best.tar'} was trained on another VAE than "
            f"{logdir / 'vae' / 'best.tar'}: rerun trainmdrnn.py --logdir {logdir} --noreload"
        )
    return make_bundle(vae_ckpt, mdrnn_ckpt)


def load_controller_vector(logdir: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The flat vector of ``<logdir>/ctrl/best.tar`` and its checkpoint; one clear line when missing."""
    from models.controller import Controller
    from utils.checkpoint import load_model

    path = Path(logdir) / "ctrl" / "best.tar"
    missing = f"no controller checkpoint at {path}: run traincontroller.py --logdir {logdir} first"
    controller, ckpt = load_model(Controller, path, missing=missing)
    return controller.parameters_to_vector(), ckpt


def random_bundle(seed: int = 0, preprocessing: str = DEFAULT_PREPROCESSING) -> dict[str, Any]:
    """A bundle of freshly initialised V and M (paper sizes): what benchmarks and tests drive with
    when the weights do not matter."""
    from models.mdrnn import MDRNN
    from models.vae import VAE

    torch.manual_seed(seed)
    vae, mdrnn = VAE(), MDRNN()
    return make_bundle(
        {"model": vae.state_dict(), "model_config": vae.config, "preprocessing": preprocessing},
        {"model": mdrnn.state_dict(), "model_config": mdrnn.config},
    )


class BatchedAgent:
    """V's encoder, M's LSTM and a batch of controllers, one row per running episode.

    Each step: z_t = encode(o_t); a_t = C_i(z_t, h_t); h_{t+1} = LSTM([z_t, a_t], h_t).
    """

    def __init__(self, bundle: dict[str, Any], device: str | torch.device = "cpu") -> None:
        from models.mdrnn import MDRNNCell
        from models.vae import VAE

        self.device = torch.device(device)
        self.vae = VAE.from_config(bundle["vae_config"])
        self.vae.load_state_dict(bundle["vae_state"], strict=False)
        self.mdrnn = MDRNNCell.from_config(bundle["mdrnn_config"])
        self.mdrnn.load_state_dict(bundle["mdrnn_state"], strict=False)
        self.vae.to(self.device).eval()
        self.mdrnn.to(self.device).eval()
        self.latent, self.hidden = self.mdrnn.latent, self.mdrnn.hidden
        self.preprocessing = bundle["preprocessing"]

    @torch.no_grad()
    def step(
        self,
        frames: np.ndarray,
        weights: torch.Tensor,
        biases: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        noise: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """Actions for a batch of episodes.

        Args:
            frames: (B, 64, 64, 3) uint8 preprocessed frames.
            weights, biases: (B, 3, L + H), (B, 3) controller parameters, one row per episode.
            state: (h, c), each (B, H).
            noise: (B, L) standard normal draws for ``z_mode='sample'``, else None.
        Returns:
            (B, 3) float32 squashed actions and the new (h, c).
        """
        from models.controller import batched_controller_actions
        from models.vae import frames_to_tensor

        mu, logsigma = self.vae.encode(frames_to_tensor(frames, self.device))
        z = mu if noise is None else mu + logsigma.exp() * torch.as_tensor(noise, device=self.device)
        h, c = state
        actions = batched_controller_actions(weights, biases, z[:, None], h[:, None])[:, 0]
        state = self.mdrnn.recurrent_step(actions, z, (h, c))
        return actions.cpu().numpy().astype(np.float32), state


def make_worker(
    bundle: dict[str, Any], settings: EpisodeSettings, n_envs: int, device: str = "cpu"
) -> tuple[BatchedAgent, list]:
    """What each rollout worker keeps between chunks, on any backend: the agent and ``n_envs`` envs.

    One torch thread: workers run one per core, and more threads only oversubscribe the cores.
    """
    from envs import make_env

    torch.set_num_threads(1)
    envs = [make_env(renderer=settings.renderer, max_episode_steps=settings.max_steps) for _ in range(n_envs)]
    return BatchedAgent(bundle, device), envs


def run_chunk(
    agent: BatchedAgent,
    envs: Sequence,
    episodes: Sequence[Episode],
    settings: EpisodeSettings,
    on_done: Callable[[Episode, float, int], None] | None = None,
    on_frame: Callable[[int, Any], None] | None = None,
) -> list[tuple[float, int]]:
    """Drive ``episodes`` together (lock-step) on ``envs[:len(episodes)]``.

    Returns one ``(return, steps)`` per episode, in order; ``on_done`` is called as each one ends and
    ``on_frame(i, env)`` after every step of episode ``i`` (for display and recording).
    """
    from models.controller import unflatten_controller_vectors

    n = len(episodes)
    if n > len(envs):
        raise ValueError(f"a chunk of {n} episodes needs {n} environments, got {len(envs)}")
    weights, biases = unflatten_controller_vectors(
        np.stack([e.params for e in episodes]), latent=agent.latent, hidden=agent.hidden, device=agent.device
    )
    h = torch.zeros(n, agent.hidden, device=agent.device)
    state = (h, h.clone())
    obs = [envs[i].reset(seed=int(e.seed))[0] for i, e in enumerate(episodes)]
    noise_rngs = [np.random.default_rng(derive_seed(e.seed, 7)) for e in episodes]
    returns = np.zeros(n)
    steps = np.zeros(n, dtype=np.int64)
    negative_run = np.zeros(n, dtype=np.int64)
    alive = list(range(n))
    while alive:
        frames = preprocess(np.stack([obs[i] for i in alive]), agent.preprocessing)
        noise = (
            np.stack([noise_rngs[i].standard_normal(agent.latent) for i in alive]).astype(np.float32)
            if settings.z_mode == "sample"
            else None
        )
        idx = torch.as_tensor(alive, device=agent.device)
        actions, (h_new, c_new) = agent.step(
            frames, weights[idx], biases[idx], (state[0][idx], state[1][idx]), noise
        )
        state[0][idx], state[1][idx] = h_new, c_new
        still = []
        for row, i in enumerate(alive):
            obs[i], reward, terminated, truncated, _ = envs[i].step(actions[row])
            returns[i] += reward
            steps[i] += 1
            negative_run[i] = negative_run[i] + 1 if reward < 0 else 0
            if on_frame is not None:
                on_frame(i, envs[i])
            cutoff = episodes[i].negative_cutoff
            cut = cutoff > 0 and negative_run[i] >= cutoff
            limit = min(episodes[i].max_steps or settings.max_steps, settings.max_steps)
            if terminated or truncated or cut or steps[i] >= limit:
                if on_done is not None:
                    on_done(episodes[i], float(returns[i]), int(steps[i]))
            else:
                still.append(i)
        alive = still
    return [(float(r), int(s)) for r, s in zip(returns, steps, strict=True)]
