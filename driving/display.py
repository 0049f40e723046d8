"""``--display``: a separate process drives the latest controller in a pygame window.

Training never waits for it. On a machine without a display the window cannot open: the process
reports why once and training goes on (run under ``xvfb-run`` to get a virtual screen).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue

import numpy as np

from driving.agent import AgentSpec
from driving.episode import Episode, EpisodeSettings, drive_chunk, make_worker
from utils.processes import worker_init
from utils.seeding import derive_seed


def _display_main(
    spec: AgentSpec,
    settings: EpisodeSettings,
    params_queue: mp.Queue,
    errors: mp.Queue,
    seed: int,
    parent_pid: int,
) -> None:
    worker_init(parent_pid)
    try:
        agent, (env,) = make_worker(spec, settings, 1, "cpu", render_mode="human")
        params, episode = params_queue.get(), 0
        while params is not None:
            drive_chunk(agent, [env], [Episode(0, params, derive_seed(seed, episode))], settings)
            episode += 1
            try:  # take the newest controller sent meanwhile, if any
                while True:
                    params = params_queue.get_nowait()
            except queue.Empty:
                pass
    except Exception as err:  # no display, closed window: tell the parent once
        errors.put(f"{type(err).__name__}: {err}")


class Display:
    """Shows the newest controller sent with :meth:`show` driving, episode after episode."""

    def __init__(self, spec: AgentSpec, settings: EpisodeSettings, seed: int = 0) -> None:
        ctx = mp.get_context("spawn")
        self.params: mp.Queue = ctx.Queue()
        self.errors: mp.Queue = ctx.Queue()
        self.failed = False
        self.process = ctx.Process(
            target=_display_main,
            name="display",
            daemon=True,
            args=(spec, settings, self.params, self.errors, seed, os.getpid()),
        )
        self.process.start()

    def show(self, params: np.ndarray) -> None:
        if self.failed:
            return
        try:
            message = self.errors.get_nowait()
        except queue.Empty:
            self.params.put(np.asarray(params, np.float32))
            return
        self.failed = True
        print(
            f"--display: the window could not be shown ({message}); training goes on without it. "
            f"On a headless machine run the command under xvfb-run."
        )

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
