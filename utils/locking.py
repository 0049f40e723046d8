"""One run at a time per directory: an advisory lock held for the life of the process.

The lock is ``flock`` on ``<directory>/.lock``: the kernel releases it when the process ends however it
ends (SIGKILL and crashes included), so a killed run never leaves a stale lock that blocks the next
one. The file itself stays, naming the last holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.checkpoint import DISK_ERRORS
from utils.cli import UserError

LOCK_NAME = ".lock"


@contextmanager
def exclusive(directory: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``<directory>/.lock`` while the block runs; a second holder gets one clear line naming the
    first (its pid, host and command) instead of writing over its files.

    ``what`` names the directory in that line (e.g. "the VAE stage of exp_dir").
    """
    directory = Path(directory)
    path = directory / LOCK_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (O_CLOEXEC)
    except OSError as err:
        hint = DISK_ERRORS.get(err.errno, "check the path")
        raise UserError(f"cannot write in {directory} ({os.strerror(err.errno)}): {hint}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"{what} is in use by {holder}; wait for that run to end or stop it (one run per stage "
            f"and directory)"
        ) from None
    try:
        os.ftruncate(fd, 0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command})\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def waiting_for(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``flock`` on the file ``path`` while the block runs, waiting first for any other holder: for
    shared work a second process should wait for and then find done (a cache built once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_not_in_use(directory: str | os.PathLike, what: str) -> None:
    """One clear line when a run holds ``<directory>/.lock`` (:func:`exclusive`) now: e.g. rollouts
    still being generated, which a stage must not read half-made."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # never locked (or unreadable: nothing to wait for)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text(errors="replace").strip() or "another process"
        raise UserError(f"{what} is in use by {holder}; wait for that run to end") from None
    finally:
        os.close(fd)
