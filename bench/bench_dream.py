"""Dream env-steps/s (all rows batched, models/dream.py) vs the real CarRacing env's steps/s.

Usage:
    python bench/bench_dream.py [--rows 64 1024] [--steps 200] [--env-steps 300] [--threads 2]

A dream step of N rows is one batched controller matmul, one LSTM cell, M's heads and one mixture draw
for all N episodes (default sizes: latent 32, hidden 256, 5 Gaussians; random weights: the cost does not
depend on them). The real env is make_env's CarRacing (every renderer asked for) under random actions, with
no V, M or C at all: the ratio is a lower bound on what the dream saves per step of experience.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from envs import get_env_spec, make_env  # noqa: E402
from models.controller import ControllerBatch, ControllerConfig  # noqa: E402
from models.dream import Dream, dream_returns  # noqa: E402
from models.mdrnn import MDRNNCell  # noqa: E402
from utils.cli import make_parser, positive_int, run  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--rows", type=positive_int, nargs="+", default=[64, 1024], help="dream batch sizes")
    parser.add_argument("--steps", type=positive_int, default=200, help="dream steps timed per batch size")
    parser.add_argument("--env-steps", type=positive_int, default=300, help="real env steps timed")
    parser.add_argument("--renderers", nargs="+", default=["fast"], help="real env renderers to time")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (1 is fastest on a shared, loaded machine)",
    )
    return parser


def dream_rate(rows: int, steps: int) -> float:
    torch.manual_seed(0)
    cell = MDRNNCell().eval()
    with torch.no_grad():
        cell.termination_linear.bias.fill_(-20.0)  # no row ends: every step counts all rows
    config = ControllerConfig(cell.latent, cell.hidden, 3)
    squash = get_env_spec("carracing").squash
    params = np.random.default_rng(0).standard_normal((rows, config.vector_size)).astype(np.float32) * 0.1
    start = torch.randn(rows, cell.latent)
    warm_up = Dream(cell, 1.0, "threshold", torch.Generator().manual_seed(0))
    dream_returns(warm_up, ControllerBatch(config, params), squash, start, 5)
    t0 = time.perf_counter()
    dream = Dream(cell, 1.0, "threshold", torch.Generator().manual_seed(1))
    _, lengths = dream_returns(dream, ControllerBatch(config, params), squash, start, steps)
    elapsed = time.perf_counter() - t0
    return float(lengths.sum()) / elapsed


def env_rate(renderer: str, steps: int) -> float:
    env = make_env(renderer=renderer)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(60):  # past the zoom-in
        env.step(env.action_space.sample())
    n, t0 = 0, time.perf_counter()
    while n < steps:
        action = np.array([rng.uniform(-1, 1), rng.uniform(0, 1), 0.0], np.float32)
        _, _, terminated, truncated, _ = env.step(action)
        n += 1
        if terminated or truncated:
            env.reset(seed=n)
    elapsed = time.perf_counter() - t0
    env.close()
    return n / elapsed


def main(args) -> None:
    torch.set_num_threads(args.threads)
    env_rates = {r: env_rate(r, args.env_steps) for r in args.renderers}
    print(f"torch threads {args.threads}; real env: 1 process, random actions, no V/M/C")
    print(f"{'what':<32} {'steps/s':>12} " + " ".join(f"{'x ' + r + ' env':>12}" for r in env_rates))
    for r, rate in env_rates.items():
        print(
            f"{'real CarRacing (' + r + ')':<32} {rate:12,.0f} "
            + " ".join(f"{rate / v:12.2f}" for v in env_rates.values())
        )
    for rows in args.rows:
        rate = dream_rate(rows, args.steps)
        print(
            f"{'dream, ' + str(rows) + ' rows batched':<32} {rate:12,.0f} "
            + " ".join(f"{rate / v:12.1f}" for v in env_rates.values())
        )


if __name__ == "__main__":
    run(main, build_parser())
