"""TensorBoard writers and the args.json written beside every stage's checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from utils.checkpoint import atomic_write, load_json


def args_record(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as plain values (paths as strings), for args.json and checkpoints."""
    return json.loads(json.dumps(vars(args), default=str))


ARGS_FILE = "args.json"


def save_args(args: argparse.Namespace, directory: str | Path) -> None:
    """Write the parsed flags as ``<directory>/args.json`` (atomically)."""
    text = json.dumps(args_record(args), indent=2, sort_keys=True)
    atomic_write(Path(directory) / ARGS_FILE, lambda f: f.write(text.encode() + b"\n"))


def load_args(directory: str | Path) -> dict[str, Any] | None:
    """The flags :func:`save_args` wrote in ``directory``, or None where that stage has not started."""
    path = Path(directory) / ARGS_FILE
    return load_json(path, "delete it; the stage rewrites it when it next runs") if path.exists() else None


def make_writer(directory: str | Path):
    """A tensorboardX SummaryWriter logging under ``directory``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(directory))
