"""Controller-evaluation throughput: env steps/s with V and M in the loop, beside the bare env.

Usage:
    python bench/bench_controller.py [--steps 300] [--renderers fast stock]

Rows, all measured in this run on the same env with the same step budget:
  * bare env: one CarRacing stepped with brownian actions, no models (the ceiling);
  * earlier ports' design: one env and batch-1 V/M/C inference per worker;
  * an episode worker: --envs-per-worker envs per worker, V, M and C batched over them;
  * bare env in every worker process at once (the ceiling of the next row);
  * the episode pool: episode workers in every worker process (the whole machine).
Models are freshly initialised (weights do not change the cost); episodes are capped at --steps.

Then where an episode worker's time goes beyond the env: each part of acting timed alone on a batch of
--envs-per-worker real frames (ms per env-step); the worker's step split into the time inside the envs'
own step and the rest; what 0.8x the bare env would leave for the rest; and V's encoder against this
core's float32 matrix-multiply rate (a 1024 x 1024 product, one thread).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.agent_rates import episodes, pool_rate  # noqa: E402
from driving.agent import Agent, AgentSpec, random_agent_spec  # noqa: E402
from driving.episode import EpisodeSettings, drive_chunk  # noqa: E402
from envs import get_env_spec, make_env  # noqa: E402
from envs.policies import brownian_actions  # noqa: E402
from models.vae import frames_to_tensor  # noqa: E402
from utils.cli import make_parser, positive_int  # noqa: E402
from utils.precision import cpu_has_native_bf16  # noqa: E402


def bare_env(renderer: str, steps: int, n: int) -> float:
    total, elapsed = 0, 0.0
    for i in range(n):
        env = make_env(renderer=renderer, max_episode_steps=steps)
        env.reset(seed=1000 + i)
        actions = brownian_actions(
            np.random.default_rng(i), env.action_space.low, env.action_space.high, steps
        )
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        elapsed += time.perf_counter() - start
        total += steps
        env.close()
    return total / elapsed


def _bare_env_worker(job: tuple[str, int, int]) -> float:
    return bare_env(*job)


def bare_env_everywhere(renderer: str, steps: int, n: int, workers: int) -> float:
    """Total steps/s of ``workers`` processes each stepping the bare env as :func:`bare_env` (the ceiling
    of the episode pool's row), after one warm-up round."""
    with get_context("spawn").Pool(workers) as pool:
        pool.map(_bare_env_worker, [(renderer, steps, 1)] * workers)
        start = time.perf_counter()
        pool.map(_bare_env_worker, [(renderer, steps, n)] * workers)
        return workers * n * steps / (time.perf_counter() - start)


def in_process(spec: AgentSpec, settings: EpisodeSettings, n: int, per_chunk: int) -> tuple[float, float]:
    """One episode worker's loop, in this process on one thread (what each worker does): (steps/s, the
    share of its time spent inside the envs' own ``step``)."""
    agent = Agent(spec)
    envs = [
        make_env(renderer=settings.renderer, max_episode_steps=settings.max_steps) for _ in range(per_chunk)
    ]
    in_env = 0.0

    def timed(step):
        def run(action):
            nonlocal in_env
            start = time.perf_counter()
            out = step(action)
            in_env += time.perf_counter() - start
            return out

        return run

    for env in envs:
        env.step = timed(env.step)
    eps = episodes(n, spec.controller.vector_size)
    total, start = 0, time.perf_counter()
    for i in range(0, n, per_chunk):
        total += sum(r.steps for r in drive_chunk(agent, envs, eps[i : i + per_chunk], settings))
    elapsed = time.perf_counter() - start
    return total / elapsed, in_env / elapsed


def per_call(fn, repeats: int) -> float:
    """Seconds per call of ``fn()``, the best of 3 runs of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def encoder_macs(agent: Agent) -> int:
    """Multiply-adds of V's encoder for one 64x64 frame, counted from its layers' shapes in a forward."""
    macs = 0

    def count(module: torch.nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        per_output = module.weight[0].numel()  # in_channels x kernel (conv) or in_features (linear)
        macs += output[0].numel() * per_output

    hooks = [
        m.register_forward_hook(count)
        for m in agent.vae.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    with torch.no_grad():
        agent.vae.encode(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    return macs


def acting_costs(agent: Agent, renderer: str, n: int, repeats: int = 200) -> dict[str, float]:
    """ms per env-step of each part of one worker's acting, on a batch of ``n`` real frames (brownian
    tracks at their 50th step), one thread."""
    obs = []
    for i in range(n):
        env = make_env(renderer=renderer)
        env.reset(seed=2000 + i)
        for a in brownian_actions(np.random.default_rng(i), env.action_space.low, env.action_space.high, 50):
            o = env.step(a)[0]
        obs.append(o)
        env.close()
    obs = np.stack(obs)
    frames = agent.preprocess(obs)
    x = frames_to_tensor(frames)
    controllers = agent.controllers(
        np.stack([e.params for e in episodes(n, agent.spec.controller.vector_size)])
    )
    state = agent.initial_state(n)
    with torch.no_grad():
        z = agent.vae.encode(x)[0]
        encode = per_call(lambda: agent.vae.encode(x), repeats)
        h, c = state
        act = per_call(
            lambda: agent.mdrnn.recurrent_step(agent.env.squash(controllers.raw_rows(z, h, c)), z, (h, c)),
            repeats,
        )
    resize = per_call(lambda: agent.preprocess(obs), repeats)
    whole = per_call(lambda: agent.step(agent.preprocess(obs), controllers, state), repeats)
    costs = {"resize to 64x64": resize, "V's encoder": encode, "C and M's LSTM": act}
    costs["the rest (tensor copies, glue)"] = max(0.0, whole - sum(costs.values()))
    costs["acting in all"] = whole
    return {k: v * 1000 / n for k, v in costs.items()}


def other_encoder_kernels(agent: Agent, n: int, repeats: int = 200) -> dict[str, float]:
    """ms per frame of V's encoder on a batch of ``n`` frames with the kernels acting does not use (its
    float32 default is timed in :func:`acting_costs`): each changes the last bits of z (and so the
    returns recorded with the default)."""
    x = torch.rand(n, 3, 64, 64)
    vae_cl = copy.deepcopy(agent.vae).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    kernels = [("float32, channels_last", lambda: vae_cl.encode(x_cl), contextlib.nullcontext())]
    if cpu_has_native_bf16():
        bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
        kernels.append(("bf16 autocast (native bf16 on this CPU)", lambda: agent.vae.encode(x), bf16))
    out = {}
    with torch.no_grad():
        for name, fn, numerics in kernels:
            with numerics:
                out[name] = per_call(fn, repeats) * 1000 / n
    return out


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This core's float32 rate on a plain matrix product, one thread (the practical peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / per_call(lambda: torch.mm(a, b), repeats) / 1e9


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--steps", type=positive_int, default=300, help="steps per episode")
    parser.add_argument("--episodes", type=positive_int, default=8, help="episodes per row")
    parser.add_argument(
        "--envs-per-worker", type=positive_int, default=8, help="an episode worker's chunk size"
    )
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="all-workers row")
    parser.add_argument(
        "--renderers",
        nargs="+",
        choices=get_env_spec("carracing").renderers,
        default=["fast", "stock"],
        help="CarRacing implementations to measure, each with its own bare-env row",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = random_agent_spec(seed=0, env="carracing")
    agent = Agent(spec)
    k, size = args.envs_per_worker, spec.controller.vector_size
    for renderer in args.renderers:
        settings = EpisodeSettings(max_steps=args.steps, renderer=renderer, z_mode="mu")
        bare = bare_env(renderer, args.steps, 2)
        worker, env_share = in_process(spec, settings, args.episodes, k)
        rows = [
            ("bare env, 1 core", bare),
            ("earlier design: 1 env, batch-1 V+M+C, 1 core", in_process(spec, settings, args.episodes, 1)[0]),
            (f"episode worker: {k} envs batched, 1 core", worker),
            (
                f"bare env, {args.workers} processes",
                bare_env_everywhere(renderer, args.steps, 2, args.workers),
            ),
            (
                f"episode pool: {args.workers} workers x {k} envs",
                pool_rate(spec, settings, episodes(args.episodes * args.workers, size), k, args.workers),
            ),
        ]
        print(f"\nrenderer {renderer}, episodes of {args.steps} steps, torch threads per worker 1")
        print(f"{'what':<48}{'steps/s':>10}{'vs bare env':>13}")
        for name, sps in rows:
            print(f"{name:<48}{sps:>10.0f}{sps / bare:>12.2f}x")
        print(
            f"(the last two rows are total throughput over {args.workers} processes; the pool runs "
            f"{rows[-1][1] / rows[-2][1]:.2f}x the bare env's rate there)"
        )
        costs = acting_costs(agent, renderer, k)
        print(f"\nacting, batch of {k} frames, one thread{'':<12}ms per env-step")
        for name, ms in costs.items():
            print(f"  {name:<52}{ms:>8.3f}")
        bare_ms, worker_ms = 1000 / bare, 1000 / worker
        print(f"  bare env step{'':<39}{bare_ms:>8.3f}")
        print(f"  episode worker step{'':<33}{worker_ms:>8.3f}")
        print(f"    inside the envs' step{'':<29}{worker_ms * env_share:>8.3f}")
        print(
            f"    the rest: acting (smaller batches as episodes end), loop{worker_ms * (1 - env_share):>8.3f}"
        )
        print(
            f"the worker row reaches 0.8x the bare env with at most {bare_ms / 0.8 - bare_ms:.3f} ms per "
            f"step beside a bare step; timed alone, acting takes {costs['acting in all']:.3f}"
        )
    macs = encoder_macs(agent)
    encode_s = costs["V's encoder"] / 1000
    rate = 2 * macs / encode_s / 1e9
    peak = matmul_gflops()
    print(
        f"V's encoder: {macs / 1e6:.1f}M multiply-adds a frame, {rate:.0f} GFLOP/s; "
        f"a float32 1024x1024 matrix product on this core: {peak:.0f} GFLOP/s ({rate / peak:.2f} of it)"
    )
    print(f"V's encoder with other kernels, batch of {k}, ms per frame (each changes the last bits of z):")
    print(f"  {'float32 (what acting runs; above)':<52}{encode_s * 1000:>8.3f}")
    for name, ms in other_encoder_kernels(agent, k).items():
        print(f"  {name:<52}{ms:>8.3f}")


if __name__ == "__main__":
    main()
