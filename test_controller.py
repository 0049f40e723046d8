"""Measure the trained controller on fixed tracks: mean +- std, min and max of the returns.

Usage:
    python test_controller.py --logdir exp_dir [--episodes 100] [--record drive.gif] [--display]

The paper's protocol is 100 random tracks (its agent: 906 +- 21). Track i's seed derives from
(--seed, i) in a namespace of its own, so the test never drives the tracks training evaluated on.
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
from tqdm import tqdm

from traincontroller import add_engine_flags, episode_settings, worker_devices
from utils.checkpoint import atomic_write
from utils.cli import UserError, make_parser, nonnegative_int, positive_int, run
from utils.engine import make_pool
from utils.plots import histogram_png
from utils.rollout import Episode, EpisodeSettings, load_controller_vector, load_world_model
from utils.seeding import TEST_EPISODES, episode_seed


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--episodes", type=positive_int, default=100, help="tracks to drive")
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        help="also save a video of one track's episode (.gif or .mp4; --watch-track picks it)",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="also show the first track's episode in a window (xvfb-run on headless machines)",
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
    add_engine_flags(parser, exact_only=True)
    return parser


def watch(
    bundle: dict, settings: EpisodeSettings, params: np.ndarray, seed: int, record: Path | None, display: bool
) -> float:
    """Drive one episode in this process, in a window and/or recorded; returns its return."""
    from envs import make_env
    from utils.rollout import BatchedAgent, run_chunk
    from utils.visuals import save_animation

    if record is not None and record.suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--record {record}: use a .gif or .mp4 file name")
    env = make_env(
        renderer=settings.renderer,
        render_mode="human" if display else "rgb_array",
        max_episode_steps=settings.max_steps,
    )
    frames = []

    def on_frame(i, e):
        if record is not None:
            frame = e.render() if not display else None
            if frame is None:  # human mode: grab the window's surface instead
                import pygame

                frame = np.transpose(pygame.surfarray.array3d(e.unwrapped.surf), (1, 0, 2)).copy()
            frames.append(frame)

    ((episode_return, _),) = run_chunk(
        BatchedAgent(bundle), [env], [Episode(0, params, seed)], settings, on_frame=on_frame
    )
    env.close()
    if record is not None:
        save_animation(frames[::2], record, fps=25)  # every other frame: half the size, still smooth
        print(f"recorded {len(frames)} steps to {record} (return {episode_return:.1f})")
    return episode_return


def main(args) -> dict:
    """Drive the best controller on ``--episodes`` tracks; returns the statistics."""
    if args.watch_track >= args.episodes:
        raise UserError(f"--watch-track {args.watch_track}: the test has tracks 0 to {args.episodes - 1}")
    devices = worker_devices(args.device)
    bundle = load_world_model(args.logdir)
    params, ckpt = load_controller_vector(args.logdir)
    settings = episode_settings(args, bundle)
    seeds = [episode_seed(args.seed, TEST_EPISODES, i) for i in range(args.episodes)]
    if args.record is not None or args.display:
        watch(bundle, settings, params, seeds[args.watch_track], args.record, args.display)
    episodes = [Episode(i, params, s) for i, s in enumerate(seeds)]
    start = time.perf_counter()
    with (
        make_pool(
            args.backend,
            args.ray_address,
            bundle,
            settings,
            min(args.max_workers, len(episodes)),
            args.envs_per_worker,
            devices,
            args.worker_timeout,
        ) as pool,
        tqdm(total=len(episodes), desc="test episodes", unit="episode", dynamic_ncols=True) as bar,
    ):
        results = pool.evaluate(episodes, on_result=lambda r: bar.update(1))
    returns = np.array([results[i].episode_return for i in range(len(episodes))])
    steps = np.array([results[i].steps for i in range(len(episodes))])
    stats = {
        "episodes": len(returns),
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "seed": args.seed,
        "max_steps": args.max_steps,
        "renderer": args.renderer,
        "returns": returns.tolist(),
        "steps": steps.tolist(),
        "controller_generation": ckpt.get("generation"),
        "seconds": time.perf_counter() - start,
    }
    out_dir = args.out if args.out is not None else args.logdir / "ctrl"
    text = json.dumps(stats, indent=1)
    atomic_write(out_dir / "test_returns.json", lambda f: f.write(text.encode()))
    histogram_png(
        returns,
        out_dir / "test_histogram.png",
        f"returns over {len(returns)} tracks: {returns.mean():.1f} +- {returns.std():.1f}",
    )
    print(
        f"{len(returns)} episodes: mean {returns.mean():.1f} +- {returns.std():.1f} (std), "
        f"min {returns.min():.1f}, max {returns.max():.1f}"
    )
    print(f"returns: {out_dir / 'test_returns.json'}, histogram: {out_dir / 'test_histogram.png'}")
    return stats


if __name__ == "__main__":
    run(main, build_parser())
