"""Worker processes that never outlive their parent."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(parent_pid: int, poll: float = 0.5) -> None:
    """Start a daemon thread that ends this worker process once ``parent_pid`` is gone.

    A parent killed by a signal cannot stop its workers; without this they would run on as orphans
    (and, in data generation, keep writing rollouts nobody asked for).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_init(parent_pid: int) -> None:
    """What every worker process of this project runs first: leave Ctrl-C and SIGTERM to the parent (it
    stops its workers), and end with the parent if it is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_with_parent(parent_pid)
