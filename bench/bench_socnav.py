"""SocNavGym (--env socnav): what a step costs, from the simulator alone to the agent in the loop.

Usage:
    python bench/bench_socnav.py [--steps 2000] [--workers 2] [--envs-per-worker 8]

Rows, all measured in this run, each against the first (SocNavGym's own step, the reference path):
  * simulator: SocNavGym's step alone (people, ORCA for its reference robot, reward, its entity
    observations), no picture, under the brownian random policy, one core;
  * env, 256x256 frames: the same plus our top-down frame (the default renderer; area-averaged to
    64x64 for V later);
  * env, 1024x1024 frames: drawn at about SocNavGym's own render size (its window draws ~925x925);
  * agent V+M+C: one episode worker driving --envs-per-worker envs with V, M and C batched over them,
    on random weights (the cost does not depend on them), then --workers of them (the machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.agent_rates import agent_rate, env_rate  # noqa: E402
from utils.cli import make_parser, positive_int, run  # noqa: E402

ENV = "socnav"


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--steps", type=positive_int, default=2000, help="steps per row (about)")
    parser.add_argument(
        "--envs-per-worker", type=positive_int, default=8, help="envs an episode worker drives"
    )
    parser.add_argument("--workers", type=positive_int, default=2, help="episode workers of the last row")
    return parser


def simulator_step(env, action) -> bool:
    """SocNavGym's own step, without our frame: whether the episode ended."""
    game = env.unwrapped
    with game._own_generators():
        return any(game.sim.step(action)[2:4])


def main(args) -> dict[str, float]:
    torch.set_num_threads(1)
    sim = env_rate(ENV, "256x256", args.steps, simulator_step)
    small = env_rate(ENV, "256x256", args.steps)
    large = env_rate(ENV, "1024x1024", args.steps)
    one, every = agent_rate(ENV, "256x256", args.steps, args.envs_per_worker, args.workers)
    rows = [
        ("SocNavGym's simulator alone, 1 core", sim),
        ("env with 256x256 frames, 1 core", small),
        ("env with 1024x1024 frames, 1 core", large),
        (f"agent V+M+C, 1 worker x {args.envs_per_worker} envs", one),
        (f"agent V+M+C, {args.workers} workers x {args.envs_per_worker} envs", every),
    ]
    print(f"{'what':<48}{'steps/s':>12}{'vs the simulator':>20}")
    for name, rate in rows:
        print(f"{name:<48}{rate:>12.0f}{rate / sim:>19.2f}x")
    return dict(rows)


if __name__ == "__main__":
    run(main, build_parser())
