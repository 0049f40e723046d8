"""Environment steps/s and rollout generation throughput at --threads 1 and 2.

Usage:
    python bench/bench_generation.py [--steps 500] [--rollouts 4] [--max-steps 250]

Prints a table. The env row steps one CarRacing-v3 with brownian actions on one core; the generation
rows run data/generation_script.py's main() for real (preprocessing and compressed writes included)
into a temporary directory.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from data import generation_script  # noqa: E402
from envs import get_env_spec, make_env  # noqa: E402
from envs.policies import brownian_actions  # noqa: E402
from utils.cli import make_parser, positive_int  # noqa: E402


def env_steps_per_s(renderer: str, steps: int, seed: int = 0) -> float:
    env = make_env(renderer=renderer, max_episode_steps=10**9)
    env.reset(seed=seed)
    actions = brownian_actions(
        np.random.default_rng(seed), env.action_space.low, env.action_space.high, steps
    )
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def generation(threads: int, rollouts: int, max_steps: int, renderer: str) -> tuple[float, float]:
    """(rollouts per minute, env steps per second) of the real script."""
    with tempfile.TemporaryDirectory() as tmp:
        args = generation_script.build_parser().parse_args(
            [
                "--rootdir",
                tmp,
                "--rollouts",
                str(rollouts),
                "--threads",
                str(threads),
                "--max-steps",
                str(max_steps),
                "--renderer",
                renderer,
            ]
        )
        start = time.perf_counter()
        generation_script.main(args)
        elapsed = time.perf_counter() - start
    return rollouts / elapsed * 60, rollouts * max_steps / elapsed


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--steps", type=positive_int, default=500, help="env steps for the env row")
    parser.add_argument("--rollouts", type=positive_int, default=4, help="rollouts per generation row")
    parser.add_argument("--max-steps", type=positive_int, default=250, help="steps per rollout")
    renderers = get_env_spec("carracing").renderers
    parser.add_argument(
        "--renderers",
        nargs="+",
        choices=renderers,
        default=list(renderers),
        help="CarRacing implementations to measure",
    )
    args = parser.parse_args()
    rows = []
    for renderer in args.renderers:
        rows.append((f"env.step, 1 core [{renderer}]", env_steps_per_s(renderer, args.steps), None))
        for threads in (1, 2):
            per_min, sps = generation(threads, args.rollouts, args.max_steps, renderer)
            rows.append((f"generation --threads {threads} [{renderer}]", sps, per_min))
    base = rows[0][1]
    print(f"\n{'what':<38}{'steps/s':>10}{'rollouts/min':>14}{'vs env.step':>13}")
    for name, sps, per_min in rows:
        per_min_text = f"{per_min:.1f}" if per_min is not None else "-"
        print(f"{name:<38}{sps:>10.0f}{per_min_text:>14}{sps / base:>12.2f}x")
    print(f"(rollouts of {args.max_steps} steps; rollouts/min scale inversely with rollout length)")


if __name__ == "__main__":
    main()
