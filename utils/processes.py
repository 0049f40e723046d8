"""Worker processes that start fast and never outlive their parent."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time


def worker_context() -> mp.context.BaseContext:
    """The start method of every worker pool: a fork server.

    Like ``spawn``, a worker starts from a process that never made an env (no inherited pygame, Box2D or
    ViZDoom state), but the server imports torch and the main script once and forks each worker from
    that: a pool of 2 starts in 0.18 s instead of 3.06 s (bench/bench_pool_start.py, 2-core AVX2 EPYC),
    and a process that makes many pools (the test suite, a search's evaluations) pays the imports once.
    The server ends with the process that started it.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "torch"])
    return ctx


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with_parent(parent_pid: int, poll: float = 0.5) -> None:
    """Start a daemon thread that ends this worker process once ``parent_pid`` is gone.

    A parent killed by a signal cannot stop its workers; without this they would run on as orphans
    (and, in data generation, keep writing rollouts nobody asked for). The worker's own parent is the
    fork server (see :func:`worker_context`), which exits when ``parent_pid`` does: either going away
    ends the worker.
    """
    starter = os.getppid()

    def watch() -> None:
        while os.getppid() == starter and _alive(parent_pid):
            time.sleep(poll)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_init(parent_pid: int) -> None:
    """What every worker process of this project runs first: leave Ctrl-C and SIGTERM to the parent (it
    stops its workers), and end with the parent if it is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_with_parent(parent_pid)
