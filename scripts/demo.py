"""The whole pipeline, each stage through its real script, at the scale of a recipe.

Each stage runs as ``python SCRIPT ARGS`` would (the command is printed, to rerun a stage alone), in
this process: one interpreter and one worker server for the whole recipe.

Usage:
    python scripts/demo.py                              # a few minutes: every stage at toy scale
    python scripts/demo.py --preset budget --logdir runs/budget   # the 2-core recipe (~2 h)
    python scripts/demo.py --preset my_recipe.toml --logdir runs/mine   # a recipe of your own

A recipe is a file, recipes/<name>.toml: every stage knob (the flags below) set once; any flag given
on the command line overrides the recipe's value. A new recipe, or a new game's, is a new file there.
  * demo: a toy run that checks every stage on this machine, then drives the shipped pretrained
    agent (pretrained/carracing) on full tracks and records the last one, and plays the shipped Doom
    agent (pretrained/doom-takecover) likewise;
  * budget: the recipe behind the README's score: every stage at the scale chosen for 2 CPU cores,
    in two whole pipelines with the better kept (--pipelines 2, below), then test_controller.py on
    100 fixed tracks with the exact (stock-pixel) renderer;
  * doom: the paper's second experiment on VizDoom take-cover: C trained only inside M's dream
    (tau 1.15, the paper's weight penalty, z sampled), evaluated and tested in the real game;
  * socnav: social navigation in SocNavGym (the optional extra: bash scripts/setup.sh --socnav), seen
    by the robot (--env socnav-ego): a small run of the four stages, C trained in the real simulator,
    then tested on 100 episodes beside the random policy and the state-reading references on the same
    episodes (success, collision and timeout rates, and what each collision hit).

--rounds 2 is iterative training in one command: round 0 in <logdir>/round0, then rollouts
driven by round 0's agent, and V, M and C retrained on both sets of rollouts in <logdir> (--round-v keep:
round 0's V is kept, and M and C are retrained through it).

--pipelines N runs the whole pipeline N times, pipeline k in <logdir>/pipeline<k> with seed --seed + k
(its own rollouts, V, M and C), then drives every pipeline's C on the same tracks, which none of them
trained or evaluated on (--test-episodes of them, never test tracks), and copies the best one's V, M
and C into <logdir>: the test, exports and continued training then read <logdir> as a one-pipeline run.
The scores are in <logdir>/pick.json.

Everything goes under --logdir (rollouts in <logdir>/rollouts); rerunning resumes each stage.
A stage table with wall-clock times is printed at the end and written to <logdir>/stages.json.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import test_controller  # noqa: E402
from envs import get_env_spec  # noqa: E402
from experiment.logdir import RANDOM_RESULTS, STAGES, TEST_RESULTS, Logdir  # noqa: E402
from models.dream import add_temperature_flag  # noqa: E402
from scripts.probe_socnav import TEACHERS  # noqa: E402
from utils.checkpoint import atomic_write, load_json  # noqa: E402
from utils.cli import (  # noqa: E402
    UserError,
    add_workers_flag,
    make_parser,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run,
    run_stage,
)
from utils.logging import load_args  # noqa: E402
from utils.seeding import EVAL_EPISODES, episode_seed  # noqa: E402

PICK_RESULTS = "pick.json"

PRETRAINED = ROOT / "pretrained" / "carracing"
PRETRAINED_DOOM = ROOT / "pretrained" / "doom-takecover"

# Every knob a recipe sets: each is a flag below (--rollouts, --vae-epochs, ...) that overrides it.
KNOBS = (
    "env", "rounds", "pipelines", "round_noise", "round_v", "policy", "rollouts", "max_steps", "vae_epochs",
    "vae_batch", "vae_lr", "vae_salient_weight", "vae_salient", "vae_label_weight", "mdrnn_epochs",
    "mdrnn_batch", "seq_len", "generations", "pop_size", "sigma", "n_samples", "train_max_steps",
    "negative_cutoff", "eval_every", "eval_episodes", "confirm_episodes", "searches", "train_renderer",
    "dream", "temperature", "dream_steps", "weight_penalty", "z_mode", "imitate", "dagger", "teacher",
    "units", "episode_steps", "test_episodes", "test_renderer", "random_baseline", "pretrained_episodes",
    "doom_episodes",
)  # fmt: skip
RECIPES = ROOT / "recipes"
ROUND_V = ("retrain", "keep")  # what round 1 of --rounds 2 does with V

# (name, command) of a stage: a script's argv, or a function run in this process.
Stage = tuple[str, list[str] | Callable[[], None]]


def load_recipe(path: Path) -> dict:
    """The knobs of the recipe file ``path`` (TOML, every knob of :data:`KNOBS` set once); one line naming
    the file when it cannot be read or sets an unknown knob or misses one."""
    try:
        knobs = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"recipe {path}: cannot be read ({err})") from None
    unknown = sorted(set(knobs) - set(KNOBS))
    missing = [k for k in KNOBS if k not in knobs]
    if unknown or missing:
        what = f"unknown knob {unknown[0]!r}" if unknown else f"missing knob(s) {', '.join(missing)}"
        raise UserError(f"recipe {path}: {what}; a recipe sets each of {', '.join(KNOBS)}")
    return knobs


# The shipped recipes, by name (recipes/<name>.toml); --preset takes a name or a recipe file's path.
PRESETS = {path.stem: load_recipe(path) for path in sorted(RECIPES.glob("*.toml"))}


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument(
        "--preset",
        default="demo",
        help=f"the recipe: {', '.join(sorted(PRESETS))} (recipes/<name>.toml), or a recipe file's path",
    )
    parser.add_argument("--logdir", type=Path, default=Path("demo_run"), help="where everything is written")
    add_workers_flag(parser, "--threads", "worker processes of every stage")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    knobs = parser.add_argument_group("stage knobs (default: the preset's value)")
    add = knobs.add_argument
    add(
        "--rounds",
        type=int,
        choices=(1, 2),
        help="2: iterative training, a second round of rollouts driven by the first round's agent, then V, "
        "M and C retrained on both",
    )
    add(
        "--round-noise",
        type=positive_float,
        help="std of the noise added to round 0's actions when its agent drives round 1's rollouts",
    )
    add(
        "--round-v",
        choices=ROUND_V,
        help="round 1's V: retrain (on both rounds' rollouts), or keep round 0's (M is trained on both "
        "rounds' rollouts through it: about half of round 1's time)",
    )
    add(
        "--pipelines",
        type=positive_int,
        help="independent whole pipelines (rollouts, V, M and C; seeds --seed + k), the one whose C drives "
        "best on tracks none of them saw kept",
    )
    add(
        "--policy",
        help="the policy of the first round's rollouts, one of the env's (generation_script.py --policy; "
        "SocNavGym: brownian, or goal-mix, half the episodes heading for the goal); empty: the env's first",
    )
    add("--rollouts", type=positive_int, help="rollouts to generate (per round)")
    add("--max-steps", type=positive_int, help="steps per generated rollout")
    add("--vae-epochs", type=positive_int, help="VAE epochs")
    add("--vae-batch", type=positive_int, help="VAE batch size")
    add("--vae-lr", type=positive_float, help="VAE learning rate")
    add(
        "--vae-salient-weight",
        type=positive_float,
        help="what the pixels the game marks salient count in V's loss (trainvae.py --salient-weight)",
    )
    add(
        "--vae-salient",
        help="the game's mask --vae-salient-weight weights (trainvae.py --salient); empty: the game's first",
    )
    add(
        "--vae-label-weight",
        type=nonnegative_float,
        help="what V's state head's error on the rollouts' state labels counts in its loss (trainvae.py "
        "--label-weight; SocNavGym's); 0: no head",
    )
    add("--mdrnn-epochs", type=positive_int, help="MDN-RNN epochs")
    add("--mdrnn-batch", type=positive_int, help="MDN-RNN sequences per batch")
    add("--seq-len", type=positive_int, help="MDN-RNN training sequence length")
    add("--generations", type=positive_int, help="CMA-ES generations")
    add("--pop-size", type=positive_int, help="CMA-ES population")
    add("--sigma", type=positive_float, help="CMA-ES initial step size")
    add("--n-samples", type=positive_int, help="training tracks per candidate")
    add("--train-max-steps", type=positive_int, help="length cap of controller training episodes")
    add("--negative-cutoff", type=nonnegative_int, help="training-episode cut-off after negative steps")
    add("--eval-every", type=positive_int, help="generations between controller evaluations")
    add("--eval-episodes", type=positive_int, help="tracks of each controller evaluation")
    add("--confirm-episodes", type=nonnegative_int, help="more tracks a new best must also win on (0: none)")
    add(
        "--searches",
        type=positive_int,
        help="independent searches of C (seeds --seed + k), the best of all kept",
    )
    add("--env", help="the game (a spec of envs/)")
    add("--train-renderer", help="renderer of controller training and evaluation (CarRacing: fast or approx)")
    add("--test-renderer", help="renderer of the final test (the game's own pixels)")
    add("--dream", type=int, choices=(0, 1), help="1: train C inside M's dream (traincontroller.py --dream)")
    add_temperature_flag(knobs, "the dream C is trained in", default=None)
    add("--dream-steps", type=positive_int, help="dream length cap")
    add("--weight-penalty", type=float, help="fitness penalty x mean(w^2)")
    add("--z-mode", choices=("mu", "sample"), help="C and M see the encoder mean or a sample of z")
    add(
        "--imitate",
        type=nonnegative_int,
        help="N > 0: C's search starts from the linear C fitted to the env's reference --teacher on N "
        "episodes (SocNavGym: scripts/probe_socnav.py --save-c, which reads the simulator's state while it "
        "fits; C acts from pixels), evaluated first; 0: from zeros",
    )
    add(
        "--dagger", type=nonnegative_int, help="with --imitate: rounds of DAgger of that fit, N episodes each"
    )
    add("--teacher", choices=TEACHERS, help="with --imitate: the reference C is fitted to")
    add(
        "--units",
        type=nonnegative_int,
        help="with --imitate: N > 0 fits a C with a hidden layer of N tanh units, which is the agent's C "
        "(too many parameters for CMA-ES: no search follows); 0: a linear C, the search's start",
    )
    add("--episode-steps", type=positive_int, help="length cap of evaluation and test episodes")
    add("--test-episodes", type=positive_int, help="tracks of the final test")
    add("--pretrained-episodes", type=nonnegative_int, help="tracks driven by the shipped agent (0: none)")
    add("--doom-episodes", type=nonnegative_int, help="episodes played by the shipped Doom agent (0: none)")
    add(
        "--random-baseline",
        type=int,
        choices=(0, 1),
        help="1: also test the random policy on the same episodes (test_controller.py --random-policy), and "
        "the env's references, which read the simulator's state (--reference; SocNavGym: go-to-goal, orca)",
    )
    return parser


def recipe(name: str) -> dict:
    """The knobs of --preset ``name``: a shipped recipe's name, or the path of a recipe file."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if path.suffix != ".toml" or not path.is_file():
        raise UserError(f"--preset {name}: neither a recipe ({', '.join(sorted(PRESETS))}) nor a .toml file")
    return load_recipe(path)


