"""M's training throughput on CPU, from the latent cache vs re-encoding frames in every batch.

Usage:
    python bench/bench_mdrnn.py [--batch-size 64] [--seq-len 32] [--batches 10]

Rows, measured in this run with freshly initialised models on random data of the real shapes:
  * latent encoding: V's encoder over frames at batch 256 (what building the cache costs per frame);
  * M training from the cache: sequences/s of trainmdrnn.py's step (batch assembly, forward, loss,
    backward, Adam);
  * the earlier port's design: the same step, but each batch first encodes its B x (S + 1) frames
    with V (what training without a latent cache costs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.latents import Latents, make_batch, sequence_windows  # noqa: E402
from models.mdrnn import MDRNN  # noqa: E402
from models.vae import VAE, frames_to_tensor  # noqa: E402
from trainmdrnn import losses  # noqa: E402
from utils.cli import make_parser, positive_int  # noqa: E402


def fake_latents(rollouts: int, steps: int, latent: int = 32) -> Latents:
    rng = np.random.default_rng(0)
    frames, n = rollouts * (steps + 1), rollouts * steps
    return Latents(
        mu=rng.standard_normal((frames, latent)).astype(np.float32),
        logsigma=np.full((frames, latent), -2.0, np.float32),
        actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminals=np.zeros(n, bool),
        frame_offsets=np.arange(rollouts + 1) * (steps + 1),
        step_offsets=np.arange(rollouts + 1) * steps,
        names=np.array([f"r{i}" for i in range(rollouts)]),
    )


def train_rate(mdrnn, latents, windows, args, vae=None) -> float:
    optimizer = torch.optim.Adam(mdrnn.parameters(), lr=1e-3)
    frames = np.random.default_rng(1).integers(
        0, 256, (args.batch_size * (args.seq_len + 1), 64, 64, 3), np.uint8
    )
    start = time.perf_counter()
    for b in range(args.batches):
        batch = make_batch(
            latents,
            windows[b * args.batch_size : (b + 1) * args.batch_size],
            args.seq_len,
            torch.device("cpu"),
        )
        if vae is not None:  # the earlier design: encode this batch's frames now
            with torch.no_grad():
                vae.encode(frames_to_tensor(frames))
        terms = losses(mdrnn, batch, reward=True)
        optimizer.zero_grad()
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(mdrnn.parameters(), 1.0)
        optimizer.step()
    return args.batches * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="sequences per batch")
    parser.add_argument("--seq-len", type=positive_int, default=32, help="steps per sequence")
    parser.add_argument("--batches", type=positive_int, default=10, help="batches per measurement")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae, mdrnn = VAE().eval(), MDRNN()
    frames = np.random.default_rng(0).integers(0, 256, (256, 64, 64, 3), np.uint8)
    with torch.no_grad():
        vae.encode(frames_to_tensor(frames))  # warm-up
        start = time.perf_counter()
        for _ in range(4):
            vae.encode(frames_to_tensor(frames))
        encode = 4 * 256 / (time.perf_counter() - start)
    latents = fake_latents(64, 1000)
    windows = sequence_windows(latents, np.arange(64), args.seq_len, np.random.default_rng(0))
    windows = windows[np.random.default_rng(0).permutation(len(windows))]
    train_rate(mdrnn, latents, windows, args)  # warm-up
    cached = train_rate(mdrnn, latents, windows, args)
    reencode = train_rate(mdrnn, latents, windows, args, vae)
    print(f"\ntorch threads {args.threads}, batch {args.batch_size} x seq-len {args.seq_len}")
    print(f"{'what':<48}{'rate':>14}{'vs re-encoding':>16}")
    print(f"{'latent encoding (V encoder, batch 256)':<48}{encode:>8.0f} fr/s{'':>16}")
    print(f"{'M training from the latent cache':<48}{cached:>7.1f} seq/s{cached / reencode:>15.1f}x")
    print(f"{'M training re-encoding frames per batch':<48}{reencode:>7.1f} seq/s{1:>15.1f}x")


if __name__ == "__main__":
    main()
