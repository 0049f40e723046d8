"""M's training data: every rollout encoded once by V's encoder, cached, and cut into sequences.

The cache (``<logdir>/mdrnn/latents.npz``) holds, per rollout, mu and log sigma of the T + 1 frames
o_0 .. o_T and the T actions, rewards and terminals. It carries a key made of the rollout files
(names, sizes, modification times) and the VAE checkpoint's contents: another dataset or a retrained
VAE rebuilds it. Training draws z = mu + sigma * eps afresh for every batch, as the paper does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.rollouts import load_rollout
from utils.checkpoint import atomic_write
from utils.cli import UserError

CACHE_VERSION = 1


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(files: list[Path], rootdir: Path, vae_path: Path) -> str:
    """Changes when any rollout file (see :func:`data.frames.cache_key`) or the VAE checkpoint changes."""
    from data.frames import cache_key as files_key

    text = f"latents v{CACHE_VERSION} {files_key(files, rootdir)} {file_digest(vae_path)}"
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class Latents:
    """Encoded rollouts, concatenated.

    Rollout r owns frames ``frame_offsets[r]:frame_offsets[r+1]`` (T_r + 1 rows of ``mu``/``logsigma``)
    and steps ``step_offsets[r]:step_offsets[r+1]`` (T_r rows of ``actions``/``rewards``/``terminals``).
    """

    mu: np.ndarray  # (F, L) float32
    logsigma: np.ndarray  # (F, L) float32
    actions: np.ndarray  # (S, 3) float32
    rewards: np.ndarray  # (S,) float32
    terminals: np.ndarray  # (S,) bool
    frame_offsets: np.ndarray  # (R + 1,) int64
    step_offsets: np.ndarray  # (R + 1,) int64
    names: np.ndarray  # (R,) str, paths relative to the dataset root
    key: str = ""

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.step_offsets)

    def save(self, path: Path) -> None:
        fields = {
            k: getattr(self, k)
            for k in (
                "mu",
                "logsigma",
                "actions",
                "rewards",
                "terminals",
                "frame_offsets",
                "step_offsets",
                "names",
            )
        }
        atomic_write(path, lambda f: np.savez(f, key=np.asarray(self.key), **fields))

    @classmethod
    def load(cls, path: Path) -> Latents:
        with np.load(path, allow_pickle=False) as npz:
            return cls(**{k: npz[k] for k in npz.files if k != "key"}, key=str(npz["key"]))


@torch.no_grad()
def encode_rollouts(
    files: list[Path],
    rootdir: Path,
    vae: torch.nn.Module,
    preprocessing: str,
    device: torch.device,
    batch_size: int = 256,
) -> Latents:
    """Encode every frame of ``files`` with ``vae.encode`` (batched, no decoder)."""
    from models.vae import frames_to_tensor

    mus, logsigmas, actions, rewards, terminals, names = [], [], [], [], [], []
    frame_offsets, step_offsets = [0], [0]
    for path in tqdm(files, desc="encoding rollouts", unit="rollout", dynamic_ncols=True):
        r = load_rollout(path)
        if r.preprocessing != preprocessing:
            raise UserError(
                f"{path}: frames made with preprocessing '{r.preprocessing}' but the VAE was "
                f"trained on '{preprocessing}'; use one dataset for both stages"
            )
        frames = r.frames
        for i in range(0, len(frames), batch_size):
            mu, logsigma = vae.encode(frames_to_tensor(frames[i : i + batch_size], device))
            mus.append(mu.float().cpu().numpy())
            logsigmas.append(logsigma.float().cpu().numpy())
        actions.append(r.actions)
        rewards.append(r.rewards)
        terminals.append(r.terminals)
        names.append(str(path.relative_to(rootdir)))
        frame_offsets.append(frame_offsets[-1] + len(frames))
        step_offsets.append(step_offsets[-1] + len(r))
    return Latents(
        mu=np.concatenate(mus),
        logsigma=np.concatenate(logsigmas),
        actions=np.concatenate(actions),
        rewards=np.concatenate(rewards),
        terminals=np.concatenate(terminals),
        frame_offsets=np.asarray(frame_offsets, np.int64),
        step_offsets=np.asarray(step_offsets, np.int64),
        names=np.asarray(names),
    )


def load_or_build_latents(
    cache_path: Path,
    files: list[Path],
    rootdir: Path,
    vae: torch.nn.Module,
    vae_path: Path,
    preprocessing: str,
    device: torch.device,
) -> tuple[Latents, bool]:
    """The cached latents when their key matches, else encode and cache. Returns (latents, rebuilt)."""
    key = cache_key(files, rootdir, vae_path)
    if cache_path.is_file():
        try:
            cached = Latents.load(cache_path)
            if cached.key == key:
                return cached, False
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable cache: rebuild it
    latents = encode_rollouts(files, rootdir, vae, preprocessing, device)
    latents.key = key
    latents.save(cache_path)
    return latents, True


def sequence_windows(
    latents: Latents, rollouts: np.ndarray, seq_len: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(W, 2) int64 rows (rollout, start) tiling every step of ``rollouts`` exactly once.

    Windows are ``seq_len`` long; with ``rng`` each rollout's tiling starts at a random offset in
    (-seq_len, 0] (so window borders move between epochs), else at 0. Windows that stick out of a
    rollout are masked there (see :func:`make_batch`): no step is dropped and rollouts shorter than
    ``seq_len`` still count.
    """
    rows = []
    for r in rollouts:
        offset = -int(rng.integers(seq_len)) if rng is not None else 0
        for start in range(offset, int(latents.lengths[r]), seq_len):
            if start + seq_len > 0:
                rows.append((r, start))
    return np.asarray(rows, np.int64).reshape(-1, 2)