def resolve(args):
    """Fill every knob left unset from the recipe."""
    for key, value in recipe(args.preset).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def pipeline_dirs(args) -> list[Path]:
    """Where each pipeline of --pipelines runs: <logdir> itself when there is one."""
    if args.pipelines == 1:
        return [args.logdir]
    return [args.logdir / f"pipeline{k}" for k in range(args.pipelines)]


def argv(script: str, **flags) -> list[str]:
    """``script`` and its flags as an argv list: ``max_steps=5`` is ``--max-steps 5``, True a bare flag,
    None or False left out; paths stay one argument whatever they hold."""
    out = [script]
    for key, value in flags.items():
        if value is None or value is False:
            continue
        out.append("--" + key.replace("_", "-"))
        if value is not True:
            out.append(str(value))
    return out


def driving(args, seed: int) -> dict:
    """The flags of driving episodes that every controller stage shares."""
    return {"max_workers": args.threads, "max_steps": args.episode_steps, "z_mode": args.z_mode, "seed": seed}


def round_stages(args, pipeline: Path, seed: int, r: int, suffix: str) -> list[Stage]:
    """Rollouts, V, M and C of round ``r`` of the pipeline in ``pipeline``. One round: rollouts of the random
    policy in <pipeline>/rollouts, V, M and C in <pipeline>. Two rounds (iterative training): round 0 is
    that in <pipeline>/round0 from <pipeline>/rollouts/round0; round 1 adds rollouts driven by round 0's
    agent (<pipeline>/rollouts/round1, new tracks) and trains V, M and C again on both sets, in <pipeline>;
    with --round-v keep, round 1 copies round 0's V instead of training one, and M reads both sets through
    it."""
    last = r == args.rounds - 1
    keep_v = r > 0 and args.round_v == "keep"
    experiment = pipeline if last else pipeline / f"round{r}"
    new_data = pipeline / "rollouts" if args.rounds == 1 else pipeline / "rollouts" / f"round{r}"
    policy = (
        {"policy": "controller", "logdir": pipeline / f"round{r - 1}", "noise": args.round_noise}
        if r
        else {"policy": args.policy or None}
    )
    dream = {"dream": True, "temperature": args.temperature, "dream_steps": args.dream_steps}
    start = experiment / "ctrl_start.tar" if args.imitate and not args.units else None
    imitation = (
        f"fit C to {args.teacher}{suffix}",
        argv(
            "scripts/probe_socnav.py", logdir=experiment, episodes=args.imitate, dagger=args.dagger,
            teacher=args.teacher, units=args.units, max_steps=args.episode_steps, seed=seed,
            save_c=start or experiment / "ctrl" / "best.tar", out=experiment / "imitation.json",
        ),
    )  # fmt: skip
    search = (
        f"train C (CMA-ES){suffix}",
        argv(
            "traincontroller.py", logdir=experiment, start_from=start, pop_size=args.pop_size,
            sigma=args.sigma, n_samples=args.n_samples,
            generations=args.generations, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
            confirm_episodes=args.confirm_episodes, searches=args.searches,
            train_max_steps=args.train_max_steps, negative_cutoff=args.negative_cutoff,
            weight_penalty=args.weight_penalty, renderer=args.train_renderer, **driving(args, seed),
            **(dream if args.dream else {}),
        ),
    )  # fmt: skip
    train_v = (
        f"train V (VAE){suffix}",
        argv(
            "trainvae.py", logdir=experiment, dataset=pipeline / "rollouts" if last else new_data,
            epochs=args.vae_epochs, batch_size=args.vae_batch, lr=args.vae_lr, workers=args.threads,
            salient_weight=args.vae_salient_weight, salient=args.vae_salient or None,
            label_weight=args.vae_label_weight or None, seed=seed,
        ),
    )  # fmt: skip
    copy_v = (
        f"keep round {r - 1}'s V{suffix}",
        lambda: copy_stage(pipeline / f"round{r - 1}", experiment, "vae"),
    )
    return [
        (
            f"generate rollouts{suffix}",
            argv(
                "data/generation_script.py", env=args.env, **policy, rollouts=args.rollouts, rootdir=new_data,
                threads=args.threads, max_steps=args.max_steps, seed=seed + r,
            ),
        ),
        copy_v if keep_v else train_v,
        (
            f"train M (MDN-RNN){suffix}",
            argv(
                "trainmdrnn.py", logdir=experiment, dataset=pipeline / "rollouts" if keep_v else None,
                epochs=args.mdrnn_epochs, batch_size=args.mdrnn_batch, seq_len=args.seq_len, seed=seed,
            ),
        ),
        *([imitation] if args.imitate else []),
        *([] if args.units else [search]),
    ]  # fmt: skip


