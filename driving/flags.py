"""The flags of driving episodes in real envs, shared by traincontroller.py and test_controller.py, and
what they resolve to once the logdir's env is known."""

from __future__ import annotations

import argparse

import torch

from driving.episode import Z_MODES, EpisodeSettings
from envs import EnvSpec
from utils.cli import UserError, add_max_steps_flag, add_workers_flag, positive_float, positive_int
from utils.device import add_device_flag, resolve_device
from utils.ray_cluster import add_backend_flags


def add_driving_flags(parser: argparse.ArgumentParser) -> None:
    """How episodes are driven and by whom."""
    add_workers_flag(parser, "--max-workers", "episode worker processes (Ray actors with --backend ray)")
    parser.add_argument(
        "--envs-per-worker",
        type=positive_int,
        default=8,
        help="episodes a worker drives in lock-step, batching V and M over them; results are "
        "reproducible for a fixed value whatever --max-workers is",
    )
    add_max_steps_flag(parser)
    parser.add_argument(
        "--renderer",
        default=None,
        help="implementation of the env (default: the env's first; CarRacing: fast, which renders exactly "
        "the stock pixels, stock, or approx for training only)",
    )
    parser.add_argument(
        "--z-mode",
        choices=Z_MODES,
        default=None,
        help="C and M see the encoder mean (mu) or a sample of z (default: mu for training; for testing, "
        "what the controller was trained with)",
    )
    add_device_flag(
        parser,
        "cpu",
        "V and M in the episode workers (cuda spreads the workers over every visible GPU); cpu by default, "
        "as a worker's batches of a few frames run no faster on a GPU",
    )
    parser.add_argument(
        "--worker-timeout",
        type=positive_float,
        default=600.0,
        help="seconds without any finished episode before the run fails as hung",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of episodes, CMA-ES and workers")
    add_backend_flags(parser)


def episode_settings(
    args: argparse.Namespace, env: EnvSpec, exact_only: bool = False, z_mode: str = "mu"
) -> EpisodeSettings:
    """The driving flags for ``env``; ``exact_only`` refuses renderers whose pixels are not the game's
    (measurements run on the game's own pixels); ``z_mode`` is the default of ``--z-mode``."""
    renderer = args.renderer or env.default_renderer
    allowed = [r for r in env.renderers if not (exact_only and r in env.inexact_renderers)]
    if renderer not in allowed:
        raise UserError(f"--renderer {renderer}: {env.name} offers {', '.join(allowed)} here")
    return EpisodeSettings(
        max_steps=args.max_steps or env.max_episode_steps, renderer=renderer, z_mode=args.z_mode or z_mode
    )


def worker_devices(spec: str) -> list[str]:
    """``cuda`` (or ``auto`` with GPUs) spreads workers over every visible GPU; else one device."""
    device = resolve_device(spec)
    if device.type == "cuda" and device.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [str(device)]
