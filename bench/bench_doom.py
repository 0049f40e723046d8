"""VizDoom take-cover: the real game's steps/s (raw, and with V+M+C in the loop) against the dream's, for
the paper's Doom sizes (V z = 64, M LSTM 512 with 5 Gaussians per dimension, C on [z, c, h]).

Usage:
    python bench/bench_doom.py [--steps 2000] [--workers 2] [--rows 1024] [--dream-steps 100] [--threads 2]

Rows, all measured in this run on random weights (the cost does not depend on them):
  * raw game: the env alone under the paper's random policy, one core;
  * agent, 1 core: one episode worker driving --envs-per-worker games with V's encoder, M's LSTM and C
    batched over them (what controller evaluation and testing run);
  * agent, all workers: the same in --workers processes (the machine's throughput);
  * dream: --rows dreams (the paper's generation: 64 candidates x 16 dreams) stepped as one batch by M
    with --threads torch threads, nobody dying: every row-step counts; in float32, then with M's
    products in bfloat16 (``traincontroller.py --dream-precision``; fast only where bf16 is native).
The ratio that matters is dream / agent-all-workers: how much faster C learns in the dream than it could
in the real game on the same machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.agent_rates import agent_rate, env_rate  # noqa: E402
from driving.agent import random_agent_spec  # noqa: E402
from envs import get_env_spec  # noqa: E402
from models.controller import ControllerBatch  # noqa: E402
from models.dream import Dream, dream_returns  # noqa: E402
from models.mdrnn import MDRNNCell  # noqa: E402
from utils.cli import make_parser, positive_int, run  # noqa: E402
from utils.precision import cpu_has_native_bf16  # noqa: E402

ENV = "doom-takecover"


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--steps", type=positive_int, default=2000, help="real game steps per row (about)")
    parser.add_argument(
        "--envs-per-worker", type=positive_int, default=8, help="games an episode worker drives"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="episode workers of the all-workers row"
    )
    parser.add_argument("--rows", type=positive_int, default=1024, help="dreams stepped as one batch")
    parser.add_argument("--dream-steps", type=positive_int, default=100, help="dream steps timed")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads of the dream")
    return parser


def dream_rate(rows: int, steps: int, threads: int, matmul_dtype: torch.dtype | None = None) -> float:
    torch.set_num_threads(threads)
    sizes, spec = get_env_spec(ENV).model, random_agent_spec(env=ENV)
    torch.manual_seed(0)
    cell = MDRNNCell(sizes.latent, 1, sizes.hidden, sizes.gaussians).eval()
    with torch.no_grad():
        cell.termination_linear.bias.fill_(-30.0)  # nobody dies: every row-step counts
    params = np.random.default_rng(0).standard_normal((rows, spec.controller.vector_size)).astype(np.float32)
    start = torch.randn(rows, sizes.latent)
    warm_up = Dream(cell, 1.15, survival=True, matmul_dtype=matmul_dtype)
    dream_returns(warm_up, ControllerBatch(spec.controller, params), torch.tanh, start, 3)
    t0 = time.perf_counter()
    generator = torch.Generator().manual_seed(1)
    dream = Dream(cell, 1.15, generator=generator, survival=True, matmul_dtype=matmul_dtype)
    _, lengths = dream_returns(dream, ControllerBatch(spec.controller, params), torch.tanh, start, steps)
    return float(lengths.sum()) / (time.perf_counter() - t0)


def main(args) -> dict[str, float]:
    # The dream first: the agent's worker in this process sets torch to one thread.
    dream = dream_rate(args.rows, args.dream_steps, args.threads)
    bf16 = dream_rate(args.rows, args.dream_steps, args.threads, torch.bfloat16)
    torch.set_num_threads(1)
    raw = env_rate(ENV, "160x120", args.steps)
    one, every = agent_rate(ENV, "160x120", args.steps, args.envs_per_worker, args.workers)
    rows = [
        ("raw game (160x120), 1 core", raw),
        (f"agent V+M+C, 1 worker x {args.envs_per_worker} games", one),
        (f"agent V+M+C, {args.workers} workers x {args.envs_per_worker} games", every),
        (f"dream, {args.rows} rows, {args.threads} threads", dream),
        (f"dream, bf16 products ({'native' if cpu_has_native_bf16() else 'emulated'} here)", bf16),
    ]
    print(f"{'what':<48}{'steps/s':>12}{'vs agent, all workers':>24}")
    for name, rate in rows:
        print(f"{name:<48}{rate:>12.0f}{rate / every:>23.1f}x")
    return dict(rows)


if __name__ == "__main__":
    run(main, build_parser())