def make_batch(
    latents: Latents,
    windows: np.ndarray,
    seq_len: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors for a batch of windows (B = len(windows), S = seq_len).

    Returns ``latents`` (B, S, L) z_t, ``next_latents`` (B, S, L) z_{t+1} (one z draw per frame, so
    z_{t+1} is both the target at t and the input at t + 1), ``actions`` (B, S, 3), ``rewards`` and
    ``terminals`` (B, S) float, and ``mask`` (B, S) float: 1 where the step exists.
    """
    r, start = windows[:, 0], windows[:, 1]
    t = start[:, None] + np.arange(seq_len + 1)[None]  # (B, S + 1) step index within the rollout
    length = latents.lengths[r][:, None]
    tc = np.clip(t, 0, length)  # frames exist for 0..T
    frame_idx = latents.frame_offsets[r][:, None] + tc
    step_idx = latents.step_offsets[r][:, None] + np.clip(t[:, :-1], 0, length - 1)
    mask = ((t[:, :-1] >= 0) & (t[:, :-1] < length)).astype(np.float32)

    mu = torch.from_numpy(latents.mu[frame_idx]).to(device)
    sigma = torch.from_numpy(latents.logsigma[frame_idx]).to(device).exp()
    eps = torch.randn(mu.shape, generator=generator, device="cpu").to(device)
    z = mu + sigma * eps
    return {
        "latents": z[:, :-1],
        "next_latents": z[:, 1:],
        "actions": torch.from_numpy(latents.actions[step_idx]).to(device),
        "rewards": torch.from_numpy(latents.rewards[step_idx]).to(device),
        "terminals": torch.from_numpy(latents.terminals[step_idx].astype(np.float32)).to(device),
        "mask": torch.from_numpy(mask).to(device),
    }


def split_indices(latents: Latents, test_names: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rollout indices of the train and test sets, by file name."""
    is_test = np.array([n in test_names for n in latents.names], dtype=bool)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def cache_path_for(logdir: str | os.PathLike) -> Path:
    return Path(logdir) / "mdrnn" / "latents.npz"
