"""Episodes on a Ray cluster: the same chunks as :class:`driving.pool.WorkerPool`, driven by Ray actors.

Ray is optional (``requirements-ray.txt``) and imported only when ``--backend ray`` is asked for.

:class:`RayPool` implements :class:`driving.pool.EpisodePool`. The agent's V and M go to the object
store once per pool (once per run: they do not change while C is trained) and every actor keeps its
models and environments between chunks. A chunk's results depend only on its own episodes (see
driving/episode.py), so the pool hands out the very chunks the local backend would and the same seed
gives the same returns on either backend.

Failures: unlike the local backend, which fails fast, a lost actor (worker process killed, node gone)
is replaced by a new actor, which Ray places wherever there is room, and the chunks it held go back to
the queue. Chunks go only to actors that have started, so when a node is gone for good and its actors
cannot be placed again, the surviving ones drive everything (the new actors start if the node or
another one joins). Results are keyed by task id, so a chunk retried after its first attempt was lost cannot
be counted twice. A chunk whose attempts keep killing their actor fails the run after ``max_retries``
retries; an exception raised by the episode code itself (a bug, not a lost machine) fails it at once,
with the worker's traceback.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from driving.agent import AgentSpec
from driving.episode import Episode, EpisodeSettings, Result, WorkerError, chunked, drive_chunk, make_worker
from utils.cli import UserError, check_stop
from utils.ray_cluster import init_ray


class _EpisodeActor:
    """One Ray worker: the agent and ``n_envs`` environments, kept between chunks."""

    def __init__(self, spec: AgentSpec, settings: EpisodeSettings, n_envs: int, device: str) -> None:
        self.settings = settings
        self.agent, self.envs = make_worker(spec, settings, n_envs, device)

    def pid(self) -> int:
        return os.getpid()

    def run(self, chunk: list[Episode]) -> list[Result]:
        return drive_chunk(self.agent, self.envs, chunk, self.settings)


class RayPool:
    """``n_workers`` Ray actors, each driving chunks of up to ``n_envs`` episodes in lock-step.

    Args: as :class:`driving.pool.WorkerPool`, plus the Ray ``address`` (None: a local instance) and
    ``max_retries``, how often one chunk may be re-run after losing its actor. With CUDA ``devices``
    each actor asks for a fraction of a GPU so that the actors spread over the cluster's GPUs.
    """

    def __init__(
        self,
        spec: AgentSpec,
        settings: EpisodeSettings,
        n_workers: int,
        n_envs: int = 4,
        devices: Sequence[str] = ("cpu",),
        timeout: float = 600.0,
        address: str | None = None,
        max_retries: int = 3,
    ) -> None:
        self.ray = ray = init_ray(address)
        self.n_envs, self.timeout, self.max_retries = n_envs, timeout, max_retries
        self.retries = 0  # chunks re-run after losing their actor, over the pool's life
        cpus = int(ray.cluster_resources().get("CPU", n_workers))
        if n_workers > cpus:  # actors beyond the cluster's CPUs would never be placed
            print(f"Ray cluster has {cpus} CPUs: {cpus} episode actors instead of {n_workers}", flush=True)
            n_workers = max(1, cpus)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0}
        device = "cpu"
        if any(str(d).startswith("cuda") for d in devices):
            gpus = ray.cluster_resources().get("GPU", 0)
            if not gpus:
                raise UserError(
                    "--device cuda with --backend ray: the Ray cluster has no GPU; use --device cpu"
                )
            options["num_gpus"] = min(1.0, gpus / n_workers)
            device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU
        self._actor_class = ray.remote(**options)(_EpisodeActor)
        self._spec_ref = ray.put(spec)  # V and M reach the cluster once
        self._args = (settings, n_envs, device)
        self.actors: list[Any] = [None] * n_workers
        self._started = [False] * n_workers  # has the slot's actor answered (been placed and built)?
        self._starting: dict[Any, int] = {}  # ObjectRef of a new actor's first call -> its slot
        self._failed_starts = 0  # consecutive actors that died before they started
        for slot in range(n_workers):
            self._start(slot)

    def _start(self, slot: int) -> None:
        """A new actor in ``slot``; it gets work once it answers."""
        self.actors[slot] = self._actor_class.remote(self._spec_ref, *self._args)
        self._started[slot] = False
        self._starting[self.actors[slot].pid.remote()] = slot

    def evaluate(
        self, episodes: Sequence[Episode], on_result: Callable[[Result], None] | None = None
    ) -> dict[int, Result]:
        """Drive every episode; returns ``{task_id: Result}``. Lost chunks are re-run on a new actor;
        raises :class:`WorkerError` when the episode code fails or nothing finishes for ``timeout``
        seconds."""
        ray = self.ray
        todo = list(chunked(episodes, self.n_envs))[::-1]  # pop() hands them out in order
        attempts: dict[int, int] = {}  # chunk's first task id -> times it was lost
        in_flight: dict[Any, tuple[int, list[Episode]]] = {}  # ObjectRef -> (actor slot, chunk)
        load = [0] * len(self.actors)
        pending = {e.task_id for e in episodes}
        done: dict[int, Result] = {}

        def submit() -> None:
            # Two chunks per started actor: the next one is queued there while the current one runs.
            while todo:
                free = [s for s, started in enumerate(self._started) if started and load[s] < 2]
                if not free:
                    return
                slot = min(free, key=load.__getitem__)
                chunk = todo.pop()
                in_flight[self.actors[slot].run.remote(chunk)] = (slot, chunk)
                load[slot] += 1

        submit()
        last_progress = time.monotonic()
        while pending:
            check_stop()
            ready, _ = ray.wait([*in_flight, *self._starting], num_returns=1, timeout=0.5)
            if not ready:
                if time.monotonic() - last_progress > self.timeout:
                    raise WorkerError(
                        f"no episode finished for {self.timeout:.0f} s on Ray: an actor hangs or cannot be "
                        f"placed (see `ray status`); {len(pending)} episodes outstanding"
                    )
                continue
            ref = ready[0]
            if ref in self._starting:
                self._started_or_replaced(ref, in_flight, todo, load)
                submit()
                continue
            slot, chunk = in_flight.pop(ref)
            load[slot] -= 1
            try:
                results = ray.get(ref)
            except RayTaskError as err:  # the episode code raised: a bug, retrying cannot help
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # Ray colours its traceback
                raise WorkerError(f"episode actor {slot} failed:\n{text}") from None
            except RayActorError as err:  # process or node lost: re-run its chunks elsewhere
                key = chunk[0].task_id
                attempts[key] = attempts.get(key, 0) + 1
                if attempts[key] > self.max_retries:
                    raise WorkerError(
                        f"episodes {key}..{chunk[-1].task_id} lost their Ray actor "
                        f"{attempts[key]} times; last error: {err}"
                    ) from None
                self._replace(slot, in_flight, todo, load)
                todo.append(chunk)
                self.retries += 1
                submit()
                continue
            for r in results:
                if r.task_id in pending:  # keyed by task id: a re-run chunk is never counted twice
                    pending.discard(r.task_id)
                    done[r.task_id] = r
                    if on_result is not None:
                        on_result(r)
            last_progress = time.monotonic()
            submit()
        return done

    def _started_or_replaced(self, ref: Any, in_flight: dict, todo: list, load: list[int]) -> None:
        """A new actor answered its first call: it takes work from now on; or it died first (its node
        went, or building it failed): another one takes its slot."""
        slot = self._starting.pop(ref)
        try:
            self.ray.get(ref)
        except RayActorError as err:
            self._failed_starts += 1
            if self._failed_starts > self.max_retries * len(self.actors):
                raise WorkerError(f"episode actors keep dying before they start; last error: {err}") from None
            self._replace(slot, in_flight, todo, load)
            return
        self._started[slot] = True
        self._failed_starts = 0

    def _replace(self, slot: int, in_flight: dict, todo: list, load: list[int]) -> None:
        """A new actor in ``slot``; the dead one's other queued chunks go back to ``todo``."""
        for ref, (s, chunk) in list(in_flight.items()):
            if s == slot:
                del in_flight[ref]
                todo.append(chunk)
                self.retries += 1
        load[slot] = 0
        self.ray.kill(self.actors[slot], no_restart=True)
        self._start(slot)

    def close(self) -> None:
        """Kill every actor (the Ray instance itself stays up for whoever started it)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors, self._started, self._starting = [], [], {}

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
