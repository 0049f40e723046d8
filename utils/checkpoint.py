"""Atomic checkpoint and file writes, and loading that never runs code from a file.

Checkpoints hold tensors and plain values only (numbers, strings, lists, dicts, bytes) and are read with
``torch.load(weights_only=True)``: a file that would need anything else to unpickle (a crafted file,
or one written by an older version of this project with Path objects inside) is refused with one line
instead of being executed. The one exception is outside this module: traincontroller.py unpickles the
CMA-ES state (bytes inside its weights-only checkpoint) when it resumes a search.
``scripts/upgrade_checkpoint.py`` converts a file you trust.

Writes go to a temporary file that is renamed over the target: a killed run, a full disk or a
read-only directory leaves the previous file intact and no temporary behind.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from utils.cli import UserError


def umask() -> int:
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
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # e.g. --out naming an existing file
            raise UserError(
                f"cannot write {path}: {blocking} is a file, not a directory; choose another path"
            ) from None
        if err.errno in DISK_ERRORS:
            raise UserError(
                f"cannot write {path} ({os.strerror(err.errno)}): {DISK_ERRORS[err.errno]}, then rerun "
                f"the same command to resume; {path.name} is as it was before"
            ) from None
        raise
    except BaseException:
        _discard(tmp)
        raise


# What to do about the write errors a user can fix.
DISK_ERRORS = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some of your disk quota",
    errno.EROFS: "the file system is read-only: use a writable directory",
    errno.EACCES: "make the directory writable or use another one",
}


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


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
    """``torch.save`` ``state`` to ``path`` atomically.

    Serialised in memory first: torch's zip writer reports a full disk as a RuntimeError from C++, while
    a plain write of the bytes gives the OSError (ENOSPC) that :func:`atomic_write` turns into one line.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", hint: str = "") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, weights only: nothing in the file is run.

    Raises :class:`UserError` naming the file (and ``hint``, e.g. which script makes it) when it is
    missing, unreadable, or holds more than tensors and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}" + (f": {hint}" if hint else ""))
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):  # not a pickle at all: random bytes, another format
            raise UserError(
                f"cannot read checkpoint {path} (not a checkpoint of this project); delete it or rerun "
                f"with --noreload"
            ) from None
        # Weights-only loading met a Python object it will not build: the file could run code.
        raise UserError(
            f"refused to load {path}: it holds Python objects, not only tensors and plain values (a crafted "
            f"file, or one written by an older version); if you made it, convert its logdir with "
            f"python scripts/upgrade_checkpoint.py --logdir {path.parent.parent}"
        ) from None
    except Exception as err:  # truncated or foreign file
        raise UserError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}); delete it or rerun with --noreload"
        ) from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a checkpoint of this project; delete it or rerun with --noreload")
    return checkpoint


def load_json(path: str | os.PathLike, hint: str) -> Any:
    """The JSON record at ``path``; a damaged one (cut short, edited, not JSON) is one line naming the file
    and ``hint``, what to do about it."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is damaged (not readable JSON): {hint}") from None


def file_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (e.g. how M records which V checkpoint it was trained on)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
