"""Measure the trained agent on fixed episodes: mean +- std, min and max of the returns.

Usage:
    python test_controller.py --logdir exp_dir [--episodes 100] [--record drive.gif] [--display]

The paper's protocol is 100 random tracks (its CarRacing agent: 906 +- 21). Episode i's seed derives
from (--seed, i) in a namespace of its own, so the test never drives the tracks training evaluated on.
--pick drives the pick episodes instead, another namespace, for choosing between finished agents (a
temperature, a controller, a lever) without touching the test episodes that are reported.
The env is the one V was trained on; only renderers that draw the game's own pixels are allowed.
Writes test_returns.json and test_histogram.png to --out (default <logdir>/ctrl).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from tqdm import tqdm

from driving.agent import Agent, AgentSpec
from driving.episode import Episode, EpisodeSettings, WorkerError, drive_chunk
from driving.flags import add_driving_flags, episode_settings, worker_devices
from driving.pool import make_pool
from envs import get_env_spec
from experiment.logdir import (
    DREAM_RESULTS,
    RANDOM_RESULTS,
    TEST_RESULTS,
    Logdir,
    load_agent_parts,
    load_data_record,
    load_dream_cell,
    load_start_latents,
    pick_results,
)
from models.controller import ControllerBatch
from models.dream import Dream, add_temperature_flag, dream_returns, start_latents
from utils.checkpoint import atomic_write
from utils.cli import (
    UserError,
    animation_file,
    make_parser,
    nonnegative_int,
    positive_int,
    run,
)
from utils.plots import histogram_png
from utils.seeding import DREAM_EPISODES, PICK_EPISODES, TEST_EPISODES, derive_seed, episode_seed
from utils.visuals import save_animation


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--episodes", type=positive_int, default=100, help="tracks to drive")
    parser.add_argument(
        "--record",
        type=animation_file,
        default=None,
        help="also save a video of one track's episode (.gif or .mp4; --watch-track picks it)",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="also show one episode in a window (xvfb-run on headless machines; --watch-track picks it)",
    )
    parser.add_argument(
        "--watch-track",
        type=nonnegative_int,
        default=0,
        help="which test track --record and --display drive (0: the first)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the results go (default: <logdir>/ctrl)"
    )
    parser.add_argument(
        "--in-dream",
        action="store_true",
        help="score the controller inside M's dream instead of the game (--episodes dreams from real first "
        "frames, at --temperature, death when M's probability > 0.5): the paper's 'dream score'; writes "
        "dream_returns.json",
    )
    add_temperature_flag(parser, "the dreams of --in-dream")
    parser.add_argument(
        "--random-policy",
        action="store_true",
        help="measure the env's random policy (the first of its spec) on the same episodes instead, as a "
        "baseline; writes random_returns.json and random_histogram.png",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="measure one of the env's reference controllers instead (they read the simulator's state, not "
        "pixels: yardsticks, not agents; SocNavGym: go-to-goal, orca, stand-still) on the same episodes; "
        "writes reference_<NAME>_returns.json",
    )
    parser.add_argument(
        "--pick",
        action="store_true",
        help="drive (or dream) the pick episodes instead of the test episodes: for choosing a temperature, a "
        "controller or a lever, keeping the test episodes for the number reported; the agent's returns go "
        f"to {pick_results(TEST_RESULTS)}",
    )
    add_driving_flags(parser)
    return parser


def episode_set(args) -> tuple[str, int]:
    """The name and seed namespace of the episodes this run drives: the test's, or the pick's (--pick)."""
    return ("pick", PICK_EPISODES) if args.pick else ("test", TEST_EPISODES)


def episode_seeds(args) -> list[int]:
    """Seeds of the --episodes episodes of this run's set (see :func:`episode_set`)."""
    namespace = episode_set(args)[1]
    return [episode_seed(args.seed, namespace, i) for i in range(args.episodes)]


def watch(
    spec: AgentSpec,
    settings: EpisodeSettings,
    params: np.ndarray,
    seed: int,
    record: Path | None,
    display: bool,
) -> float:
    """Drive one episode in this process, in a window and/or recorded; returns its return."""
    env = get_env_spec(spec.env).make_env(
        settings.renderer, "human" if display else "rgb_array", settings.max_steps
    )
    frames = []

    def on_frame(i, e):
        if record is not None:
            frame = e.render()
            if frame is None:  # CarRacing in human mode draws to its window only: grab the window's surface
                import pygame  # only where a window is shown

                frame = np.transpose(pygame.surfarray.array3d(e.unwrapped.surf), (1, 0, 2)).copy()
            frames.append(frame)

    (result,) = drive_chunk(Agent(spec), [env], [Episode(0, params, seed)], settings, on_frame=on_frame)
    episode_return = result.episode_return
    env.close()
    if record is not None:
        # Real time: the game's frame rate over k frames per step; every other step above 30 per second.
        per_s = env.metadata.get("render_fps", 50) / get_env_spec(spec.env).action_repeat
        stride = 2 if per_s >= 30 else 1
        save_animation(frames[::stride], record, fps=per_s / stride)
        print(f"recorded {len(frames)} steps to {record} (return {episode_return:.1f})")
    return episode_return


