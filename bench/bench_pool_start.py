"""How long a pool of workers takes to start: spawn against the fork server every pool now uses.

Usage:
    python bench/bench_pool_start.py [--workers 2] [--pools 4]

Starts ``--pools`` pools one after another in this process, each of ``--workers`` processes that are
ready once they hold what an episode worker imports (driving.episode: torch, gymnasium, the envs), and prints
the seconds each pool took, for ``spawn`` (a fresh interpreter per worker) and for
``utils.processes.worker_context`` (a fork server that has imported torch and this script once). The
first fork-server pool includes starting the server.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import driving.episode  # noqa: E402, F401  (the parent has it, as a stage script has)
from utils.cli import make_parser, positive_int  # noqa: E402
from utils.processes import worker_context  # noqa: E402


def _worker(ready) -> None:
    ready.put(1)  # this script (so driving.episode) is imported by now, by spawn or by the server


def pool_seconds(ctx, workers: int) -> float:
    ready = ctx.Queue()
    processes = [ctx.Process(target=_worker, args=(ready,)) for _ in range(workers)]
    start = time.perf_counter()
    for p in processes:
        p.start()
    for _ in processes:
        ready.get()
    elapsed = time.perf_counter() - start
    for p in processes:
        p.join()
    return elapsed


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--workers", type=positive_int, default=2, help="processes per pool")
    parser.add_argument("--pools", type=positive_int, default=4, help="pools started one after another")
    args = parser.parse_args()
    rows = {}
    for name, ctx in (("spawn", mp.get_context("spawn")), ("fork server", worker_context())):
        rows[name] = [pool_seconds(ctx, args.workers) for _ in range(args.pools)]
    pools = " | ".join(f"pool {i + 1} (s)" for i in range(args.pools))
    print(f"| start method | {pools} | mean of pools 2+ |")
    print(f"| --- |{' ---: |' * (args.pools + 1)}")
    for name, seconds in rows.items():
        later = seconds[1:] or seconds
        print(f"| {name} | {' | '.join(f'{s:.2f}' for s in seconds)} | {sum(later) / len(later):.2f} |")
    spawn, server = (sum(r[1:] or r) / len(r[1:] or r) for r in rows.values())
    print(f"\nspawn / fork server, pools 2+: {spawn / server:.1f}x")


if __name__ == "__main__":
    main()
