"""Controller evaluation on the Ray backend beside the local one: wall time per generation and overhead.

Usage:
    python bench/bench_ray.py [--pop-size 8] [--n-samples 1] [--steps 100] [--generations 3]

For 1 and --workers workers: both backends' pools start (workers/actors import torch, build V, M and
their environments; "pool start" includes one warm-up generation), then --generations generations of
--pop-size x --n-samples episodes of --steps steps are timed on each, interleaved (local, ray, local,
...) so that both see the same load from the rest of the machine. Both backends drive the same chunks:
same work, same returns (checked). Models are freshly initialised, as in bench_controller.py. Ray runs
a local instance started here; its start-up is reported apart.

Ray starts its workers with OMP_NUM_THREADS=1; the local pool's episode workers inherit the shell's, and
numpy's OpenBLAS then runs several threads in each worker (measured here: 3-6x slower generations on
a shared 2-core machine). Run with OMP_NUM_THREADS=1 for a like-for-like comparison.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from driving.agent import AgentSpec, random_agent_spec  # noqa: E402
from driving.episode import Episode, EpisodeSettings  # noqa: E402
from driving.pool import make_pool  # noqa: E402
from envs import get_env_spec  # noqa: E402
from utils.cli import make_parser, positive_int  # noqa: E402
from utils.ray_cluster import init_ray  # noqa: E402  (imports Ray itself only when called)


def generation(g: int, pop: int, samples: int, dim: int) -> list[Episode]:
    """A generation's episodes: ``pop`` random candidates, each on the same ``samples`` tracks."""
    rng = np.random.default_rng(g)
    params = (rng.standard_normal((pop, dim)) * 0.1).astype(np.float32)
    return [
        Episode(c * samples + s, params[c], 1000 + 10 * g + s) for c in range(pop) for s in range(samples)
    ]


def measure(workers: int, args, spec: AgentSpec, settings: EpisodeSettings) -> dict:
    """Both backends' pools side by side, their generations interleaved so that both see the same load."""
    out, dim = {}, spec.controller.vector_size
    with ExitStack() as stack:
        pools = {}
        for backend in ("local", "ray"):
            start = time.perf_counter()
            pools[backend] = stack.enter_context(
                make_pool(backend, None, spec, settings, workers, args.envs_per_worker)
            )
            pools[backend].evaluate(generation(0, args.pop_size, args.n_samples, dim))  # warm-up: all built
            out[backend] = {"start": time.perf_counter() - start, "times": [], "returns": []}
        for g in range(1, args.generations + 1):
            for backend, pool in pools.items():
                t = time.perf_counter()
                results = pool.evaluate(generation(g, args.pop_size, args.n_samples, dim))
                out[backend]["times"].append(time.perf_counter() - t)
                out[backend]["returns"].append([results[k].episode_return for k in sorted(results)])
    for m in out.values():
        m["per_generation"] = float(np.median(m["times"]))
    return out


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--pop-size", type=positive_int, default=8, help="candidates per generation")
    parser.add_argument("--n-samples", type=positive_int, default=1, help="episodes per candidate")
    parser.add_argument("--steps", type=positive_int, default=100, help="steps per episode")
    parser.add_argument("--generations", type=positive_int, default=3, help="timed generations")
    parser.add_argument("--envs-per-worker", type=positive_int, default=4, help="chunk size")
    parser.add_argument("--workers", type=positive_int, default=2, help="the largest worker count")
    args = parser.parse_args()
    spec = random_agent_spec(seed=0, env="carracing")
    renderer = get_env_spec("carracing").default_renderer
    settings = EpisodeSettings(max_steps=args.steps, renderer=renderer, z_mode="mu")

    t = time.perf_counter()
    ray = init_ray(None)
    ray_start = time.perf_counter() - t
    episodes = args.pop_size * args.n_samples
    rows = []
    for workers in sorted({1, args.workers}):
        m = measure(workers, args, spec, settings)
        local, on_ray = m["local"], m["ray"]
        assert on_ray["returns"] == local["returns"], "the backends disagree"
        rows.append((workers, local, on_ray))
    ray.shutdown()

    print(
        f"\n{episodes} episodes x {args.steps} steps per generation ({args.pop_size} x {args.n_samples}), "
        f"{args.envs_per_worker} envs per worker; median of {args.generations} generations; "
        f"Ray local instance start {ray_start:.1f} s (once per run)"
    )
    head = f"{'workers':>7} {'backend':>8} {'pool start s':>13} {'s/generation':>13} {'episodes/s':>11}"
    print(f"{head} {'vs local':>9} {'overhead s/gen':>15}")
    for workers, local, on_ray in rows:
        for name, m in (("local", local), ("ray", on_ray)):
            ratio = m["per_generation"] / local["per_generation"]
            overhead = m["per_generation"] - local["per_generation"]
            print(
                f"{workers:>7} {name:>8} {m['start']:>13.2f} {m['per_generation']:>13.2f} "
                f"{episodes / m['per_generation']:>11.2f} {ratio:>8.2f}x {overhead:>+15.2f}"
            )
    print("returns identical on both backends: yes")


if __name__ == "__main__":
    main()
