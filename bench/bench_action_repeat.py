"""Action repeat (``--env carracing-repeat<k>``): game frames per second against deciding every frame.

Usage:
    python bench/bench_action_repeat.py [--frames 400] [--repeats 1 2 4] [--renderers fast approx]

For each renderer and k, measured in this run: one env stepped with brownian actions (1 core), then the
agent (V + M + C on random weights, the cost does not depend on them) in the episode pool, --workers x
--envs-per-worker envs; episodes of --frames game frames (--frames / k agent steps). Rates are game
frames per second; the ratio is against k = 1 on the same renderer (every frame drawn and decided).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.agent_rates import episodes, pool_rate  # noqa: E402
from driving.agent import random_agent_spec  # noqa: E402
from driving.episode import EpisodeSettings  # noqa: E402
from envs import get_env_spec  # noqa: E402
from utils.cli import make_parser, positive_int, run  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--frames", type=positive_int, default=400, help="game frames per episode")
    parser.add_argument("--repeats", type=positive_int, nargs="+", default=[1, 2, 4], help="values of k")
    parser.add_argument("--renderers", nargs="+", default=["fast", "approx"], help="CarRacing renderers")
    parser.add_argument("--episodes", type=positive_int, default=16, help="episodes of the pool row")
    parser.add_argument("--envs-per-worker", type=positive_int, default=8, help="an episode worker's envs")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="pool workers")
    return parser


def bare_frames_per_s(env_name: str, renderer: str, frames: int) -> float:
    spec = get_env_spec(env_name)
    steps = frames // spec.action_repeat
    env = spec.make_env(renderer, None, steps)
    env.reset(seed=1000)
    actions = spec.policies[spec.default_policy](np.random.default_rng(0), steps)
    start, played = time.perf_counter(), 0
    for a in actions:
        played += env.step(a)[4].get("frames", 1)
    rate = played / (time.perf_counter() - start)
    env.close()
    return rate


def pool_frames_per_s(
    env_name: str, renderer: str, frames: int, n: int, per_worker: int, workers: int
) -> float:
    spec = get_env_spec(env_name)
    agent = random_agent_spec(seed=0, env=env_name)
    settings = EpisodeSettings(max_steps=frames // spec.action_repeat, renderer=renderer)
    eps = episodes(max(n, per_worker * workers), agent.controller.vector_size)
    return pool_rate(agent, settings, eps, per_worker, workers) * spec.action_repeat


def main(args) -> list[tuple[str, int, float, float]]:
    torch.set_num_threads(1)
    rows = []
    for renderer in args.renderers:
        for k in args.repeats:
            name = get_env_spec("carracing").with_action_repeat(k).name
            bare = bare_frames_per_s(name, renderer, args.frames)
            pool = pool_frames_per_s(
                name, renderer, args.frames, args.episodes, args.envs_per_worker, args.workers
            )
            rows.append((renderer, k, bare, pool))
    print(
        f"episodes of {args.frames} game frames; pool: {args.workers} workers x {args.envs_per_worker} envs"
    )
    print(f"{'renderer':<10}{'k':>3}{'env frames/s':>15}{'vs k=1':>9}{'agent frames/s':>17}{'vs k=1':>9}")
    for renderer, k, bare, pool in rows:
        ref = next(r for r in rows if r[0] == renderer and r[1] == args.repeats[0])
        print(f"{renderer:<10}{k:>3}{bare:>15.0f}{bare / ref[2]:>8.2f}x{pool:>17.0f}{pool / ref[3]:>8.2f}x")
    return rows


if __name__ == "__main__":
    run(main, build_parser())
