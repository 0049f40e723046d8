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
    parser.add_argument("--vae-epochs", type=positive_int, default=5, help="VAE epochs")
    parser.add_argument("--mdrnn-epochs", type=positive_int, default=5, help="MDN-RNN epochs")
    parser.add_argument("--generations", type=positive_int, default=4, help="CMA-ES generations")
    parser.add_argument("--pop-size", type=positive_int, default=8, help="CMA-ES population")
    parser.add_argument(
        "--episode-steps",
        type=positive_int,
        default=300,
        help="episode length cap of controller training and testing",
    )
    parser.add_argument("--test-episodes", type=positive_int, default=8, help="tracks of the final test")
    parser.add_argument("--threads", type=positive_int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    return parser


def stages(args) -> list[tuple[str, list[str]]]:
    """(name, command) of each stage, at demo scale."""
    data, logdir, seed = args.logdir / "rollouts", args.logdir, args.seed
    engine = f"--max-workers {args.threads} --max-steps {args.episode_steps} --seed {seed}"
    commands = [
        (
            "generate rollouts",
            f"data/generation_script.py --rollouts {args.rollouts} --rootdir {data} "
            f"--threads {args.threads} --max-steps {args.max_steps} --seed {seed}",
        ),
        (
            "train V (VAE)",
            f"trainvae.py --logdir {logdir} --dataset {data} --epochs {args.vae_epochs} "
            f"--batch-size 32 --seed {seed}",
        ),
        (
            "train M (MDN-RNN)",
            f"trainmdrnn.py --logdir {logdir} --epochs {args.mdrnn_epochs} --batch-size 16 --seed {seed}",
        ),
        (
            "train C (CMA-ES)",
            f"traincontroller.py --logdir {logdir} --pop-size {args.pop_size} --n-samples 2 "
            f"--generations {args.generations} --eval-every 2 --eval-episodes 4 {engine}",
        ),
        (
            "test C",
            f"test_controller.py --logdir {logdir} --episodes {args.test_episodes} "
            f"--record {logdir / 'drive.gif'} {engine}",
        ),
    ]
    return [(name, shlex.split(command)) for name, command in commands]


def main(args) -> list[tuple[str, float]]:
    timings = []
    for name, cmd in stages(args):
        cmd = [sys.executable, *cmd]
        print(f"\n=== {name}: {shlex.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError(f"stage '{name}' failed (see above); fix it and rerun, finished stages resume")
        timings.append((name, time.perf_counter() - start))
    import json

    stats = json.loads((args.logdir / "ctrl" / "test_returns.json").read_text())
    print("\n=== demo finished")
    print(f"{'stage':<24}{'seconds':>10}")
    for name, seconds in timings:
        print(f"{name:<24}{seconds:>10.1f}")
    print(f"{'total':<24}{sum(t for _, t in timings):>10.1f}")
    print(
        f"\nscore: {stats['mean']:.1f} +- {stats['std']:.1f} over {stats['episodes']} tracks of at most "
        f"{stats['max_steps']} steps (min {stats['min']:.1f}, max {stats['max']:.1f})"
    )
    print("a demo-scale agent barely drives: the README gives the real-scale commands")
    print(
        f"look at: {args.logdir}/vae/samples, {args.logdir}/mdrnn/samples, {args.logdir}/drive.gif, "
        f"{args.logdir}/ctrl/test_histogram.png, {args.logdir}/ctrl/learning_curve.png"
        f"; TensorBoard logs under {args.logdir}"
    )
    return timings


if __name__ == "__main__":
    run(main, build_parser())
