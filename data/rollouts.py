"""Rollout files: one compressed ``.npz`` per episode, written atomically, read with validation.

Layout of a file with T steps (time alignment: action t is taken on observation t):

=====================  ==================  ============================================================
key                    shape, dtype        meaning
=====================  ==================  ============================================================
``observations``       (T, 64, 64, 3) u8   o_0 .. o_{T-1}; o_0 is the frame returned by ``reset``
``actions``            (T, A) float32      a_t, the agent action taken on o_t (A: the env's action_size)
``rewards``            (T,) float32        r_t, received for a_t
``terminals``          (T,) bool           True only at a real termination caused by a_t (CarRacing:
                                           off the playfield, or lap finished); never at a time limit
``final_observation``  (64, 64, 3) u8      o_T, the frame after the last action (the next frame of
                                           step T-1), so every step has its successor
``truncated``          () bool             the episode ended on the time limit
``preprocessing``      () str              how frames were made (a mode of the env's spec)
``seed``, ``index``    () int64            the run's ``--seed`` and this rollout's index
``track_seed``         () int64            the seed passed to ``env.reset``
``policy``, ``env``    () str              the policy that acted, the env's spec name (see envs/)
``labels`` (optional)  (T + 1, K) float32  what the simulator's state said at each frame, o_0 .. o_T
                                           (the env spec's ``labels``; SocNavGym's): V's state head's
                                           targets (``trainvae.py --label-weight``), never C's inputs
=====================  ==================  ============================================================

Files written before envs had specs record ``env`` as the Gymnasium id ``CarRacing-v3``: they load as
``carracing``. A rollout directory holds one env and one preprocessing; :class:`DataRecord` is what V's
checkpoint keeps of it, so that later stages find the same rollouts, split and frames.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs import DEFAULT_ENV, get_env_spec
from utils.checkpoint import atomic_write
from utils.cli import UserError

FORMAT_VERSION = 1
DEFAULT_TEST_FRACTION = 0.1  # share of rollouts held out, the same split for V and M
ARRAY_KEYS = ("observations", "actions", "rewards", "terminals", "final_observation")
LABELS_KEY = "labels"  # optional: files of games without labels, and older files, have none
META_KEYS = ("truncated", "preprocessing", "seed", "index", "track_seed", "policy", "env", "format")


def rollout_name(index: int) -> str:
    """File name of rollout ``index``: sorted order is index order."""
    return f"rollout_{index:06d}.npz"


@dataclass
class Rollout:
    """One episode in memory; see the module docstring for shapes."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    final_observation: np.ndarray
    truncated: bool
    preprocessing: str
    seed: int = 0
    index: int = 0
    track_seed: int = 0
    policy: str = ""
    env: str = DEFAULT_ENV
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def frames(self) -> np.ndarray:
        """(T + 1, 64, 64, 3) o_0 .. o_T: every frame of the episode, the final one included."""
        return np.concatenate([self.observations, self.final_observation[None]], axis=0)

    @property
    def next_observations(self) -> np.ndarray:
        """(T, 64, 64, 3) o_1 .. o_T: the frame that followed each action."""
        return self.frames[1:]


def save_rollout(path: str | os.PathLike, rollout: Rollout) -> None:
    """Write ``rollout`` as a compressed ``.npz`` atomically (a killed run leaves no partial file)."""
    arrays = {k: getattr(rollout, k) for k in ARRAY_KEYS}
    meta = {k: np.asarray(getattr(rollout, k)) for k in META_KEYS if k != "format"}
    if rollout.labels is not None:
        arrays[LABELS_KEY] = np.asarray(rollout.labels, np.float32)
    atomic_write(path, lambda f: np.savez_compressed(f, format=np.int64(FORMAT_VERSION), **arrays, **meta))


