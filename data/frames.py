"""Every frame of a rollout directory in one memory-mapped uint8 file, and random batches from it.

Decompressing ``.npz`` files is the slow part of reading rollouts, so it is done once: the frames of
all files (each rollout's ``observations`` followed by its ``final_observation``, T + 1 frames) are
written in sorted file order to ``<cache_dir>/frames-<key>.u8``, a raw (N, 64, 64, 3) uint8 array,
with ``frames-<key>.json`` beside it (per-file offsets and lengths, env and preprocessing) and, when
every file carries state labels (data/rollouts.py), ``labels-<key>.f32``: their (N, K) float32 rows, one
per frame in the same order. ``<key>`` hashes the list of files with their sizes and modification times,
so adding, removing or rewriting a rollout builds a new cache (and deletes the old one). Every file is
written atomically and the index last, so a killed build leaves no cache that looks complete.

Batches are fancy-indexed straight out of the memmap (no per-frame Python, no PIL): one numpy
gather and one torch conversion per batch.

Usage (what trainvae.py does)::

    cache = FrameCache.open(rootdir)                 # builds it on first use
    train, test = cache.split(test_fraction)         # data.rollouts.split_names, as every stage
    for frames in cache.batches(train, batch_size, rng=np.random.default_rng(seed)):
        x = frames_to_tensor(frames, device)         # (B, 3, 64, 64) float
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.rollouts import list_rollouts, load_rollout, split_names
from envs import DEFAULT_ENV
from utils.checkpoint import atomic_write
from utils.cli import UserError
from utils.locking import check_not_in_use, waiting_for

CACHE_VERSION = 1
FRAME_SHAPE = (64, 64, 3)
FRAME_BYTES = int(np.prod(FRAME_SHAPE))


def cache_key(files: list[Path], rootdir: Path) -> str:
    """A hash of (relative path, size, mtime) of every file, the cache format and the frame shape."""
    h = hashlib.sha1(f"v{CACHE_VERSION} {FRAME_SHAPE}".encode())
    for p in files:
        st = p.stat()
        h.update(f"\n{p.relative_to(rootdir)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _read_frames(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str, str]]:
    """(T + 1, 64, 64, 3) uint8 frames of one validated rollout file, its (T + 1, K) labels (None: it
    has none) and its (env, preprocessing)."""
    rollout = load_rollout(path, FRAME_SHAPE)
    return rollout.frames, rollout.labels, (rollout.env, rollout.preprocessing)


@dataclass
class FrameCache:
    """The frames of a rollout directory; ``frames`` is a read-only (N, 64, 64, 3) uint8 memmap.

    ``files[i]`` (relative to ``rootdir``) owns frames ``offsets[i] : offsets[i] + lengths[i]``; the
    last of them is the rollout's ``final_observation``. ``labels`` is a read-only (N, K) float32 memmap
    of the state labels of the same frames when every file has them, else None (``unlabelled`` files had
    none).
    """

    rootdir: Path
    frames: np.ndarray
    files: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    env: str
    preprocessing: str
    skipped: list[str]
    path: Path
    labels: np.ndarray | None = None
    unlabelled: int = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @classmethod
    def open(
        cls,
        rootdir: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        skip_bad_files: bool = False,
        workers: int = 1,
        verbose: bool = True,
    ) -> FrameCache:
        """Open the cache of ``rootdir``'s rollouts, building it first when missing or out of date.

        Args:
            cache_dir: where the cache lives; default ``<rootdir>/.cache``.
            skip_bad_files: warn about and leave out unreadable files and files whose env or
                preprocessing differs from the first good file; otherwise each is a :class:`UserError`.
            workers: threads decompressing files during a build.
        """
        rootdir = Path(rootdir)
        files = list_rollouts(rootdir)
        cache_dir = Path(cache_dir) if cache_dir is not None else rootdir / ".cache"
        check_not_in_use(rootdir, f"rollout directory {rootdir}")  # not while rollouts are being written
        key = cache_key(files, rootdir)
        data_path, index_path = cache_dir / f"frames-{key}.u8", cache_dir / f"frames-{key}.json"
        labels_path = cache_dir / f"labels-{key}.f32"

        def build(damaged: bool = False) -> None:
            # One build at a time per cache directory: a second V training on the dataset waits, then
            # finds the cache built (a build starts by removing the temporaries a killed build left).
            try:
                with waiting_for(cache_dir / ".build.lock"):
                    if damaged or not (index_path.is_file() and data_path.is_file()):
                        paths = data_path, index_path, labels_path
                        _build(rootdir, files, *paths, skip_bad_files, workers, verbose)
            except OSError as err:
                raise UserError(
                    f"cannot write the frame cache in {cache_dir} ({err.strerror}); "
                    f"pass --cache-dir with a writable directory"
                ) from None

        if not (index_path.is_file() and data_path.is_file()):
            build()
        try:
            index = json.loads(index_path.read_text())
        except (ValueError, UnicodeDecodeError):  # damaged (it is written atomically, so not by us)
            build(damaged=True)
            index = json.loads(index_path.read_text())
        if index["skipped"] and not skip_bad_files:
            raise UserError(
                f"{rootdir}: unreadable or mismatched rollout files {index['skipped'][:3]} "
                f"(see {index_path}); delete them, or pass --skip-bad-files to train without them"
            )
        n = int(index["n_frames"])
        if data_path.stat().st_size != n * FRAME_BYTES:
            raise UserError(f"frame cache {data_path} has the wrong size; delete it and rerun")
        frames = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, *FRAME_SHAPE))
        k, labels = int(index.get("label_size", 0)), None  # caches built before labels existed: none
        if k:
            if not labels_path.is_file() or labels_path.stat().st_size != n * k * 4:
                raise UserError(
                    f"frame cache {labels_path} is missing or has the wrong size; delete it and rerun"
                )
            labels = np.memmap(labels_path, dtype=np.float32, mode="r", shape=(n, k))
        return cls(
            rootdir=rootdir,
            frames=frames,
            files=index["files"],
            offsets=np.asarray(index["offsets"], dtype=np.int64),
            lengths=np.asarray(index["lengths"], dtype=np.int64),
            env=index.get("env", DEFAULT_ENV),  # caches built before envs had specs: CarRacing
            preprocessing=index["preprocessing"],
            skipped=index["skipped"],
            path=data_path,
            labels=labels,
            unlabelled=int(index.get("unlabelled", 0)),
        )

    def _key(self, file: str | Path) -> str:
        """A rollout's name in :attr:`files`: its path relative to the root, given either that or a path
        that starts with the root (absolute, or relative to the working directory like the root)."""
        try:
            return str(Path(file).relative_to(self.rootdir))
        except ValueError:
            return str(file)

    def frame_indices(self, files: list[str | Path]) -> np.ndarray:
        """(N,) int64 indices into ``frames`` of every frame of ``files`` (see :meth:`_key`)."""
        where = {f: i for i, f in enumerate(self.files)}
        rel = [self._key(f) for f in files]
        parts = [
            np.arange(self.offsets[where[f]], self.offsets[where[f]] + self.lengths[where[f]]) for f in rel
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def rollout_frames(self, file: str | Path) -> np.ndarray:
        """(T + 1, 64, 64, 3) frames of one rollout: its observations, then its final_observation."""
        i = self.files.index(self._key(file))
        return self.frames[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def split(self, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices of the train and test rollouts of :func:`data.rollouts.split_names`."""
        train, test = split_names(self.files, test_fraction)
        return self.frame_indices(train), self.frame_indices(test)

    def batches(
        self,
        indices: np.ndarray,
        batch_size: int,
        rng: np.random.Generator | None = None,
        max_batches: int | None = None,
        drop_last: bool = False,
        with_labels: bool = False,
    ) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 (B, 64, 64, 3) CPU tensors of ``frames[indices]``, shuffled by ``rng`` when given; with
        ``with_labels``, (frames, labels) pairs: the (B, K) float32 labels of the same frames.

        Within a batch the indices are sorted, so reads from the memmap go forward through the file.
        """
        if with_labels and self.labels is None:
            raise ValueError(f"the rollouts of {self.rootdir} carry no labels")
        order = rng.permutation(indices) if rng is not None else np.asarray(indices)
        n_batches = len(order) // batch_size if drop_last else -(-len(order) // batch_size)
        if max_batches is not None:
            n_batches = min(n_batches, max_batches)
        for b in range(n_batches):
            idx = np.sort(order[b * batch_size : (b + 1) * batch_size])
            frames = torch.from_numpy(self.frames[idx])
            yield (frames, torch.from_numpy(self.labels[idx])) if with_labels else frames


def _build(
    rootdir: Path,
    files: list[Path],
    data_path: Path,
    index_path: Path,
    labels_path: Path,
    skip_bad_files: bool,
    workers: int,
    verbose: bool,
) -> None:
    cache_dir = data_path.parent
    offsets, lengths, kept, skipped, labels = [], [], [], [], []
    kind: tuple[str, str] | None = None  # (env, preprocessing) of the first good file
    first_file: Path | None = None

    def reject(path: Path, message: str) -> None:
        if not skip_bad_files:
            raise UserError(message)
        warnings.warn(f"skipping {message}", stacklevel=3)
        skipped.append(str(path.relative_to(rootdir)))

    def write(f) -> None:
        nonlocal kind, first_file
        n = 0
        # Decompress up to 2 * workers files ahead, write them in order: bounded memory, sorted layout.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque = deque()
            todo = iter(files)
            bar = tqdm(total=len(files), desc="frame cache", unit="file", disable=not verbose, leave=False)
            while True:
                while len(pending) < 2 * max(1, workers):
                    path = next(todo, None)
                    if path is None:
                        break
                    pending.append((path, pool.submit(_read_frames, path)))
                if not pending:
                    break
                path, fut = pending.popleft()
                bar.update(1)
                try:
                    frames, these_labels, this = fut.result()
                except UserError as err:
                    reject(path, str(err))
                    continue
                if kind is None:
                    kind, first_file = this, path
                elif this != kind:
                    what = "env" if this[0] != kind[0] else "preprocessing"
                    reject(
                        path,
                        f"{path}: {what} {this[what == 'preprocessing']!r} differs from "
                        f"{kind[what == 'preprocessing']!r} of {first_file}; one dataset holds one env "
                        f"and one preprocessing (move the other files elsewhere)",
                    )
                    continue
                f.write(np.ascontiguousarray(frames).data)
                labels.append(these_labels)
                offsets.append(n)
                lengths.append(len(frames))
                kept.append(str(path.relative_to(rootdir)))
                n += len(frames)
            bar.close()

    cache_dir.mkdir(parents=True, exist_ok=True)
    for pattern in (".frames-*.tmp", ".labels-*.tmp"):  # left by a killed build
        for stale in cache_dir.glob(pattern):
            stale.unlink(missing_ok=True)
    try:
        atomic_write(data_path, write)
    except OSError as err:
        raise UserError(
            f"cannot write the frame cache {data_path} ({err.strerror}); "
            f"pass --cache-dir with a writable directory"
        ) from None
    if not kept:
        data_path.unlink(missing_ok=True)
        raise UserError(f"{rootdir}: no usable rollout file (all {len(files)} skipped)")
    unlabelled = sum(x is None for x in labels)
    label_size = 0 if unlabelled else labels[0].shape[1]  # one env per dataset: one K
    if label_size:  # before the index, which is written last
        atomic_write(labels_path, lambda f: f.write(np.ascontiguousarray(np.concatenate(labels)).data))
    index = {
        "version": CACHE_VERSION,
        "frame_shape": list(FRAME_SHAPE),
        "n_frames": int(sum(lengths)),
        "files": kept,
        "offsets": offsets,
        "lengths": lengths,
        "env": kind[0],
        "preprocessing": kind[1],
        "skipped": skipped,
        "label_size": label_size,
        "unlabelled": unlabelled,
    }
    atomic_write(index_path, lambda f: f.write(json.dumps(index).encode()))
    for pattern in ("frames-*", "labels-*"):  # caches of earlier versions of the directory
        for old in cache_dir.glob(pattern):
            if old not in (data_path, index_path, labels_path):
                old.unlink(missing_ok=True)
    if verbose:
        size = index["n_frames"] * FRAME_BYTES / 2**20
        print(
            f"frame cache: {index['n_frames']} frames of {len(kept)} rollouts, {size:.0f} MiB at {data_path}"
        )