def final_stages(args) -> list[Stage]:
    """The test of --logdir's agent, then what --random-baseline, --pretrained-episodes and --doom-episodes
    ask for, each on the test episodes of --seed."""
    logdir, seed = args.logdir, args.seed
    out = [
        (
            "test C",
            argv(
                "test_controller.py", logdir=logdir, episodes=args.test_episodes, renderer=args.test_renderer,
                record=logdir / "drive.gif", **driving(args, seed),
            ),
        )
    ]  # fmt: skip
    if args.random_baseline:
        # The random policy, and the env's references (controllers reading the simulator's state), on the
        # test's own episodes.
        baselines = {"random policy (baseline)": {"random_policy": True}}
        for name in get_env_spec(args.env).references:
            baselines[f"reference {name} (baseline)"] = {"reference": name}
        for name, which in baselines.items():
            out.append(
                (
                    name,
                    argv(
                        "test_controller.py", logdir=logdir, episodes=args.test_episodes, **which,
                        renderer=args.test_renderer, max_steps=args.episode_steps, seed=seed,
                    ),
                )
            )  # fmt: skip
    shipped_agents = (
        ("drive the pretrained agent", PRETRAINED, args.pretrained_episodes, "pretrained", "drive.gif", None),
        ("play the pretrained Doom agent", PRETRAINED_DOOM, args.doom_episodes, "pretrained-doom", "play.gif",
         "sample"),
    )  # fmt: skip
    for name, shipped, episodes, out_dir, record, z_mode in shipped_agents:
        if episodes:
            flags = dict(out=logdir / out_dir, record=logdir / out_dir / record, watch_track=episodes - 1)
            flags |= dict(z_mode=z_mode, max_workers=args.threads, seed=seed)
            out.append((name, argv("test_controller.py", logdir=shipped, episodes=episodes, **flags)))
    return out


