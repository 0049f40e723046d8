"""Shared fixtures. Name them after their stage: several stages add fixtures here."""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from data.rollouts import Rollout, rollout_name, save_rollout


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist (pyproject.toml: ``-n 2``) hands each worker whole test files, so a file's module
    fixtures are built once, and both Ray files to one worker, so two Ray clusters never start at once
    on one machine."""
    from xdist.scheduler import LoadScopeScheduling

    class WholeFiles(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "ray" if Path(path).name.startswith("test_ray") else path

    return WholeFiles(config, log)


def write_synthetic_rollouts(
    rootdir: Path,
    n: int = 4,
    steps: int = 15,
    preprocessing: str = "crop84",
    seed: int = 0,
    start: int = 0,
    labels: int = 0,
    **record,
) -> list[Path]:
    """``n`` rollouts of ``steps`` smooth random 64x64 frames (8x8 blocks), written with save_rollout;
    ``labels`` K > 0: frames mostly of one colour each, with state labels: each frame's K = the means of
    its three channels and of the grey of its four quadrants, over 255, then as many more normal draws as
    K asks (linear in the pixels, so V's state head can read all but the draws); ``record``: more fields
    of their :class:`Rollout` (``env``)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + n):
        coarse = rng.integers(0, 256, size=(steps + 1, 8, 8, 3), dtype=np.uint8)
        state = None
        if labels:  # mostly one colour a frame, which varies (block means barely do): labels to learn
            colour = rng.integers(0, 256, size=(steps + 1, 1, 1, 3))
            coarse = (0.75 * colour + 0.25 * coarse).astype(np.uint8)
        frames = coarse.repeat(8, axis=1).repeat(8, axis=2)
        if labels:
            grey = frames.mean(-1) / 255
            state = [frames.mean((1, 2)) / 255, *(grey[:, r:r + 32, c:c + 32].mean((1, 2))[:, None]
                                                  for r in (0, 32) for c in (0, 32))]  # fmt: skip
            state = np.concatenate(state, axis=1)[:, :labels]
            state = np.c_[state, rng.normal(size=(steps + 1, labels - state.shape[1]))].astype(np.float32)
        rollout = Rollout(
            observations=frames[:-1],
            actions=rng.uniform(-1, 1, size=(steps, 3)).astype(np.float32),
            rewards=rng.normal(size=steps).astype(np.float32),
            terminals=np.zeros(steps, bool),
            final_observation=frames[-1],
            truncated=True,
            preprocessing=preprocessing,
            seed=seed,
            index=i,
            labels=state,
            **record,
        )
        path = rootdir / rollout_name(i)
        save_rollout(path, rollout)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def vae_rollouts(tmp_path_factory) -> Path:
    """A directory of 6 synthetic rollouts (96 frames); tests must not modify it (copy it first)."""
    rootdir = tmp_path_factory.mktemp("vae_rollouts")
    write_synthetic_rollouts(rootdir, n=6, steps=15)
    return rootdir


@pytest.fixture(scope="session")
def pipeline_logdir(tmp_path_factory) -> Path:
    """A real tiny run of the first three stages: 4 CarRacing rollouts of 40 steps, V and M one epoch
    each. Tests must not modify it: copy it with ``copy_logdir`` first."""
    import trainmdrnn
    import trainvae
    from data import generation_script

    root = tmp_path_factory.mktemp("pipeline")
    data, logdir = root / "rollouts", root / "exp"
    generation_script.main(
        generation_script.build_parser().parse_args(
            ["--rootdir", str(data), "--rollouts", "4", "--threads", "2", "--max-steps", "40"]
        )
    )
    trainvae.main(
        trainvae.build_parser().parse_args(
            [
                "--logdir",
                str(logdir),
                "--dataset",
                str(data),
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--device",
                "cpu",
                "--test-fraction",
                "0.25",
            ]
        )
    )
    trainmdrnn.main(
        trainmdrnn.build_parser().parse_args(
            [
                "--logdir",
                str(logdir),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--seq-len",
                "16",
                "--device",
                "cpu",
            ]
        )
    )
    return logdir


def copy_logdir(src: Path, dst: Path) -> Path:
    """A private copy of a fixture's logdir (rollouts referenced by absolute path stay shared)."""
    import shutil

    shutil.copytree(src, dst)
    return dst


def hold_until_end(env, action: np.ndarray, seed: int) -> tuple[int, bool, bool, dict]:
    """Reset ``env`` with ``seed`` and step ``action`` until the episode ends: (steps, terminated,
    truncated, the last info)."""
    env.reset(seed=seed)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            return steps, terminated, truncated, info


ROOT = Path(__file__).resolve().parent.parent


def run_demo(preset: str, logdir: Path, *flags) -> str:
    """``python scripts/demo.py --preset PRESET --logdir LOGDIR FLAGS``, in this process (demo.py runs its
    stages in its own process too, so they share this one's imports and worker server): what it
    printed. It must succeed."""
    from scripts import demo

    argv = ["--preset", preset, "--logdir", str(logdir), *map(str, flags)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        demo.main(demo.build_parser().parse_args(argv))
    return printed.getvalue()


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``: its children, theirs, and so on."""
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def pool_workers(pid: int) -> list[int]:
    """The worker processes of ``pid``'s pools: the children of its fork server
    (``utils.processes.worker_context``)."""
    workers = []
    for child in children(pid):
        try:
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers += children(child)
        except FileNotFoundError:
            pass
    return workers


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_script(monkeypatch, capsys, script: str, *argv) -> tuple[int, str]:
    """``python <script> <argv>`` from the repository root, in this process (its ``__main__`` block, with
    the modules it imports already loaded): its exit status and stderr. For runs that stop at a check,
    where a new interpreter would spend seconds importing torch."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [str(ROOT / script), *map(str, argv)])
    capsys.readouterr()
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err
