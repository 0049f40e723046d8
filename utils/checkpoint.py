"""Atomic checkpoint and file writes, and loading with clear errors."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from utils.cli import UserError


def _umask() -> int:
    """The process umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(fileobj)`` so that ``path`` is either the old or the complete new file.

    The data goes to a temporary file in the same directory, is flushed to disk, then renamed over
    ``path``; a run killed at any moment leaves no truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete temporaries left by killed :func:`atomic_write` calls; returns how many."""
    n = 0
    for p in Path(directory).rglob(".*.tmp"):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", hint: str = "") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`UserError` naming the file (and ``hint``, e.g. which script makes it) when it is
    missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}" + (f": {hint}" if hint else ""))
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated or foreign file
        raise UserError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}); delete it or rerun with --noreload"
        ) from None


def file_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (e.g. how M records which V checkpoint it was trained on)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