@torch.no_grad()
def score_in_dream(args) -> dict:
    """``--in-dream``: the controller's returns in M's dream, one dream per episode, all in one batch."""
    spec, params, _ = load_agent_parts(args.logdir)
    env = get_env_spec(spec.env)
    cell, _ = load_dream_cell(args.logdir)
    mu, offsets = load_start_latents(args.logdir)
    namespace = episode_set(args)[1]
    rng = np.random.default_rng(derive_seed(args.seed, DREAM_EPISODES, namespace))
    generator = torch.Generator().manual_seed(derive_seed(args.seed, DREAM_EPISODES, namespace, 1))
    dream = Dream(cell, args.temperature, generator=generator, survival=not env.reward_head)
    controllers = ControllerBatch(spec.controller, np.repeat(params[None], args.episodes, axis=0))
    starts = start_latents(mu, offsets, args.episodes, rng, "first")
    returns, steps = dream_returns(
        dream, controllers, env.squash, starts, args.max_steps or env.max_episode_steps
    )
    returns, steps = returns.numpy().astype(np.float64), steps.numpy()
    extra = {"env": spec.env, "temperature": args.temperature}
    return save_results(
        args, returns, steps, DREAM_RESULTS, f"in M's dream at tau {args.temperature:g}", extra
    )


def score_baseline(args) -> dict:
    """``--random-policy``, or ``--reference NAME`` (one of the env's state-reading controllers): a
    baseline on the test's own episodes, in this process."""
    env = load_data_record(args.logdir).env
    spec = get_env_spec(env)
    if args.reference is not None and args.reference not in spec.references:
        known = ", ".join(spec.references) or "none"
        raise UserError(f"--reference {args.reference}: {env} has no such reference (it has: {known})")
    settings = episode_settings(args, spec, exact_only=True)
    returns, steps, outcomes = baseline_returns(env, settings, episode_seeds(args), args.reference)
    if args.reference is None:
        which = {"policy": spec.default_policy}
        files, what = (RANDOM_RESULTS, "random_histogram.png"), "random policy"
    else:
        which = {"reference": args.reference}
        name = f"reference_{args.reference}"
        files, what = (f"{name}_returns.json", f"{name}_histogram.png"), f"reference {args.reference}"
    extra = {"env": env, **which, "max_steps": settings.max_steps}
    return save_results(args, returns, steps, files[0], what, extra, files[1], outcomes)


def drive_all(args, spec: AgentSpec, settings: EpisodeSettings, episodes: list[Episode], devices: list[str]):
    """Every test episode on the pool of --backend, with a progress bar; ``{task_id: Result}``."""
    with (
        make_pool(
            args.backend,
            args.ray_address,
            spec,
            settings,
            min(args.max_workers, len(episodes)),
            args.envs_per_worker,
            devices,
            args.worker_timeout,
        ) as pool,
        tqdm(total=len(episodes), desc="test episodes", unit="episode", dynamic_ncols=True) as bar,
    ):
        return pool.evaluate(episodes, on_result=lambda r: bar.update(1))


