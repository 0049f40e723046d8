"""Controller-evaluation throughput: env steps/s with V and M in the loop, beside the bare env.

Usage:
    python bench/bench_controller.py [--steps 300] [--renderer fast]

Rows, all measured in this run on the same env with the same step budget:
  * bare env: one CarRacing stepped with brownian actions, no models (the ceiling);
  * earlier ports' design: one env and batch-1 V/M/C inference per worker;
  * an episode worker: --envs-per-worker envs per worker, V, M and C batched over them;
  * the episode pool: the same in every worker process (the whole machine).
Models are freshly initialised (weights do not change the cost); episodes are capped at --steps.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from driving.agent import Agent, AgentSpec, random_agent_spec  # noqa: E402
from driving.episode import Episode, EpisodeSettings, drive_chunk  # noqa: E402
from driving.pool import WorkerPool  # noqa: E402
from envs import get_env_spec, make_env  # noqa: E402
from envs.policies import brownian_actions  # noqa: E402
from models.controller import ControllerConfig  # noqa: E402
from utils.cli import make_parser, positive_int  # noqa: E402


def episodes(n: int, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    dim = ControllerConfig(32, 256, 3).vector_size
    return [Episode(i, (rng.standard_normal(dim) * 0.1).astype(np.float32), 1000 + i) for i in range(n)]


def bare_env(renderer: str, steps: int, n: int) -> float:
    total, elapsed = 0, 0.0
    for i in range(n):
        env = make_env(renderer=renderer, max_episode_steps=steps)
        env.reset(seed=1000 + i)
        actions = brownian_actions(
            np.random.default_rng(i), env.action_space.low, env.action_space.high, steps
        )
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        elapsed += time.perf_counter() - start
        total += steps
        env.close()
    return total / elapsed


def in_process(spec: AgentSpec, settings: EpisodeSettings, n: int, per_chunk: int) -> float:
    """One episode worker's loop, in this process on one thread (what each worker does)."""
    agent = Agent(spec)
    envs = [
        make_env(renderer=settings.renderer, max_episode_steps=settings.max_steps) for _ in range(per_chunk)
    ]
    eps = episodes(n)
    total, start = 0, time.perf_counter()
    for i in range(0, n, per_chunk):
        total += sum(r.steps for r in drive_chunk(agent, envs, eps[i : i + per_chunk], settings))
    return total / (time.perf_counter() - start)


def pooled(spec: AgentSpec, settings: EpisodeSettings, n: int, per_chunk: int, workers: int) -> float:
    with WorkerPool(spec, settings, workers, per_chunk) as pool:
        pool.evaluate(episodes(workers * per_chunk, seed=1))  # warm-up: workers start, import, build envs
        start = time.perf_counter()
        results = pool.evaluate(episodes(n))
        return sum(r.steps for r in results.values()) / (time.perf_counter() - start)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--steps", type=positive_int, default=300, help="steps per episode")
    parser.add_argument("--episodes", type=positive_int, default=8, help="episodes per row")
    parser.add_argument(
        "--envs-per-worker", type=positive_int, default=8, help="an episode worker's chunk size"
    )
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="all-workers row")
    parser.add_argument(
        "--renderers",
        nargs="+",
        choices=get_env_spec("carracing").renderers,
        default=["fast", "stock"],
        help="CarRacing implementations to measure, each with its own bare-env row",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = random_agent_spec(seed=0, env="carracing")
    k = args.envs_per_worker
    for renderer in args.renderers:
        settings = EpisodeSettings(max_steps=args.steps, renderer=renderer, z_mode="mu")
        bare = bare_env(renderer, args.steps, 2)
        rows = [
            ("bare env, 1 core", bare),
            ("earlier design: 1 env, batch-1 V+M+C, 1 core", in_process(spec, settings, args.episodes, 1)),
            (f"episode worker: {k} envs batched, 1 core", in_process(spec, settings, args.episodes, k)),
            (
                f"episode pool: {args.workers} workers x {k} envs",
                pooled(spec, settings, args.episodes * args.workers, k, args.workers),
            ),
        ]
        print(f"\nrenderer {renderer}, episodes of {args.steps} steps, torch threads per worker 1")
        print(f"{'what':<48}{'steps/s':>10}{'vs bare env':>13}")
        for name, sps in rows:
            print(f"{name:<48}{sps:>10.0f}{sps / bare:>12.2f}x")
        per_core = rows[-1][1] / bare / args.workers
        print(f"(the all-workers row is total throughput; per core it is {per_core:.2f}x the bare env)")


if __name__ == "__main__":
    main()
