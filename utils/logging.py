"""TensorBoard writers and the args.json written beside every stage's checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils.checkpoint import atomic_write


def save_args(args: argparse.Namespace, directory: str | Path) -> None:
    """Write the parsed flags as ``<directory>/args.json`` (atomically)."""
    text = json.dumps(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        indent=2,
        sort_keys=True,
        default=str,
    )
    atomic_write(Path(directory) / "args.json", lambda f: f.write(text.encode() + b"\n"))


def make_writer(directory: str | Path):
    """A tensorboardX SummaryWriter logging under ``directory``."""
    from tensorboardX import SummaryWriter

    Path(directory).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(directory))
