"""Steps per second of stock CarRacing-v3 vs FastCarRacing (exact) vs its approximate mode.

Usage:
    python bench/bench_car_racing.py --steps 1000

All three envs get the same seed and the same smooth random actions, in one process on one thread,
stepped in interleaved chunks so that load from elsewhere on the machine hits them alike. Prints
steps/s with ratios vs stock, checks that the exact mode's frames equal stock's, and reports the
approximate mode's deviation on the 64x64 model input (96x96 frame, dashboard rows 84..95 dropped,
area-averaged).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.envs.box2d.car_racing import CarRacing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.fast_car_racing import FastCarRacing  # noqa: E402


def brownian_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """`(n, 3)` smooth random actions: a_{t+1} = clip(a_t + sqrt(1/50) N(0, I), low, high)."""
    low, high = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
    actions = np.empty((n, 3), dtype=np.float32)
    action = rng.uniform(low, high)
    for t in range(n):
        action = np.clip(action + np.sqrt(1 / 50) * rng.standard_normal(3), low, high)
        actions[t] = action
    return actions


def model_input(frames: np.ndarray) -> np.ndarray:
    """`(N, 96, 96, 3)` uint8 frames -> `(N, 3, 64, 64)` float32: rows 84..95 dropped, area-averaged."""
    x = torch.from_numpy(np.ascontiguousarray(frames[:, :84])).permute(0, 3, 1, 2).float()
    return F.interpolate(x, size=(64, 64), mode="area").numpy()


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    actions = brownian_actions(np.random.default_rng(args.seed), args.steps)
    envs = {
        "stock": CarRacing(),
        "fast (exact)": FastCarRacing(),
        f"approx (factor {args.factor})": FastCarRacing(approx=True, approx_factor=args.factor),
    }
    seconds = dict.fromkeys(envs, 0.0)
    frames: dict[str, list[np.ndarray]] = {name: [] for name in envs}
    episode_steps = dict.fromkeys(envs, 0)
    for env in envs.values():
        env.reset(seed=args.seed)

    for start in range(0, args.steps, args.chunk):
        for name, env in envs.items():
            obs_list = frames[name]
            tic = time.perf_counter()
            for action in actions[start : start + args.chunk]:
                obs, _, terminated, _, _ = env.step(action)
                obs_list.append(obs)
                episode_steps[name] += 1
                if terminated or episode_steps[name] == args.episode:
                    # Same physics in all three, so they end episodes on the same step.
                    env.reset(seed=args.seed)
                    episode_steps[name] = 0
            seconds[name] += time.perf_counter() - tic

    stock_rate = args.steps / seconds["stock"]
    print(f"CarRacing-v3, {args.steps} steps, seed {args.seed}, one thread, chunks of {args.chunk}")
    print(f"{'mode':<20} {'steps/s':>9} {'ms/step':>9} {'vs stock':>9}")
    for name, sec in seconds.items():
        rate = args.steps / sec
        print(f"{name:<20} {rate:>9.1f} {1e3 / rate:>9.3f} {rate / stock_rate:>8.2f}x")

    stock, fast, approx = (np.stack(f) for f in frames.values())
    same = int((stock == fast).all(axis=(1, 2, 3)).sum())
    print(f"fast (exact) frames identical to stock: {same}/{len(stock)}")
    diff = np.abs(model_input(approx) - model_input(stock))
    print(
        f"approx vs stock, 64x64 input (0..255): mean |diff| {diff.mean():.3f}, "
        f"p99 {np.percentile(diff, 99):.2f}, max {diff.max():.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps per environment")
    parser.add_argument("--seed", type=int, default=0, help="track seed and action seed")
    parser.add_argument("--chunk", type=int, default=100, help="steps per env before switching to the next")
    parser.add_argument("--episode", type=int, default=1000, help="steps before a reset (the TimeLimit)")
    parser.add_argument("--factor", type=int, default=4, help="canvas reduction of the approximate mode")
    main(parser.parse_args())
