"""Pools of episode workers: the interface, and its local implementation (worker processes).

Every worker keeps an agent and a few envs, and drives chunks of episodes (driving/episode.py) handed
out by the pool. Two implementations: :class:`WorkerPool` here, and :class:`driving.ray_pool.RayPool`
on a Ray cluster; both drive the same chunks, so one seed gives the same results on either.

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
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from driving.agent import AgentSpec
from driving.episode import Episode, EpisodeSettings, Result, WorkerError, chunked, drive_chunk, make_worker
from utils.cli import check_stop
from utils.processes import worker_context, worker_init
from utils.ray_cluster import import_ray


class EpisodePool(Protocol):
    """What the controller stage needs of a pool of episode workers, on any backend."""

    def evaluate(
        self, episodes: Sequence[Episode], on_result: Callable[[Result], None] | None = None
    ) -> dict[int, Result]:
        """Drive every episode; ``{task_id: Result}``. Raises :class:`WorkerError` on any failure."""
        ...

    def close(self) -> None:
        """Stop every worker; never leaves a process behind."""
        ...

    def __enter__(self) -> EpisodePool: ...

    def __exit__(self, *exc) -> None: ...


def _worker_main(
    rank: int,
    spec: AgentSpec,
    settings: EpisodeSettings,
    n_envs: int,
    device: str,
    chunks: mp.Queue,
    results: mp.Queue,
    parent_pid: int,
) -> None:
    worker_init(parent_pid)
    try:
        agent, envs = make_worker(spec, settings, n_envs, device)
        while True:
            chunk = chunks.get()
            if chunk is None:  # shutdown
                return
            drive_chunk(
                agent,
                envs,
                chunk,
                settings,
                on_done=lambda result: results.put(("done", rank, result)),
            )
    except BaseException:
        results.put(("error", rank, traceback.format_exc()))
        raise SystemExit(1) from None


class WorkerPool:
    """``n_workers`` processes, each driving chunks of up to ``n_envs`` episodes in lock-step.

    Args:
        spec: the agent's V, M and C shape (sent once per worker).
        settings: episode length, renderer, z mode.
        devices: torch devices assigned round-robin to workers (e.g. every visible CUDA device).
        timeout: seconds without any finished episode before the run is declared hung.
    """

    def __init__(
        self,
        spec: AgentSpec,
        settings: EpisodeSettings,
        n_workers: int,
        n_envs: int = 4,
        devices: Sequence[str] = ("cpu",),
        timeout: float = 600.0,
    ) -> None:
        ctx = worker_context()
        self.n_envs = n_envs
        self.timeout = timeout
        self.chunks: mp.Queue = ctx.Queue()
        self.results: mp.Queue = ctx.Queue()
        self.processes = [
            ctx.Process(
                target=_worker_main,
                name=f"episode-worker-{rank}",
                daemon=True,
                args=(
                    rank,
                    spec,
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
        self.busy = False  # an evaluation is under way, or was cut short: close() then kills at once

    def _check_alive(self) -> None:
        for rank, p in enumerate(self.processes):
            if p.exitcode is not None:
                # A worker that raised put its traceback on the queue before exiting: prefer that.
                error = self._queued_error()
                if error is not None:
                    raise error
                raise WorkerError(
                    f"episode worker {rank} (pid {p.pid}) died with exit code {p.exitcode} "
                    f"(killed, out of memory, or crashed in native code)"
                )

    def _queued_error(self) -> WorkerError | None:
        """The traceback a failed worker left on the result queue, if any."""
        try:
            while True:
                kind, rank, payload = self.results.get(timeout=0.2)
                if kind == "error":
                    return WorkerError(f"episode worker {rank} failed:\n{payload.rstrip()}")
        except queue.Empty:
            return None

    def evaluate(
        self, episodes: Sequence[Episode], on_result: Callable[[Result], None] | None = None
    ) -> dict[int, Result]:
        """Drive every episode; returns ``{task_id: Result}``. Raises :class:`WorkerError` on any failure."""
        self.busy = True
        for chunk in chunked(episodes, self.n_envs):
            self.chunks.put(chunk)
        pending = {e.task_id for e in episodes}
        done: dict[int, Result] = {}
        last_progress = time.monotonic()
        while pending:
            check_stop()
            try:
                kind, rank, payload = self.results.get(timeout=0.5)
            except queue.Empty:
                kind = None
            if kind is None:  # checked outside the except block: a failure is not "during handling of Empty"
                self._check_alive()
                if time.monotonic() - last_progress > self.timeout:
                    raise WorkerError(
                        f"no episode finished for {self.timeout:.0f} s: an episode worker hangs "
                        f"({len(pending)} episodes outstanding)"
                    )
                continue
            if kind == "error":
                raise WorkerError(f"episode worker {rank} failed:\n{payload.rstrip()}")
            if payload.task_id in pending:
                pending.discard(payload.task_id)
                done[payload.task_id] = payload
                last_progress = time.monotonic()
                if on_result is not None:
                    on_result(payload)
        self.busy = False
        return done

    def close(self) -> None:
        """Stop every worker, never leaving a process behind: politely when idle, by force after an
        evaluation cut short (Ctrl-C, SIGTERM, a failure), whose queued chunks would otherwise keep the
        workers driving episodes nobody reads until the polite stop's deadline."""
        if not self.busy:
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
    spec: AgentSpec,
    settings: EpisodeSettings,
    n_workers: int,
    n_envs: int = 4,
    devices: Sequence[str] = ("cpu",),
    timeout: float = 600.0,
) -> EpisodePool:
    """The episode pool of ``--backend``: :class:`WorkerPool` here, or a Ray pool on a cluster."""
    if backend == "ray":
        import_ray()  # one clear line when Ray is missing
        from driving.ray_pool import RayPool  # Ray is optional: imported only when asked for

        return RayPool(spec, settings, n_workers, n_envs, devices, timeout, address=ray_address)
    return WorkerPool(spec, settings, n_workers, n_envs, devices, timeout)