def baseline_returns(
    env: str, settings: EpisodeSettings, seeds: list[int], reference: str | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Returns, lengths and (outcome, detail)s of the env's random policy on episodes ``seeds`` (its
    actions drawn from the episode's seed, in a stream of their own), or of its ``reference`` controller."""
    spec = get_env_spec(env)
    game = spec.make_env(settings.renderer, None, settings.max_steps)
    returns, steps, outcomes = np.zeros(len(seeds)), np.zeros(len(seeds), np.int64), [("", "")] * len(seeds)
    what = f"reference {reference}" if reference else "random policy"
    for i, seed in enumerate(tqdm(seeds, desc=what, unit="episode", dynamic_ncols=True)):
        game.reset(seed=seed)
        if reference:
            actions = (spec.references[reference](game) for _ in range(settings.max_steps))
        else:
            actions = spec.policies[spec.default_policy](
                np.random.default_rng(derive_seed(seed, 11)), settings.max_steps
            )
        for action in actions:
            _, reward, terminated, truncated, info = game.step(spec.to_env_action(action))
            returns[i] += reward
            steps[i] += 1
            if terminated or truncated:
                break
        outcomes[i] = info.get("outcome") or "", info.get("outcome_detail") or ""
    game.close()
    return returns, steps, outcomes


def main(args) -> dict:
    """Drive the best controller on ``--episodes`` tracks; returns the statistics."""
    if args.watch_track >= args.episodes:
        raise UserError(f"--watch-track {args.watch_track}: the test has tracks 0 to {args.episodes - 1}")
    if args.random_policy or args.reference is not None:
        return score_baseline(args)
    if args.in_dream:
        return score_in_dream(args)
    returns, steps, outcomes, extra = drive_agent(args, episode_seeds(args))
    return save_results(args, returns, steps, TEST_RESULTS, "returns", extra, "test_histogram.png", outcomes)


def drive_agent(args, seeds: list[int]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], dict]:
    """The best controller of --logdir on the tracks ``seeds``, with the flags of this script: returns,
    lengths, (outcome, detail)s and what was driven (env, renderer, ...)."""
    devices = worker_devices(args.device)
    spec, params, ckpt = load_agent_parts(args.logdir)
    settings = episode_settings(
        args, get_env_spec(spec.env), exact_only=True, z_mode=ckpt.get("z_mode", "mu")
    )
    if args.record is not None or args.display:
        watch(spec, settings, params, seeds[args.watch_track], args.record, args.display)
    episodes = [Episode(i, params, s) for i, s in enumerate(seeds)]
    start = time.perf_counter()
    try:
        results = drive_all(args, spec, settings, episodes, devices)
    except WorkerError as err:
        raise UserError(f"{err} (rerun the same command to test again)") from None
    returns = np.array([results[i].episode_return for i in range(len(episodes))])
    steps = np.array([results[i].steps for i in range(len(episodes))])
    outcomes = [(results[i].outcome, results[i].detail) for i in range(len(episodes))]
    extra = {
        "env": spec.env,
        "max_steps": settings.max_steps,
        "renderer": settings.renderer,
        "controller_generation": ckpt.get("generation"),
        "seconds": time.perf_counter() - start,
    }
    return returns, steps, outcomes, extra


def percentages(rates: dict[str, float]) -> str:
    """``{"success": 0.18, ...}`` -> ``"success 18%, ..."``, as the test prints shares of episodes."""
    return ", ".join(f"{name} {100 * rate:.0f}%" for name, rate in rates.items())


def save_results(
    args,
    returns: np.ndarray,
    steps: np.ndarray,
    name: str,
    what: str,
    extra: dict,
    histogram: str | None = None,
    outcomes: list[tuple[str, str]] | None = None,
) -> dict:
    """Mean +- std, min, max and every return as ``<out>/<name>`` (and a histogram), and one line; for
    games whose spec names outcomes, the share of episodes that ended in each as well (and, where the game
    says more of an ending, e.g. what a collision hit, the share of each such detail). With --pick the
    files are named for the pick episodes (pick_returns.json, pick_<name>), never overwriting a test's."""
    if args.pick:
        name, histogram = pick_results(name), histogram and pick_results(histogram)
        what = f"{what} (pick episodes)"
    known = get_env_spec(extra["env"]).outcomes
    ends, details = zip(*outcomes, strict=True) if known and outcomes else ((), ())
    rates = {o: ends.count(o) / len(returns) for o in known} if ends else {}
    detail_rates = {d: details.count(d) / len(returns) for d in sorted(set(details) - {""})}
    stats = {
        "episodes": len(returns),
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "seed": args.seed,
        "episode_set": episode_set(args)[0],
        **extra,
        **({"outcome_rates": rates, "outcomes": list(ends)} if rates else {}),
        **({"detail_rates": detail_rates, "outcome_details": list(details)} if detail_rates else {}),
        "returns": returns.tolist(),
        "steps": steps.tolist(),
    }
    out_dir = args.out if args.out is not None else Logdir(args.logdir).stage("ctrl")
    text = json.dumps(stats, indent=1)
    atomic_write(out_dir / name, lambda f: f.write(text.encode()))
    summary = f"{what} over {len(returns)} episodes: {returns.mean():.1f} +- {returns.std():.1f}"
    if histogram is not None:
        reference = get_env_spec(extra["env"]).reference_returns
        histogram_png(returns, out_dir / histogram, summary, reference=reference)
    print(f"{summary} (std), min {returns.min():.1f}, max {returns.max():.1f}")
    if rates:
        print("episodes ending in " + percentages(rates))
    if detail_rates:
        print("in detail (share of all episodes): " + percentages(detail_rates))
    print(f"written to {out_dir / name}" + (f" and {out_dir / histogram}" if histogram else ""))
    return stats


if __name__ == "__main__":
    run(main, build_parser())
