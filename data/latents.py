"""M's training data: every rollout encoded once by V's encoder, cached, and cut into sequences.

The cache (``<logdir>/mdrnn/latents.npz``) holds, per rollout, mu and log sigma of the T + 1 frames
o_0 .. o_T and the T actions, rewards and terminals. It carries a key made of the rollout files
(names, sizes, modification times) and the VAE checkpoint's contents: another dataset or a retrained
VAE rebuilds it. Training draws z = mu + sigma * eps afresh for every batch, as the paper does.

Dreams start from the latents of real first frames: :func:`load_start_pool` reads them from the cache,
or from the much smaller ``start_latents.npz`` that :func:`save_start_pool` keeps for exported logdirs.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.frames import cache_key as files_key
from data.rollouts import load_rollout
from models.vae import frames_to_tensor
from utils.checkpoint import atomic_write, file_digest
from utils.cli import UserError

CACHE_VERSION = 1


def cache_key(files: list[Path], rootdir: Path, vae_path: Path) -> str:
    """Changes when any rollout file (see :func:`data.frames.cache_key`) or the VAE checkpoint changes."""
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
    actions: np.ndarray  # (S, A) float32
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
    env: str,
    preprocessing: str,
    device: torch.device,
    batch_size: int = 256,
) -> Latents:
    """Encode every frame of ``files`` with ``vae.encode`` (batched, no decoder); every file must hold
    ``env`` frames made with ``preprocessing``, as V's."""
    mus, logsigmas, actions, rewards, terminals, names = [], [], [], [], [], []
    frame_offsets, step_offsets = [0], [0]
    for path in tqdm(files, desc="encoding rollouts", unit="rollout", dynamic_ncols=True):
        r = load_rollout(path)
        if r.env != env:
            raise UserError(
                f"{path}: a {r.env} rollout, but the VAE was trained on {env}; "
                f"use one dataset for both stages"
            )
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
    env: str,
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
    latents = encode_rollouts(files, rootdir, vae, env, preprocessing, device)
    latents.key = key
    latents.save(cache_path)
    return latents, True


def sequence_windows(
    latents: Latents, rollouts: np.ndarray, seq_len: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(W, 3) int64 rows (rollout, start, stop) tiling every step of ``rollouts`` exactly once.

    Every window starts at a step >= 0 and M runs it from the zero state, so a rollout's first steps are
    learned from the state M starts from when it acts and dreams. Windows hold at most ``seq_len``
    steps; with ``rng`` each rollout's first window is cut short at a random length in [1, seq_len]
    (so window borders move between epochs), else every window but a rollout's last is ``seq_len``
    long. A window's steps from ``stop`` on are padding, masked out (see :func:`make_batch`): they come
    after every step the loss counts, where an LSTM running forward never reads them. No step is
    dropped and rollouts shorter than ``seq_len`` still count.
    """
    rows = []
    for r in rollouts:
        length = int(latents.lengths[r])
        first = seq_len - int(rng.integers(seq_len)) if rng is not None else seq_len
        starts = [0, *range(first, length, seq_len)]
        stops = [*starts[1:], length]
        rows.extend((r, start, stop) for start, stop in zip(starts, stops, strict=True))
    return np.asarray(rows, np.int64).reshape(-1, 3)


def first_step_windows(latents: Latents, rollouts: np.ndarray, steps: int) -> np.ndarray:
    """(W, 3) rows (rollout, 0, stop): the first ``steps`` steps of each of ``rollouts`` (all of a shorter
    one), one window each, for :func:`make_batch` with ``seq_len=steps``."""
    stops = np.minimum(latents.lengths[rollouts], steps)
    return np.stack([rollouts, np.zeros_like(rollouts), stops], 1).astype(np.int64).reshape(-1, 3)


def make_batch(
    latents: Latents,
    windows: np.ndarray,
    seq_len: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors for a batch of windows (rows (rollout, start, stop); B = len(windows), S = seq_len).

    Returns ``latents`` (B, S, L) z_t, ``next_latents`` (B, S, L) z_{t+1} (one z draw per frame, so
    z_{t+1} is both the target at t and the input at t + 1), ``actions`` (B, S, 3), ``rewards`` and
    ``terminals`` (B, S) float, and ``mask`` (B, S) float: 1 for the window's steps start .. stop - 1.
    """
    r, start, stop = windows[:, 0], windows[:, 1], windows[:, 2]
    t = start[:, None] + np.arange(seq_len + 1)[None]  # (B, S + 1) step index within the rollout
    length = latents.lengths[r][:, None]
    tc = np.minimum(t, length)  # frames exist for 0..T
    frame_idx = latents.frame_offsets[r][:, None] + tc
    step_idx = latents.step_offsets[r][:, None] + np.minimum(t[:, :-1], length - 1)
    mask = (t[:, :-1] < stop[:, None]).astype(np.float32)

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


def save_start_pool(mu: np.ndarray, frame_offsets: np.ndarray, path: Path) -> None:
    """Keep only each rollout's first-frame latent (a few KB) in ``path``: enough to start dreams where
    real episodes start, without the whole latent cache. mu: (F, L); frame_offsets: (R + 1,)."""
    first = np.ascontiguousarray(mu[frame_offsets[:-1]], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, mu=first, frame_offsets=np.arange(len(first) + 1, dtype=np.int64))
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_start_pool(cache_path: Path, small_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means (F, L) and frame offsets (R + 1,) of the latent cache at ``cache_path``, else of the
    first frames kept by :func:`save_start_pool` at ``small_path`` (then every start is a first frame).
    One clear line when neither exists."""
    if not cache_path.is_file():
        if small_path.is_file():
            with np.load(small_path, allow_pickle=False) as npz:
                return npz["mu"], npz["frame_offsets"]
        raise UserError(
            f"no latent cache at {cache_path}: run trainmdrnn.py --logdir {cache_path.parent.parent} first"
        )
    latents = Latents.load(cache_path)
    if len(latents.frame_offsets) < 2:
        raise UserError(
            f"{cache_path} holds no rollouts: "
            f"rebuild it with trainmdrnn.py --logdir {cache_path.parent.parent}"
        )
    return latents.mu, latents.frame_offsets