def load_rollout(path: str | os.PathLike, frame_shape: tuple[int, int, int] = (64, 64, 3)) -> Rollout:
    """Read and validate one rollout file; any problem is a :class:`UserError` naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ARRAY_KEYS + META_KEYS if k not in npz.files]
            if missing:
                raise UserError(
                    f"{path}: not a rollout file of this project (missing {', '.join(missing)}); "
                    f"regenerate it with data/generation_script.py"
                )
            d = {k: npz[k] for k in ARRAY_KEYS + META_KEYS}
            labels = npz[LABELS_KEY] if LABELS_KEY in npz.files else None
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(
            f"{path}: corrupt or truncated rollout file ({err}); delete it and rerun "
            f"data/generation_script.py to regenerate it"
        ) from None
    try:
        env = get_env_spec(str(d["env"])).name
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    t = d["actions"].shape[0] if d["actions"].ndim == 2 else -1
    expected = {
        "observations": ((t, *frame_shape), np.uint8),
        "actions": ((t, get_env_spec(env).action_size), np.float32),
        "rewards": ((t,), np.float32),
        "terminals": ((t,), np.bool_),
        "final_observation": (frame_shape, np.uint8),
    }
    for key, (shape, dtype) in expected.items():
        if d[key].shape != shape or d[key].dtype != dtype:
            raise UserError(
                f"{path}: '{key}' is {d[key].dtype}{list(d[key].shape)}, expected "
                f"{np.dtype(dtype)}{list(shape)}; regenerate it with data/generation_script.py"
            )
    if t < 1:
        raise UserError(f"{path}: empty rollout; delete it and rerun data/generation_script.py")
    k = len(get_env_spec(env).label_names)
    if labels is not None and (labels.dtype != np.float32 or labels.shape != (t + 1, k) or not k):
        raise UserError(
            f"{path}: 'labels' is {labels.dtype}{list(labels.shape)}, expected float32{[t + 1, k]} (one row "
            f"per frame, one column per label {env} records); regenerate it with data/generation_script.py"
        )
    for key, values in (("actions", d["actions"]), ("rewards", d["rewards"]), ("labels", labels)):
        if values is not None and not np.isfinite(values).all():
            raise UserError(
                f"{path}: '{key}' holds NaN or infinite values; delete it and rerun data/generation_script.py"
            )
    return Rollout(
        observations=d["observations"],
        actions=d["actions"],
        rewards=d["rewards"],
        terminals=d["terminals"],
        final_observation=d["final_observation"],
        truncated=bool(d["truncated"]),
        preprocessing=str(d["preprocessing"]),
        seed=int(d["seed"]),
        index=int(d["index"]),
        track_seed=int(d["track_seed"]),
        policy=str(d["policy"]),
        env=env,
        labels=labels,
    )


def list_rollouts(rootdir: str | os.PathLike) -> list[Path]:
    """Every ``*.npz`` under ``rootdir`` (recursively, through linked directories), in sorted path order."""
    rootdir = Path(rootdir)
    if not rootdir.is_dir():
        raise UserError(
            f"dataset directory {rootdir} does not exist; generate rollouts with "
            f"data/generation_script.py --rootdir {rootdir}"
        )
    files, seen = [], set()
    # os.walk, not Path.rglob: before Python 3.13 rglob does not enter a linked directory, which would
    # silently drop a rollout set linked into a dataset; a directory reached twice (a loop) is read once.
    for folder, subdirs, names in os.walk(rootdir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        subdirs.sort()
        files += [Path(folder) / n for n in names if n.endswith(".npz") and not n.startswith(".")]
    files.sort()
    if not files:
        raise UserError(
            f"no rollout files (*.npz) under {rootdir}; generate them with "
            f"data/generation_script.py --rootdir {rootdir}"
        )
    return files


def _stable_unit(name: str) -> float:
    """A number in [0, 1) that depends only on ``name`` (not on Python's hash seed)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2.0**64


def split_names(names: list[str], test_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/test split of rollouts by name (path relative to the dataset root): the one
    split of every stage.

    A rollout is in the test set when a hash of its name falls below ``test_fraction``, so the split does
    not depend on listing order and adding rollouts never moves an existing one across. With two or more
    rollouts and ``test_fraction > 0`` both sets are non-empty. Returns (train, test), in the given order.
    """
    units = [_stable_unit(n) for n in names]
    test_idx = {i for i, u in enumerate(units) if u < test_fraction}
    if test_fraction > 0 and len(names) >= 2:
        order = sorted(range(len(names)), key=units.__getitem__)
        if not test_idx:
            test_idx = {order[0]}
        elif len(test_idx) == len(names):
            test_idx.discard(order[-1])
    train = [n for i, n in enumerate(names) if i not in test_idx]
    test = [n for i, n in enumerate(names) if i in test_idx]
    return train, test


@dataclass(frozen=True)
class DataRecord:
    """The rollouts a run was trained on, stored in V's checkpoint (``data``) for the stages after it.

    Attributes:
        rootdir: the rollout directory: absolute, or relative to the logdir in an exported agent.
        test_fraction: share of rollouts held out (:func:`split_names`).
        env: the env spec's name.
        preprocessing: the frame transform of every file.
    """

    rootdir: str
    test_fraction: float
    env: str
    preprocessing: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], path: str | os.PathLike) -> DataRecord:
        """The record of a V checkpoint; one written before records existed gives its dataset flag, test
        fraction and preprocessing, and CarRacing."""
        if "data" in checkpoint:
            return cls(**checkpoint["data"])
        args = checkpoint.get("args", {})
        if "preprocessing" not in checkpoint:
            raise UserError(f"{path}: not a VAE checkpoint of this project (no data record); retrain V")
        return cls(
            rootdir=str(Path(args.get("dataset", "datasets/carracing")).resolve()),
            test_fraction=float(args.get("test_fraction", 0.1)),
            env=DEFAULT_ENV,
            preprocessing=str(checkpoint["preprocessing"]),
        )
