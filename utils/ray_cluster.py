"""Ray, optional: the ``--backend``/``--ray-address`` flags, importing Ray with one clear line when it is
missing, and joining (or starting) a cluster. Used by generation and by driving/ray_pool.py."""

from __future__ import annotations

import os
from pathlib import Path

from utils.cli import UserError

BACKENDS = ("local", "ray")
ROOT = Path(__file__).resolve().parent.parent
MISSING_RAY = "--backend ray needs Ray: pip install -r requirements-ray.txt"


def add_backend_flags(parser) -> None:
    """``--backend`` and ``--ray-address``, shared by the generation and controller scripts."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: worker processes on this machine; ray: Ray actors/tasks on a Ray cluster "
        "(pip install -r requirements-ray.txt)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: the cluster to join (auto: the one `ray start` runs here, or "
        "HOST:6379); unset starts a local Ray instance for this run",
    )


def import_ray():
    """The ``ray`` module, or one clear line when it is not installed."""
    try:
        import ray
    except ImportError:
        raise UserError(MISSING_RAY) from None
    return ray


def init_ray(address: str | None):
    """Connect to ``address`` (None: start a local instance) unless this process is connected already.

    Workers import this repository by path: on a cluster every node needs it at the same path.
    """
    ray = import_ray()
    if not ray.is_initialized():
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        ray.init(
            address=address,
            include_dashboard=False,
            runtime_env={"env_vars": env},
            log_to_driver=True,
        )
    return ray
