"""Learning inside the dream: C driven in M's hallucinated CarRacing, many episodes as one tensor.

A dream episode starts from a real latent z_0 (a frame of a training rollout, from the latent cache) and a
zero LSTM state, as a real episode does. Then, for t = 0, 1, ...:

    a_t = C(z_t, h_t)                           (the same squashed linear controller as in the real env)
    (h_{t+1}, c_{t+1}) = LSTM([z_t, a_t], (h_t, c_t))
    r_t = M's reward head(h_{t+1});  done_t from M's termination head(h_{t+1})
    z_{t+1} ~ M's mixture(h_{t+1}) at temperature tau

The return is the sum of r_t up to and including the step where done_t fires (or ``steps`` steps).

Termination: ``threshold`` ends an episode when sigmoid(logit) > 0.5; ``sample`` draws
done ~ Bernoulli(sigmoid(logit)) every step. The default is ``threshold``: CarRacing ends rarely (leaving
the playfield), and a head that is slightly miscalibrated, say p = 0.002 on every ordinary step, would under
sampling end most 1000-step dreams early for no reason; under the threshold it never does, while a state
the head is confident about (p > 0.5) still ends the dream.

All N = candidates x samples rows step together: per step one LSTM cell, one matmul of the heads, one
batched controller matmul and one mixture draw, with no environment and no processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.controller import batched_controller_actions, unflatten_controller_vectors
from models.mdrnn import MDRNNCell, sample_latent

DONE_MODES = ("threshold", "sample")
START_MODES = ("first", "random")


@torch.no_grad()
def dream_returns(
    cell: MDRNNCell,
    params: np.ndarray | torch.Tensor,
    start_z: torch.Tensor,
    steps: int,
    temperature: float,
    generator: torch.Generator | None = None,
    done_mode: str = "threshold",
    record: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drive N controllers in M's dream, one row each.

    Args:
        cell: M with its reward and termination heads (eval mode).
        params: (N, P) flat controller vectors (see models/controller.py for the order).
        start_z: (N, L) initial latents.
        steps: dream episode length cap.
        temperature: tau of :func:`models.mdrnn.sample_latent` (mixture logits / tau, sigmas * sqrt(tau)).
        generator: the only source of randomness; a fixed seed gives the same returns.
        done_mode: ``threshold`` (p > 0.5) or ``sample`` (Bernoulli(p)); see the module docstring.
        record: if a list, each step's (z_t (N, L), a_t (N, 3), alive (N,) bool) is appended to it.
    Returns:
        returns (N,) float32 and lengths (N,) int64 (steps each episode ran, 1..steps).
    """
    if done_mode not in DONE_MODES:
        raise ValueError(f"unknown done_mode {done_mode!r}; expected one of {DONE_MODES}")
    device = start_z.device
    n = start_z.shape[0]
    weights, biases = unflatten_controller_vectors(
        params, latent=cell.latent, hidden=cell.hidden, dtype=start_z.dtype, device=device
    )
    if weights.shape[0] != n:
        raise ValueError(f"{weights.shape[0]} controllers for {n} start latents")
    h, c = cell.initial_hidden(n, device, start_z.dtype)
    z = start_z
    returns = torch.zeros(n, device=device)
    lengths = torch.zeros(n, dtype=torch.int64, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(steps):
        # Rows that ended keep being stepped (masked): a fixed-shape batch beats gathering the survivors.
        action = batched_controller_actions(weights, biases, z[:, None], h[:, None])[:, 0]
        if record is not None:
            record.append((z, action, alive.clone()))
        out = cell(action, z, (h, c))
        h, c = out.hidden
        returns += torch.where(alive, out.rewards, torch.zeros_like(out.rewards))
        lengths += alive.long()
        p_done = torch.sigmoid(out.terminations)
        if done_mode == "threshold":
            done = p_done > 0.5
        else:
            done = torch.rand(p_done.shape, generator=generator, device=device) < p_done
        z = sample_latent(out.mus, out.sigmas, out.logpi, temperature, generator)
        alive = alive & ~done
        if not alive.any():
            break
    return returns, lengths


def start_latents(
    mu: np.ndarray,
    frame_offsets: np.ndarray,
    n: int,
    rng: np.random.Generator,
    mode: str = "first",
) -> torch.Tensor:
    """(n, L) real latents to start dreams from: encoder means of frames of the latent cache.

    ``first``: the first frame of a random rollout, where real episodes start (the zoom-in; M's zero
    initial state matches it). ``random``: a frame anywhere in a random rollout, for more varied starts.
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


def load_dream_cell(
    logdir: str | Path, device: torch.device | str = "cpu"
) -> tuple[MDRNNCell, dict[str, Any]]:
    """M (all heads) as a one-step cell from ``<logdir>/mdrnn/best.tar``; one clear line when its reward
    head was not trained (``--no-reward``), since a dream without rewards cannot rank controllers."""
    from models.mdrnn import load_mdrnn
    from utils.cli import UserError

    mdrnn, checkpoint = load_mdrnn(logdir)
    if not checkpoint.get("reward_head", False):
        raise UserError(
            f"{Path(logdir) / 'mdrnn' / 'best.tar'} has no trained reward head (trained with --no-reward), "
            f"so it cannot score dreams: rerun trainmdrnn.py --logdir {logdir} --noreload without --no-reward"
        )
    cell = MDRNNCell.from_config(mdrnn.config)
    cell.load_state_dict(mdrnn.state_dict())
    return cell.to(device).eval(), checkpoint


START_POOL = "start_latents.npz"  # beside M: the first frames' latents only (exported logdirs)


def save_start_pool(mu: np.ndarray, frame_offsets: np.ndarray, logdir: str | Path) -> Path:
    """Keep only each rollout's first-frame latent, in ``<logdir>/mdrnn/start_latents.npz`` (a few KB):
    enough to start dreams where real episodes start, without the whole latent cache."""
    import io

    from utils.checkpoint import atomic_write

    first = np.ascontiguousarray(mu[frame_offsets[:-1]], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, mu=first, frame_offsets=np.arange(len(first) + 1, dtype=np.int64))
    path = Path(logdir) / "mdrnn" / START_POOL
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def load_start_pool(logdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means (F, L) and frame offsets (R + 1,) of the latent cache ``<logdir>/mdrnn/latents.npz``,
    else of the first frames kept by :func:`save_start_pool` (then every start is a first frame)."""
    from data.latents import Latents, cache_path_for
    from utils.cli import UserError

    path = cache_path_for(logdir)
    if not path.is_file():
        small = Path(logdir) / "mdrnn" / START_POOL
        if small.is_file():
            with np.load(small) as npz:
                return npz["mu"], npz["frame_offsets"]
        raise UserError(f"no latent cache at {path}: run trainmdrnn.py --logdir {logdir} first")
    latents = Latents.load(path)
    if len(latents.frame_offsets) < 2:
        raise UserError(f"{path} holds no rollouts: regenerate it with trainmdrnn.py --logdir {logdir}")
    return latents.mu, latents.frame_offsets


class Dream:
    """What ``traincontroller.py --dream`` needs: M's cell, the start latents, and the settings.

    :meth:`fitness` scores a generation's candidates in the dream; :meth:`save_animation` decodes one
    dream of a controller with V into a GIF or MP4.
    """

    def __init__(
        self,
        logdir: str | Path,
        steps: int,
        temperature: float,
        done_mode: str = "threshold",
        start_mode: str = "first",
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.logdir = Path(logdir)
        self.cell, _ = load_dream_cell(logdir, device)
        self.mu, self.frame_offsets = load_start_pool(logdir)
        if self.mu.shape[1] != self.cell.latent:
            raise ValueError(f"latent cache has {self.mu.shape[1]} dims, M expects {self.cell.latent}")
        self.steps, self.temperature = steps, temperature
        self.done_mode, self.start_mode = done_mode, start_mode
        self.seed, self.device = seed, torch.device(device)

    def _streams(self, *keys: int) -> tuple[np.random.Generator, torch.Generator]:
        from utils.seeding import derive_seed

        rng = np.random.default_rng(derive_seed(self.seed, DREAM_EPISODES, *keys))
        gen = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, DREAM_EPISODES, *keys, 1)
        )
        return rng, gen

    def fitness(
        self, candidates: np.ndarray, n_samples: int, generation: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(C, P) candidates -> dream returns and lengths, each (C, n_samples).

        All candidates of a generation start from the same ``n_samples`` real latents (as they drive the
        same tracks in the real env); the draws come from streams of (seed, generation) alone.
        """
        rng, gen = self._streams(generation)
        starts = start_latents(self.mu, self.frame_offsets, n_samples, rng, self.start_mode).to(self.device)
        c = len(candidates)
        params = np.repeat(np.asarray(candidates, np.float32), n_samples, axis=0)
        returns, lengths = dream_returns(
            self.cell, params, starts.repeat(c, 1), self.steps, self.temperature, gen, self.done_mode
        )
        return returns.cpu().numpy().reshape(c, n_samples), lengths.cpu().numpy().reshape(c, n_samples)

    @torch.no_grad()
    def frames(self, params: np.ndarray, vae, key: int = 0) -> tuple[np.ndarray, float, int]:
        """One dream of controller ``params`` (P,) decoded by V: (T, 64, 64, 3) uint8, return, length."""
        from utils.visuals import to_uint8

        rng, gen = self._streams(0x51CE, key)
        start = start_latents(self.mu, self.frame_offsets, 1, rng, self.start_mode).to(self.device)
        record: list = []
        ret, length = dream_returns(
            self.cell,
            np.asarray(params, np.float32)[None],
            start,
            self.steps,
            self.temperature,
            gen,
            self.done_mode,
            record,
        )
        n = int(length[0])
        z = torch.cat([r[0] for r in record[:n]])
        frames = np.concatenate([to_uint8(vae.decode(z[i : i + 256])) for i in range(0, n, 256)])
        return frames, float(ret[0]), n

    def save_animation(self, params: np.ndarray, vae, path: str | Path, fps: int = 25) -> None:
        """Write one dream of ``params`` (P,), decoded by V, as a GIF or MP4 (3x enlarged)."""
        from utils.visuals import save_animation

        frames, _, _ = self.frames(params, vae)
        save_animation(list(frames.repeat(3, axis=1).repeat(3, axis=2)), path, fps=fps)


def add_dream_flags(parser) -> None:
    """traincontroller.py's flags for training inside M's dream."""
    from utils.cli import positive_float, positive_int

    parser.add_argument(
        "--dream",
        action="store_true",
        help="score candidates inside M's dream (needs M's reward head); evaluations stay in the real env",
    )
    parser.add_argument(
        "--temperature",
        type=positive_float,
        default=DEFAULT_TEMPERATURE,
        help="tau of the dream: mixture logits / tau, sigmas * sqrt(tau)",
    )
    parser.add_argument("--dream-steps", type=positive_int, default=1000, help="dream episode length cap")
    parser.add_argument(
        "--dream-done",
        choices=DONE_MODES,
        default="threshold",
        help="a dream ends when M's termination probability is > 0.5 (threshold) or on a Bernoulli draw",
    )
    parser.add_argument(
        "--dream-start",
        choices=START_MODES,
        default="first",
        help="dreams start from the first frame of a random training rollout, or any frame of one",
    )


def make_dream(args) -> tuple[Dream | None, Any]:
    """(Dream, V) for ``--dream``, else (None, None)."""
    if not getattr(args, "dream", False):
        return None, None
    from models.vae import load_vae
    from utils.device import resolve_device

    device = resolve_device(args.device)
    dream = Dream(
        args.logdir, args.dream_steps, args.temperature, args.dream_done, args.dream_start, args.seed, device
    )
    vae, _ = load_vae(args.logdir, device)
    return dream, vae


# The paper's best for VizDoom, and the best mean real-env transfer of those we measured on CarRacing
# (tau 0.5, 1.0, 1.15, 1.5; 3 seeds each; a tiny V and M, so a weak preference: see the README).
DEFAULT_TEMPERATURE = 1.15
# The namespace of dream start latents and draws (beside utils.seeding's TRAIN/EVAL/TEST_EPISODES).
DREAM_EPISODES = 4