def stages(args) -> list[Stage]:
    """(name, command) of each stage; a command is a script's argv or, for the pick, a function. Pipelines
    (--pipelines > 1) are each a whole run in <logdir>/pipeline<k>, from seed --seed + k."""
    out = []
    for k, pipeline in enumerate(pipeline_dirs(args)):
        suffix = f" (pipeline {k})" if args.pipelines > 1 else ""
        for r in range(args.rounds):
            out += round_stages(
                args, pipeline, args.seed + k, r, f" (round {r})" if args.rounds > 1 else suffix
            )
    if args.pipelines > 1:
        out.append(("pick the best pipeline", lambda: pick_pipeline(args)))
    return out + final_stages(args)


def check_pipelines(args) -> None:
    """One line when --pipelines does not match what --logdir holds, or cannot run."""
    if args.pipelines > 1 and args.rounds > 1:
        raise UserError(
            f"--rounds 2 and --pipelines {args.pipelines} do not combine: add --pipelines 1 or --rounds 1"
        )
    pick = args.logdir / PICK_RESULTS
    held = (
        load_json(pick, "restore it, or delete it and rerun to redo the pick")["pipelines"]
        if pick.exists()
        else None
    )
    if held is not None and len(held) != args.pipelines:
        raise UserError(
            f"{args.logdir} holds a run of {len(held)} pipelines ({pick.name}): rerun it with --pipelines "
            f"{len(held)}"
        )
    logdir = Logdir(args.logdir)
    if held is None and args.pipelines > 1 and logdir.stage("vae").exists():
        ctrl_args = load_args(logdir.stage("ctrl"))  # its C's flags, once C has started
        held_searches = args.searches if ctrl_args is None else ctrl_args["searches"]
        searches = f" --searches {held_searches}" if held_searches != args.searches else ""
        raise UserError(
            f"{args.logdir} holds a one-pipeline run: resume it with --pipelines 1{searches}, or give "
            f"--pipelines {args.pipelines} a new --logdir"
        )


