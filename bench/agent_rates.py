"""Shared by the env benches: steps/s of an env alone under its random policy, and of an episode worker
driving it with V + M + C in the loop."""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from driving.agent import AgentSpec, random_agent_spec
from driving.episode import Episode, EpisodeSettings, drive_chunk, make_worker
from driving.pool import WorkerPool
from envs import get_env_spec


def env_rate(
    env: str, renderer: str, steps: int, step: Callable[[gym.Env, np.ndarray], bool] | None = None
) -> float:
    """Steps/s of ``env`` alone on one core under its default random policy, episodes from seeds 0, 1, ...
    until ``steps`` steps; ``step(env, action) -> ended`` replaces the env's own step (e.g. to time a part
    of it)."""
    spec = get_env_spec(env)
    game = spec.make_env(renderer)
    done, seed, start = 0, 0, time.perf_counter()
    while done < steps:
        game.reset(seed=seed)
        for a in spec.policies[spec.default_policy](np.random.default_rng(seed), spec.max_episode_steps):
            done += 1
            action = spec.to_env_action(a)
            if step(game, action) if step is not None else any(game.step(action)[2:4]):
                break
        seed += 1
    rate = done / (time.perf_counter() - start)
    game.close()
    return rate


def episodes(n: int, size: int) -> list[Episode]:
    """``n`` episodes of small random controllers (seeds 1000 + i)."""
    rng = np.random.default_rng(0)
    return [Episode(i, rng.standard_normal(size).astype(np.float32) * 0.1, 1000 + i) for i in range(n)]


def agent_rate(env: str, renderer: str, steps: int, n_envs: int, workers: int) -> tuple[float, float]:
    """(steps/s of one worker in this process, steps/s of ``workers`` worker processes) of the env's
    default-size agent on random weights (the cost does not depend on them)."""
    spec = random_agent_spec(env=env)
    settings = EpisodeSettings(max_steps=get_env_spec(env).max_episode_steps, renderer=renderer)
    agent, envs = make_worker(spec, settings, n_envs)
    eps = episodes(max(n_envs, steps // 100), spec.controller.vector_size)
    start, done = time.perf_counter(), 0
    for i in range(0, len(eps), n_envs):
        done += sum(r.steps for r in drive_chunk(agent, envs, eps[i : i + n_envs], settings))
    one = done / (time.perf_counter() - start)
    every = pool_rate(
        spec, settings, episodes(len(eps) * workers, spec.controller.vector_size), n_envs, workers
    )
    return one, every


def pool_rate(
    spec: AgentSpec, settings: EpisodeSettings, eps: list[Episode], n_envs: int, workers: int
) -> float:
    """Agent steps/s of ``workers`` episode workers of ``n_envs`` envs driving ``eps``, after a warm-up
    (start-up, imports, envs built) on the first ``n_envs * workers`` of them."""
    with WorkerPool(spec, settings, workers, n_envs) as pool:
        pool.evaluate(eps[: n_envs * workers])
        start = time.perf_counter()
        done = sum(r.steps for r in pool.evaluate(eps).values())
        return done / (time.perf_counter() - start)
