"""The whole pipeline at a small scale, each stage through its real script.

Usage:
    python scripts/demo.py [--logdir demo_run] [--rollouts 8] [--threads 2]

Everything goes under --logdir (rollouts in <logdir>/rollouts); rerunning resumes each stage.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.cli import UserError, make_parser, positive_int, run  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("demo_run"), help="where everything is written")
    parser.add_argument("--rollouts", type=positive_int, default=8, help="rollouts to generate")
    parser.add_argument("--max-steps", type=positive_int, default=200, help="steps per generated rollout")
    parser.add_argument("--threads", type=positive_int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    return parser


def stages(args) -> list[tuple[str, list[str]]]:
    """(name, command) of each stage, at demo scale."""
    data = args.logdir / "rollouts"
    return [
        (
            "generate rollouts",
            [
                "data/generation_script.py",
                "--rollouts",
                str(args.rollouts),
                "--rootdir",
                str(data),
                "--threads",
                str(args.threads),
                "--max-steps",
                str(args.max_steps),
                "--seed",
                str(args.seed),
            ],
        ),
    ]


def main(args) -> list[tuple[str, float]]:
    timings = []
    for name, cmd in stages(args):
        cmd = [sys.executable, *cmd]
        print(f"\n=== {name}: {shlex.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError(f"stage '{name}' failed (see above); fix it and rerun, finished stages resume")
        timings.append((name, time.perf_counter() - start))
    print("\n=== demo finished")
    print(f"{'stage':<24}{'seconds':>10}")
    for name, seconds in timings:
        print(f"{name:<24}{seconds:>10.1f}")
    return timings


if __name__ == "__main__":
    run(main, build_parser())
