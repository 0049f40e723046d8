"""Throughput of V's training step (fp32 vs the default numerics) and of its input pipeline.

Usage:
    python bench/bench_vae.py                 # ~1 minute on 2 CPU cores
    python bench/bench_vae.py --device cuda --steps 50
    python bench/bench_vae.py --precision bf16     # force bf16 autocast as the compared numerics

Training is timed on batches already in memory (the compute alone); the input pipeline is timed from
the memory-mapped frame cache of a synthetic rollout directory to float tensors on the device
(data/frames.py + models.vae.frames_to_tensor), what trainvae.py does per batch. Each training cell
is the fastest step of --repeats interleaved runs, each pipeline cell the best pass, since other
processes share the machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from data.frames import FrameCache
from models.vae import VAE, frames_to_tensor, vae_loss
from utils.device import add_device_flag, resolve_device
from utils.precision import MEMORY_FORMATS, PRECISIONS, Numerics, resolve_numerics


def train_fps(numerics: Numerics, batch_size: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    vae = VAE().to(device=device, memory_format=numerics.memory_format)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-4)
    frames = torch.randint(0, 256, (batch_size, 64, 64, 3), dtype=torch.uint8)
    x = frames_to_tensor(frames, device).contiguous(memory_format=numerics.memory_format)

    def step():
        with numerics.autocast():
            recon, mu, logsigma = vae(x)
        loss, _, _ = vae_loss(recon, x, mu, logsigma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, oneDNN primitive creation
    step()
    fastest = float("inf")  # the fastest step: least disturbed by other processes on the machine
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        fastest = min(fastest, time.perf_counter() - start)
    return batch_size / fastest


def pipeline_fps(cache: FrameCache, batch_size: int, numerics: Numerics, device: torch.device) -> float:
    indices = np.arange(len(cache))
    rng = np.random.default_rng(0)
    start, n = time.perf_counter(), 0
    for frames in cache.batches(indices, batch_size, rng=rng, drop_last=True):
        x = frames_to_tensor(frames, device).contiguous(memory_format=numerics.memory_format)
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_flag(parser, "cpu", "where V is timed")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per cell")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the best counts")
    parser.add_argument(
        "--rollouts", type=int, default=20, help="synthetic rollouts of 500 frames for the pipeline"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="numerics compared with fp32")
    parser.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto", help="its memory format")
    args = parser.parse_args()
    device = resolve_device(args.device)
    fp32 = resolve_numerics("fp32", "contiguous", device)
    default = resolve_numerics(args.precision, args.memory_format, device, auto_bf16_on_cuda=False)
    machine = platform.processor() or platform.machine()
    print(f"{machine}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}; default numerics: {default}")

    with tempfile.TemporaryDirectory() as tmp:
        from data.rollouts import Rollout, save_rollout

        rng = np.random.default_rng(0)
        for i in range(args.rollouts):
            frames = rng.integers(0, 256, size=(500, 64, 64, 3), dtype=np.uint8)
            save_rollout(
                Path(tmp) / f"rollout_{i:06d}.npz",
                Rollout(frames[:-1], np.zeros((499, 3), np.float32), np.zeros(499, np.float32),
                        np.zeros(499, bool), frames[-1], True, "crop84"),
            )  # fmt: skip
        start = time.perf_counter()
        cache = FrameCache.open(tmp, workers=2, verbose=False)
        build = len(cache) / (time.perf_counter() - start)

        rows = []
        for batch_size in (32, 128):
            best = {"fp32": 0.0, "default": 0.0, "pipeline": 0.0}
            steps = max(1, args.steps * 128 // batch_size // 2)
            for _ in range(args.repeats):
                best["fp32"] = max(best["fp32"], train_fps(fp32, batch_size, steps, device))
                best["default"] = max(best["default"], train_fps(default, batch_size, steps, device))
                best["pipeline"] = max(best["pipeline"], pipeline_fps(cache, batch_size, default, device))
            rows.append((batch_size, best))

    print()
    print("| batch | train fp32 (frames/s) | train default (frames/s) | default / fp32 "
          "| input pipeline (frames/s) | pipeline / train default |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for batch_size, b in rows:
        print(
            f"| {batch_size} | {b['fp32']:.0f} | {b['default']:.0f} | {b['default'] / b['fp32']:.2f}x "
            f"| {b['pipeline']:.0f} | {b['pipeline'] / b['default']:.0f}x |"
        )
    print(f"\nframe cache build: {build:.0f} frames/s ({len(cache)} frames, from compressed .npz, 2 threads)")


if __name__ == "__main__":
    main()
