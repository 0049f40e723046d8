"""The episode loop: the episodes of one chunk start together and step in lock-step until each ends.

Determinism: on CPU, torch kernels give results that depend (in the last bits) on the batch size, and
CarRacing amplifies a last-bit difference in an action into a different trajectory. So episodes run in
fixed *chunks* (:func:`chunked`), and a chunk's results depend on its own contents only, never on which
worker, backend or neighbouring chunk ran it. The chunk size (``--envs-per-worker``) is part of what
makes a run reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from driving.agent import Agent, AgentSpec
from envs import get_env_spec
from utils.seeding import derive_seed

Z_MODES = ("mu", "sample")


@dataclass(frozen=True)
class EpisodeSettings:
    """How episodes are driven (the env itself comes with the :class:`~driving.agent.AgentSpec`).

    Attributes:
        max_steps: time limit (truncation).
        renderer: one of the env spec's renderers.
        z_mode: ``mu`` feeds C and M the encoder mean; ``sample`` draws z = mu + sigma * eps.
    """

    max_steps: int
    renderer: str
    z_mode: str = "mu"


@dataclass(frozen=True)
class Episode:
    """One episode to drive: controller ``params`` (flat vector) from the env's reset with ``seed``.

    ``negative_cutoff`` ends it after that many consecutive steps of negative reward (0: never), the
    return so far being its return: it saves time on hopeless candidates during training.
    ``max_steps`` caps this episode below ``EpisodeSettings.max_steps`` (0: no extra cap).
    """

    task_id: int
    params: np.ndarray
    seed: int
    negative_cutoff: int = 0
    max_steps: int = 0


@dataclass(frozen=True)
class Result:
    """What came back for one episode; ``outcome`` is how it ended for games that say (the last step's
    ``info["outcome"]``, see ``EnvSpec.outcomes``), else empty, and ``detail`` what more the game says of it
    (``info["outcome_detail"]``: for SocNavGym what a collision hit), else empty."""

    task_id: int
    episode_return: float
    steps: int
    outcome: str = ""
    detail: str = ""


class WorkerError(RuntimeError):
    """An episode worker crashed, died or hung; the message says which and why."""


def z_noise(seed: int) -> np.random.Generator:
    """The stream of an episode's z draws (``z_mode`` sample: z = mu + sigma * eps, eps from here), its
    own and derived from the episode's seed alone, so that a batch's other episodes never change it."""
    return np.random.default_rng(derive_seed(seed, 7))


def chunked(episodes: Sequence[Episode], size: int) -> list[list[Episode]]:
    """Consecutive chunks of ``size`` episodes: the unit a worker drives in lock-step."""
    return [list(episodes[i : i + size]) for i in range(0, len(episodes), size)]


def make_worker(
    spec: AgentSpec,
    settings: EpisodeSettings,
    n_envs: int,
    device: str = "cpu",
    render_mode: str | None = None,
) -> tuple[Agent, list[gym.Env]]:
    """What an episode worker keeps between chunks, on any backend: the agent and ``n_envs`` envs.

    One torch thread: workers run one per core, and more threads only oversubscribe the cores.
    """
    torch.set_num_threads(1)
    env = get_env_spec(spec.env)
    envs = [env.make_env(settings.renderer, render_mode, settings.max_steps) for _ in range(n_envs)]
    return Agent(spec, device), envs


def drive_chunk(
    agent: Agent,
    envs: Sequence[gym.Env],
    episodes: Sequence[Episode],
    settings: EpisodeSettings,
    on_done: Callable[[Result], None] | None = None,
    on_frame: Callable[[int, Any], None] | None = None,
) -> list[Result]:
    """Drive ``episodes`` together (lock-step) on ``envs[:len(episodes)]``.

    Returns one :class:`Result` per episode, in order; ``on_done`` is called with each as it ends and
    ``on_frame(i, env)`` after every step of episode ``i`` (for display and recording).
    """
    n = len(episodes)
    if n > len(envs):
        raise ValueError(f"a chunk of {n} episodes needs {n} environments, got {len(envs)}")
    controllers = agent.controllers(np.stack([e.params for e in episodes]))
    to_env_action = agent.env.to_env_action
    h, c = agent.initial_state(n)
    obs = [envs[i].reset(seed=int(e.seed))[0] for i, e in enumerate(episodes)]
    noise_rngs = [z_noise(e.seed) for e in episodes]
    returns = np.zeros(n)
    steps = np.zeros(n, dtype=np.int64)
    negative_run = np.zeros(n, dtype=np.int64)
    results: list[Result | None] = [None] * n
    alive = list(range(n))
    while alive:
        noise = [noise_rngs[i] for i in alive] if settings.z_mode == "sample" else None
        idx = torch.as_tensor(alive, device=agent.device)
        observations = np.stack([obs[i] for i in alive])
        actions, (h_new, c_new) = agent.act(observations, controllers.rows(idx), (h[idx], c[idx]), noise)
        h[idx], c[idx] = h_new, c_new
        still = []
        for row, i in enumerate(alive):
            obs[i], reward, terminated, truncated, info = envs[i].step(to_env_action(actions[row]))
            returns[i] += reward
            steps[i] += 1
            negative_run[i] = negative_run[i] + 1 if reward < 0 else 0
            if on_frame is not None:
                on_frame(i, envs[i])
            cutoff = episodes[i].negative_cutoff
            cut = cutoff > 0 and negative_run[i] >= cutoff
            limit = min(episodes[i].max_steps or settings.max_steps, settings.max_steps)
            if terminated or truncated or cut or steps[i] >= limit:
                outcome, detail = info.get("outcome") or "", info.get("outcome_detail") or ""
                results[i] = Result(episodes[i].task_id, float(returns[i]), int(steps[i]), outcome, detail)
                if on_done is not None:
                    on_done(results[i])
            else:
                still.append(i)
        alive = still
    return results
