"""Trained agents from Python: the shipped ones (pretrained/) or any logdir trained here, for every env.

    from world_models import load_agent

    agent = load_agent("pretrained/carracing")   # V, M, C; the env, preprocessing, action repeat, z mode
    env = agent.make_env()                       # the game as the agent plays it
    obs, info = env.reset(seed=0)
    agent.reset(seed=0)
    done, total = False, 0.0
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        total += reward
        done = terminated or truncated

``act`` takes the env's raw observation and returns the env's action; the agent keeps M's state between
calls and, when its C was trained on sampled z (the Doom agent), draws z from its own generator, seeded by
``reset``. Played so, an episode is the one ``test_controller.py --envs-per-worker 1`` drives from the same
seed, step for step (tested); in batches of several episodes, as test_controller.py drives by default, the
last bits of V's and M's arithmetic can differ, and a long CarRacing episode may then part from it.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch

from driving.agent import Agent
from driving.episode import z_noise
from envs import get_env_spec
from experiment.logdir import load_agent_parts


class TrainedAgent:
    """The agent of a logdir, playing one episode at a time.

    Attributes:
        env: the env spec it plays (its name, e.g. ``carracing-repeat2``: CarRacing deciding every 2 frames).
        z_mode: what C and M see of V: ``mu`` (the encoder mean) or ``sample`` (z drawn around it).
        checkpoint: C's checkpoint (its score, generation, ...).
    """

    def __init__(self, logdir: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        spec, params, self.checkpoint = load_agent_parts(logdir)
        self.env = get_env_spec(spec.env)
        self.z_mode = self.checkpoint.get("z_mode", "mu")
        self._agent = Agent(spec, device)
        self._controller = self._agent.controllers(params[None])
        self.reset()

    def make_env(
        self,
        renderer: str | None = None,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
    ) -> gym.Env:
        """The game as the agent plays it: its env with the action repeat it was trained with, the env's
        default renderer (CarRacing: ``fast``, the stock game's pixels exactly; ``stock`` is Gymnasium's
        own) and episode cap, unless given; ``render_mode="human"`` opens a window."""
        return self.env.make_env(renderer, render_mode, max_episode_steps)

    def reset(self, seed: int | None = None) -> None:
        """A new episode: M's state back to zeros, and z's draws (if any) from ``seed``'s stream."""
        self._state = self._agent.initial_state(1)
        self._noise = z_noise(seed) if seed is not None else np.random.default_rng()

    @torch.no_grad()
    def act(self, observation: np.ndarray):
        """The env's action for one raw observation of :meth:`make_env`'s env; M's state moves on."""
        noise = [self._noise] if self.z_mode == "sample" else None
        observations = np.asarray(observation)[None]
        actions, self._state = self._agent.act(observations, self._controller, self._state, noise)
        return self.env.to_env_action(actions[0])


def load_agent(logdir: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedAgent:
    """The trained agent of ``logdir`` (V, M and ``ctrl/best.tar``); a missing or damaged stage is one
    :class:`utils.cli.UserError` line naming it."""
    return TrainedAgent(logdir, device)