def pick_pipeline(args) -> dict:
    """Drive every pipeline's C on the same tracks: --test-episodes tracks of the evaluation namespace of
    seed --seed + --pipelines, which no pipeline trained or evaluated on and which are never test tracks.
    The best mean wins; its V, M and C are copied into --logdir (each stage directory renamed into place
    whole, so a killed copy is redone). A rerun keeps the pick of <logdir>/pick.json."""
    path = args.logdir / PICK_RESULTS
    if path.exists():
        pick = load_json(path, "restore it, or delete it and rerun to redo the pick")
    else:
        pick_seed = args.seed + args.pipelines
        seeds = [episode_seed(pick_seed, EVAL_EPISODES, i) for i in range(args.test_episodes)]
        pipelines = []
        for k, pipeline in enumerate(pipeline_dirs(args)):
            flags = test_controller.build_parser().parse_args(
                [
                    "--logdir", str(pipeline), "--renderer", args.test_renderer,
                    "--max-workers", str(args.threads), "--max-steps", str(args.episode_steps),
                    "--z-mode", args.z_mode,
                ]
            )  # fmt: skip
            returns = test_controller.drive_agent(flags, seeds)[0]
            pipelines.append(
                {
                    "logdir": pipeline.name,
                    "seed": args.seed + k,
                    "mean": float(returns.mean()),
                    "std": float(returns.std()),
                    "returns": returns.tolist(),
                }
            )
            print(f"pipeline {k}: {returns.mean():.1f} +- {returns.std():.1f} over {len(seeds)} tracks")
        best = max(range(len(pipelines)), key=lambda k: pipelines[k]["mean"])
        pick = {"tracks": {"seed": pick_seed, "namespace": EVAL_EPISODES, "episodes": len(seeds)}}
        pick |= {"pipelines": pipelines, "winner": best}
        text = json.dumps(pick, indent=1).encode()
        atomic_write(path, lambda f: f.write(text))
    winner = args.logdir / pick["pipelines"][pick["winner"]]["logdir"]
    for stage in STAGES:
        copy_stage(winner, args.logdir, stage)
    print(f"kept pipeline {pick['winner']} ({winner}): its V, M and C copied into {args.logdir}")
    return pick


