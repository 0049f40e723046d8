"""The dream: M as an environment of latents, stepped here and nowhere else.

A dream starts from real latents z_0 (first frames of recorded rollouts) and a zero LSTM state, as a real
episode does. Each :meth:`Dream.step` under actions a_t, for N rows at once:

    (h_{t+1}, c_{t+1}) = LSTM([z_t, a_t], (h_t, c_t))
    r_t = M's reward head(h_{t+1});  done_t from M's termination head(h_{t+1})
    z_{t+1} ~ M's mixture(h_{t+1}) at temperature tau: logits / tau, sigmas * sqrt(tau), per dimension

Termination: ``threshold`` ends a row when sigmoid(logit) > 0.5 (the paper's choice, "more stable than
sampling"); ``sample`` draws done ~ Bernoulli(sigmoid(logit)). Under sampling, a head that is slightly
miscalibrated (say p = 0.002 on every ordinary step) ends most long dreams early for no reason.

Everything that dreams uses this class: :func:`dream_returns` (controller training inside the dream,
all candidates x samples as rows of one batch, ended dreams dropped from it), M's training pictures
(trainmdrnn.py) and scripts/dream.py (watching or driving a dream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from models.controller import ControllerBatch
from models.mdrnn import MDRNNCell, sample_latent
from models.vae import VAE
from utils.cli import positive_float
from utils.visuals import to_uint8

DONE_MODES = ("threshold", "sample")
START_MODES = ("first", "random")
# The paper's best for VizDoom; on CarRacing the best mean real-env transfer of those we measured
# (tau 0.5, 1.0, 1.15, 1.5; 3 seeds each; a tiny V and M, so a weak preference: see the README).
DEFAULT_TEMPERATURE = 1.15


def add_temperature_flag(parser, help: str, default: float | None = DEFAULT_TEMPERATURE) -> None:
    """``--temperature``, tau of M's sampling in a dream (mixture logits / tau, sigmas x sqrt(tau)): one
    definition and one check (tau > 0) for every script that dreams. ``parser`` may be a group."""
    parser.add_argument(
        "--temperature", type=positive_float, default=default, help=f"tau of M's sampling: {help}"
    )


class DreamStep(NamedTuple):
    """What one step returns: z_{t+1} (N, L), r_t (N,), done_t (N,) bool."""

    z: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor


class Dream:
    """N dreams stepped together by M's one-step cell.

    Args:
        cell: M with its heads, in eval mode.
        temperature: tau (>= 0; 0 takes the most likely component's mean).
        done_mode: ``threshold`` or ``sample`` (see the module docstring).
        generator: the only source of randomness (on the cell's device); a fixed seed repeats a dream.
        survival: the reward is +1 per step (an env whose reward is staying alive, as Doom's) instead of
            M's reward head.
        matmul_dtype: None (float32) or torch.bfloat16 for M's large matrix products (see
            :meth:`models.mdrnn.MDRNNCell.forward`).
    """

    def __init__(
        self,
        cell: MDRNNCell,
        temperature: float,
        done_mode: str = "threshold",
        generator: torch.Generator | None = None,
        survival: bool = False,
        matmul_dtype: torch.dtype | None = None,
    ) -> None:
        if done_mode not in DONE_MODES:
            raise ValueError(f"unknown done_mode {done_mode!r}; expected one of {DONE_MODES}")
        self.cell, self.temperature, self.done_mode, self.generator = cell, temperature, done_mode, generator
        self.survival, self.matmul_dtype = survival, matmul_dtype

    def reset(self, start_z: torch.Tensor) -> torch.Tensor:
        """Start N dreams at ``start_z`` (N, L) with a zero LSTM state; returns z_0."""
        self.z = start_z
        self.hidden = self.cell.initial_hidden(start_z.shape[0], start_z.device, start_z.dtype)
        return self.z

    def keep(self, rows: torch.Tensor) -> torch.Tensor:
        """Continue only the dreams of batch rows ``rows`` (the others ended); returns their z."""
        self.z = self.z[rows]
        self.hidden = (self.hidden[0][rows], self.hidden[1][rows])
        return self.z

    @torch.no_grad()
    def step(self, action: torch.Tensor, z: torch.Tensor | None = None) -> DreamStep:
        """Advance every row under ``action`` (N, A); ``z`` (N, L) replaces the current latent first
        (a real frame fed as context)."""
        if z is not None:
            self.z = z
        out = self.cell(action, self.z, self.hidden, self.matmul_dtype)
        self.hidden = out.hidden
        p_done = torch.sigmoid(out.terminations)
        if self.done_mode == "threshold":
            done = p_done > 0.5
        else:
            done = torch.rand(p_done.shape, generator=self.generator, device=p_done.device) < p_done
        self.z = sample_latent(out.mus, out.sigmas, out.logpi, self.temperature, self.generator)
        reward = torch.ones_like(out.rewards) if self.survival else out.rewards
        return DreamStep(self.z, reward, done)


@torch.no_grad()
def dream_returns(
    dream: Dream,
    controllers: ControllerBatch,
    squash: Callable[[torch.Tensor], torch.Tensor],
    start_z: torch.Tensor,
    steps: int,
    record: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drive N controllers in the dream, one row each: a_t = squash(C(z_t, h_t[, c_t])).

    Rows whose dream has ended are dropped from the batch, so a generation costs what its survivors
    dream (Doom's dreams end at M's predicted deaths).

    Args:
        controllers: N controllers (one per row of ``start_z``).
        squash: the env's map from C's raw outputs to actions.
        start_z: (N, L) initial latents.
        steps: episode length cap.
        record: if a list, each step's (z_t (A, L), a_t (A, A_dim), rows (A,)) is appended to it: the
            latents and actions of the A rows still dreaming, and which of the N they are.
    Returns:
        returns (N,) float32, the sum of rewards up to and including the step where done fires, and
        lengths (N,) int64 (steps each row ran, 1..steps).
    """
    n = start_z.shape[0]
    if len(controllers) != n:
        raise ValueError(f"{len(controllers)} controllers for {n} start latents")
    z = dream.reset(start_z)
    returns = torch.zeros(n, device=start_z.device)
    lengths = torch.zeros(n, dtype=torch.int64, device=start_z.device)
    rows = torch.arange(n, device=start_z.device)  # which of the N dreams each batch row is
    for _ in range(steps):
        h, c = dream.hidden
        action = squash(controllers.raw_rows(z, h, c))
        if record is not None:
            record.append((z, action, rows))
        z, reward, done = dream.step(action)
        returns[rows] += reward
        lengths[rows] += 1
        if done.any():
            keep = torch.nonzero(~done).squeeze(1)
            if len(keep) == 0:
                break
            rows, controllers = rows[keep], controllers.rows(keep)
            z = dream.keep(keep)
    return returns, lengths


def start_latents(
    mu: np.ndarray, frame_offsets: np.ndarray, n: int, rng: np.random.Generator, mode: str = "first"
) -> torch.Tensor:
    """(n, L) real latents to start dreams from: encoder means of frames of the latent cache.

    mu: (F, L); frame_offsets: (R + 1,), rollout r owning frames ``frame_offsets[r]:frame_offsets[r+1]``.
    ``first``: the first frame of a random rollout, where real episodes start (M's zero initial state
    matches it). ``random``: a frame anywhere in a random rollout, for more varied starts.
    """
    if mode not in START_MODES:
        raise ValueError(f"unknown start mode {mode!r}; expected one of {START_MODES}")
    rollouts = rng.integers(len(frame_offsets) - 1, size=n)
    first = frame_offsets[rollouts]
    if mode == "first":
        frames = first
    else:
        frames = first + (rng.random(n) * (frame_offsets[rollouts + 1] - first)).astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(mu[frames], dtype=np.float32))


@torch.no_grad()
def decode_latents(vae: VAE, z: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(T, L) latents -> (T, 64, 64, 3) uint8 frames decoded by V, ``batch_size`` at a time."""
    return np.concatenate([to_uint8(vae.decode(z[i : i + batch_size])) for i in range(0, len(z), batch_size)])
