"""The rollout engine: worker processes that each drive several CarRacing episodes at once.

Every step, a worker preprocesses the frames of all its running episodes, encodes them with V, feeds
M's recurrent cell and the controller, all as one batch, then steps each environment. Episodes are
tasks ``(task_id, params, track_seed)``: a flat controller vector and the seed of the track to drive.

Failure handling (what the earlier port lacked): a worker that raises sends its traceback and the
evaluation fails with it; a worker that dies without a word (killed, segfault, out of memory) is
noticed within half a second; no finished episode for ``timeout`` seconds fails the run instead of
waiting forever. Workers ignore Ctrl-C (the parent stops them) and exit on their own if the parent
disappears, so no orphans are left.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from utils.processes import exit_with_parent
from utils.rollout import Episode, EpisodeSettings


class WorkerError(RuntimeError):
    """A rollout worker crashed, died or hung; the message says which and why."""


@dataclass(frozen=True)
class Result:
    """What came back for one episode."""

    task_id: int
    episode_return: float
    steps: int


def chunked(episodes: Sequence[Episode], size: int) -> list[list[Episode]]:
    """Consecutive chunks of ``size`` episodes: the unit a worker drives in lock-step."""
    return [list(episodes[i : i + size]) for i in range(0, len(episodes), size)]


def _worker_main(
    rank: int,
    bundle: dict,
    settings: EpisodeSettings,
    n_envs: int,
    device: str,
    chunks: mp.Queue,
    results: mp.Queue,
    parent_pid: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    exit_with_parent(parent_pid)
    try:
        from utils.rollout import make_worker, run_chunk

        agent, envs = make_worker(bundle, settings, n_envs, device)
        while True:
            chunk = chunks.get()
            if chunk is None:  # shutdown
                return
            run_chunk(
                agent,
                envs,
                chunk,
                settings,
                on_done=lambda e, ret, n: results.put(("done", rank, Result(e.task_id, ret, n))),
            )
    except BaseException:
        results.put(("error", rank, traceback.format_exc()))
        raise SystemExit(1) from None


class WorkerPool:
    """``n_workers`` processes, each driving chunks of up to ``n_envs`` episodes in lock-step.

    Args:
        bundle: V and M weights and configs from :func:`utils.rollout.make_bundle` (sent once).
        settings: episode length, renderer, preprocessing, cut-off.
        devices: torch devices assigned round-robin to workers (e.g. every visible CUDA device).
        timeout: seconds without any finished episode before the run is declared hung.
    """

    def __init__(
        self,
        bundle: dict,
        settings: EpisodeSettings,
        n_workers: int,
        n_envs: int = 4,
        devices: Sequence[str] = ("cpu",),
        timeout: float = 600.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.n_envs = n_envs
        self.timeout = timeout
        self.chunks: mp.Queue = ctx.Queue()
        self.results: mp.Queue = ctx.Queue()
        self.processes = [
            ctx.Process(
                target=_worker_main,
                name=f"rollout-worker-{rank}",
                daemon=True,
                args=(
                    rank,
                    bundle,
                    settings,
                    n_envs,
                    devices[rank % len(devices)],
                    self.chunks,
                    self.results,
                    os.getpid(),
                ),
            )
            for rank in range(n_workers)
        ]
        for p in self.processes:
            p.start()

    def _check_alive(self) -> None:
        for rank, p in enumerate(self.processes):
            if p.exitcode is not None:
                # A worker that raised put its traceback on the queue before exiting: prefer that.
                try:
                    while True:
                        kind, r, payload = self.results.get(timeout=0.2)
                        if kind == "error":
                            raise WorkerError(f"rollout worker {r} failed:\n{payload.rstrip()}")
                except queue.Empty:
                    pass
                raise WorkerError(
                    f"rollout worker {rank} (pid {p.pid}) died with exit code {p.exitcode} "
                    f"(killed, out of memory, or crashed in native code)"
                )

    def evaluate(
        self, episodes: Sequence[Episode], on_result: Callable[[Result], None] | None = None
    ) -> dict[int, Result]:
        """Drive every episode; returns ``{task_id: Result}``. Raises :class:`WorkerError` on any failure."""
        for chunk in chunked(episodes, self.n_envs):
            self.chunks.put(chunk)
        pending = {e.task_id for e in episodes}
        done: dict[int, Result] = {}
        last_progress = time.monotonic()
        while pending:
            try:
                kind, rank, payload = self.results.get(timeout=0.5)
            except queue.Empty:
                self._check_alive()
                if time.monotonic() - last_progress > self.timeout:
                    raise WorkerError(
                        f"no episode finished for {self.timeout:.0f} s: a rollout worker hangs "
                        f"({len(pending)} episodes outstanding)"
                    ) from None
                continue
            if kind == "error":
                raise WorkerError(f"rollout worker {rank} failed:\n{payload.rstrip()}")
            if payload.task_id in pending:
                pending.discard(payload.task_id)
                done[payload.task_id] = payload
                last_progress = time.monotonic()
                if on_result is not None:
                    on_result(payload)
        return done

    def close(self) -> None:
        """Stop every worker: politely, then by force; never leaves a process behind."""
        for _ in self.processes:
            try:
                self.chunks.put_nowait(None)
            except (ValueError, OSError):
                break
        deadline = time.monotonic() + 2.0
        for p in self.processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.processes:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for q in (self.chunks, self.results):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_pool(
    backend: str,
    ray_address: str | None,
    bundle: dict,
    settings: EpisodeSettings,
    n_workers: int,
    n_envs: int = 4,
    devices: Sequence[str] = ("cpu",),
    timeout: float = 600.0,
):
    """The rollout pool of ``--backend``: :class:`WorkerPool` here, or a Ray pool on a cluster.

    Both drive the same chunks, so one seed gives the same results on either.
    """
    if backend == "ray":
        from utils.ray_backend import RayPool

        return RayPool(bundle, settings, n_workers, n_envs, devices, timeout, address=ray_address)
    return WorkerPool(bundle, settings, n_workers, n_envs, devices, timeout)