def copy_stage(source: Path, logdir: Path, stage: str) -> None:
    """``source``'s stage directory copied into ``logdir`` unless it has one already (renamed into place
    whole, so a killed copy is redone)."""
    target = Logdir(logdir).stage(stage)
    if not target.exists():
        partial = target.with_name(f".{stage}.copying")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(Logdir(source).stage(stage), partial)
        os.replace(partial, target)


def main(args) -> list[tuple[str, float]]:
    resolve(args)
    args.logdir = args.logdir.resolve()  # the records name where the run is, wherever it was started
    check_pipelines(args)
    if args.imitate and args.teacher not in get_env_spec(args.env).references:
        raise UserError(
            f"--imitate {args.imitate}: {args.env} has no {args.teacher} reference to fit C to (SocNavGym's "
            "have)"
        )
    if args.units and not args.imitate:
        raise UserError(
            f"--units {args.units}: a C with a hidden layer is fitted, not searched: add --imitate N "
            "(episodes of the fit)"
        )
    timings = []
    for name, cmd in stages(args):
        start = time.perf_counter()
        if callable(cmd):
            print(f"\n=== {name}", flush=True)
            cmd()
        else:
            print(f"\n=== {name}: python {shlex.join(cmd)}", flush=True)
            run_stage(cmd, f"stage '{name}' failed (see above); fix it and rerun, finished stages resume")
        timings.append((name, time.perf_counter() - start))
    stats = json.loads(Logdir(args.logdir).test_results.read_text())
    summary = {
        "preset": args.preset,
        "knobs": {key: getattr(args, key) for key in KNOBS},
        "stages": [{"stage": name, "seconds": round(seconds, 1)} for name, seconds in timings],
        "test": stats,
    }
    text = json.dumps(summary, indent=2).encode()
    atomic_write(args.logdir / "stages.json", lambda f: f.write(text))
    print(f"\n=== {args.preset} finished")
    width = max([32] + [len(name) + 2 for name, _ in timings])
    print(f"{'stage':<{width}}{'minutes':>10}")
    for name, seconds in timings:
        print(f"{name:<{width}}{seconds / 60:>10.1f}")
    print(f"{'total':<{width}}{sum(t for _, t in timings) / 60:>10.1f}")
    print(
        f"\nscore: {stats['mean']:.1f} +- {stats['std']:.1f} over {stats['episodes']} episodes of at most "
        f"{stats['max_steps']} steps (min {stats['min']:.1f}, max {stats['max']:.1f})"
    )
    if args.pipelines > 1:
        pick = load_json(args.logdir / PICK_RESULTS, "restore it, or delete it and rerun to redo the pick")
        scores = ", ".join(f"{p['logdir']} {p['mean']:.1f}" for p in pick["pipelines"])
        print(f"kept pipeline {pick['winner']} of {scores} on {pick['tracks']['episodes']} tracks none saw")
    if args.random_baseline:
        ctrl = Logdir(args.logdir).stage("ctrl")
        baseline = json.loads((ctrl / RANDOM_RESULTS).read_text())
        print(f"the random policy on the same episodes: {baseline['mean']:.1f} +- {baseline['std']:.1f}")
        results = [("agent", stats), ("random policy", baseline)]
        for name in get_env_spec(args.env).references:
            results.append(
                (f"reference {name}", json.loads((ctrl / f"reference_{name}_returns.json").read_text()))
            )
        for name, result in results:
            if "outcome_rates" in result:
                details = test_controller.percentages(result.get("detail_rates", {}))
                print(
                    f"  {name}: {test_controller.percentages(result['outcome_rates'])}"
                    + (f" ({details})" if details else "")
                    + f", return {result['mean']:.1f}"
                )
    if args.pretrained_episodes:
        shipped = json.loads((args.logdir / "pretrained" / TEST_RESULTS).read_text())
        print(
            f"the shipped agent (pretrained/carracing): {shipped['mean']:.1f} over {shipped['episodes']} "
            f"full tracks here; {PRETRAINED / 'run'} has its 100-track test"
        )
    if args.doom_episodes:
        doom = json.loads((args.logdir / "pretrained-doom" / TEST_RESULTS).read_text())
        print(
            f"the shipped Doom agent (pretrained/doom-takecover, trained only in the dream): "
            f"{doom['mean']:.0f} frames survived over {doom['episodes']} episodes here; "
            f"{PRETRAINED_DOOM / 'run'} has its 100-episode test"
        )
    if args.preset == "demo":
        print("a demo-scale agent barely drives: `--preset budget` is the recipe behind the README's score")
    look = [
        f"{args.logdir}/vae/samples",
        f"{args.logdir}/mdrnn/samples",
        f"{args.logdir}/drive.gif",
        f"{args.logdir}/ctrl/test_histogram.png",
        f"{args.logdir}/ctrl/learning_curve.png",
    ]
    if args.pretrained_episodes:
        look.append(f"{args.logdir}/pretrained/drive.gif (the shipped agent)")
    if args.doom_episodes:
        look.append(f"{args.logdir}/pretrained-doom/play.gif (the shipped Doom agent)")
    print(f"look at: {', '.join(look)}; TensorBoard logs under {args.logdir}")
    return timings


if __name__ == "__main__":
    run(main, build_parser())
