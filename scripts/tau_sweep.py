"""The paper's temperature table (VizDoom take-cover) at our scale: for each tau, C trained inside M's
dream from the same V and M, then scored in the dream and in the real game. The dream's length, the
weight penalty, z's mode and the evaluation episodes are --preset's (recipes/doom.toml: dreams up to
2100 frames, weight penalty 0.01, z sampled, 16 real evaluation episodes).

Usage:
    python scripts/tau_sweep.py --logdir runs/doom --out runs/doom_sweep --generations 30

For every --taus value: <out>/tau_<tau> gets a copy of <logdir>'s V and M (and latent cache), then
traincontroller.py --dream --temperature tau (the knobs below), then test_controller.py --pick
--in-dream (dream score, at that tau) and test_controller.py --pick (the real game), both on --episodes
pick episodes: the table chooses a temperature, so its real column is not a test number; test the
chosen controller with test_controller.py on the test episodes. <out>/sweep.json holds every score; a
table is printed. Rerunning resumes an interrupted search and skips finished taus.

The table over seeds (the paper's, with the spread a single search hides): one --out per --seed, the
search's seed, and --test-seed N to drive every tau's C on test_controller.py --seed N's test episodes
too, the same episodes for every tau and search, so that the real column is a test where nothing is
chosen from the table:

    for s in 0 1 2; do
        python scripts/tau_sweep.py --logdir runs/doom --out runs/doom_sweep/seed$s --seed $s --test-seed 7
    done
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiment.logdir import DREAM_RESULTS, TEST_RESULTS, Logdir, pick_results  # noqa: E402
from scripts import demo  # noqa: E402
from utils.checkpoint import atomic_write, load_json  # noqa: E402
from utils.cli import add_workers_flag, make_parser, positive_int, run, run_stage  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, required=True, help="a run with V and M (its C is not used)")
    parser.add_argument("--out", type=Path, required=True, help="where the sweep's runs go")
    parser.add_argument(
        "--taus", type=float, nargs="+", default=[0.1, 0.5, 1.0, 1.15, 1.3], help="temperatures"
    )
    parser.add_argument("--generations", type=positive_int, default=30, help="CMA-ES generations per tau")
    parser.add_argument("--pop-size", type=positive_int, default=32, help="CMA-ES population")
    parser.add_argument("--n-samples", type=positive_int, default=16, help="dreams per candidate")
    parser.add_argument("--eval-every", type=positive_int, default=10, help="real-game evaluations every ...")
    parser.add_argument(
        "--episodes", type=positive_int, default=100, help="pick episodes of each tau (game and dream)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every tau's search (CMA-ES and its dreams)"
    )
    parser.add_argument(
        "--test-seed",
        type=int,
        default=None,
        help="also drive every tau's C on this seed's test episodes (test_controller.py --seed)",
    )
    add_workers_flag(parser, "--threads", "episode worker processes")
    parser.add_argument(
        "--preset",
        default="doom",
        help="the recipe whose dream settings C is trained with (see scripts/demo.py)",
    )
    return parser


def stage(*argv: str | Path) -> None:
    """Run one of the project's scripts with ``argv``; one line naming it when it fails."""
    argv = [str(a) for a in argv]
    print(f"=== python {shlex.join(argv)}", flush=True)
    run_stage(argv, f"failed: {shlex.join(argv)}; rerun the sweep to resume")


def main(args) -> dict:
    knobs = demo.recipe(args.preset)
    real_game = ("--z-mode", knobs["z_mode"], "--max-workers", args.threads)
    source = Logdir(args.logdir)
    results = {}
    for tau in args.taus:
        logdir = Logdir(args.out / f"tau_{tau:g}")
        done = logdir.root / "scores.json"
        if not done.is_file():
            for name in ("vae", "mdrnn"):
                if not logdir.stage(name).is_dir():
                    shutil.copytree(
                        source.stage(name), logdir.stage(name), ignore=shutil.ignore_patterns(".lock")
                    )
            stage(
                "traincontroller.py", "--logdir", logdir.root, "--dream", "--temperature", tau,
                "--generations", args.generations, "--pop-size", args.pop_size, "--n-samples", args.n_samples,
                "--dream-steps", knobs["dream_steps"], "--weight-penalty", knobs["weight_penalty"],
                "--z-mode", knobs["z_mode"], "--eval-every", args.eval_every,
                "--eval-episodes", knobs["eval_episodes"], "--max-workers", args.threads, "--seed", args.seed,
            )  # fmt: skip
            pick = ("--pick", "--episodes", args.episodes)
            stage("test_controller.py", "--logdir", logdir.root, "--in-dream", "--temperature", tau, *pick)
            stage("test_controller.py", "--logdir", logdir.root, *real_game, *pick)
            dream = json.loads((logdir.stage("ctrl") / pick_results(DREAM_RESULTS)).read_text())
            real = json.loads((logdir.stage("ctrl") / pick_results(TEST_RESULTS)).read_text())
            scores = {"dream": summary(dream), "real": summary(real)}
            atomic_write(done, lambda f, s=scores: f.write(json.dumps(s).encode()))
        scores = load_json(done, "delete it and rerun the sweep to score this tau again")
        if args.test_seed is not None and scores.get("test", {}).get("seed") != args.test_seed:
            test = ("--seed", args.test_seed, "--episodes", args.episodes)
            stage("test_controller.py", "--logdir", logdir.root, *real_game, *test)
            scores["test"] = summary(json.loads((logdir.stage("ctrl") / TEST_RESULTS).read_text()))
            atomic_write(done, lambda f, s=scores: f.write(json.dumps(s).encode()))
        results[tau] = scores
    text = json.dumps({str(k): v for k, v in results.items()}, indent=1)
    atomic_write(args.out / "sweep.json", lambda f: f.write(text.encode()))
    tested = any("test" in s for s in results.values())
    print(
        f"{'tau':>6}{'dream score':>20}{'real, pick episodes':>22}"
        + (f"{'real, test episodes':>22}" * tested)
    )
    for tau, s in results.items():
        line = f"{tau:>6g}" + "".join(
            f"{s[k]['mean']:>12.0f} +- {s[k]['std']:<5.0f}" for k in ("dream", "real", "test") if k in s
        )
        print(line)
    return results


def summary(scores: dict) -> dict:
    """What the table keeps of a test_controller.py result: the mean, the spread and the episodes' seed."""
    return {"mean": scores["mean"], "std": scores["std"], "seed": scores["seed"]}


if __name__ == "__main__":
    run(main, build_parser())
