"""Shared by the env benches: steps/s of an episode worker driving an env with V + M + C in the loop."""

from __future__ import annotations

import time

import numpy as np

from driving.agent import random_agent_spec
from driving.episode import Episode, EpisodeSettings, drive_chunk, make_worker
from driving.pool import WorkerPool
from envs import get_env_spec


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
    eps = episodes(len(eps) * workers, spec.controller.vector_size)
    with WorkerPool(spec, settings, workers, n_envs) as pool:
        pool.evaluate(eps[: n_envs * workers])  # start-up and warm-up
        start = time.perf_counter()
        done = sum(r.steps for r in pool.evaluate(eps).values())
        every = done / (time.perf_counter() - start)
    return one, every
