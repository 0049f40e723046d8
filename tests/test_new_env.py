"""A second game through all four stages with tiny flags: CarRacing's discrete-action variant, whose only
code is envs/carracing_discrete.py. Also: every stage reads the env from rollouts and checkpoints and
refuses to mix envs, and files from before envs had specs still load as CarRacing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import test_controller
import traincontroller
import trainmdrnn
import trainvae
from data import generation_script
from data.frames import FrameCache
from data.rollouts import DataRecord, Rollout, list_rollouts, load_rollout, rollout_name, save_rollout
from experiment.logdir import load_agent_parts, load_data_record
from tests.conftest import write_synthetic_rollouts
from utils.checkpoint import load_checkpoint
from utils.cli import UserError

ENV = "carracing-discrete"


def parse(module, *argv):
    return module.build_parser().parse_args([str(a) for a in argv])


@pytest.fixture(scope="module")
def discrete_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Rollouts, V, M, C (real env) and a 2-episode test of the discrete game."""
    root = tmp_path_factory.mktemp("discrete")
    data, logdir = root / "rollouts", root / "exp"
    generation_script.main(
        parse(
            generation_script,
            "--env",
            ENV,
            "--rootdir",
            data,
            "--rollouts",
            4,
            "--threads",
            2,
            "--max-steps",
            40,
        )
    )
    trainvae.main(
        parse(trainvae, "--logdir", logdir, "--dataset", data, "--epochs", 1, "--batch-size", 32,
              "--latent", 8, "--device", "cpu", "--test-fraction", 0.25, "--nosamples")
    )  # fmt: skip
    trainmdrnn.main(
        parse(trainmdrnn, "--logdir", logdir, "--epochs", 1, "--batch-size", 4, "--seq-len", 16,
              "--hidden", 16, "--device", "cpu")
    )  # fmt: skip
    ctrl = ["--pop-size", 4, "--n-samples", 1, "--max-steps", 30, "--eval-every", 1, "--eval-episodes", 2]
    ctrl += ["--max-workers", 2, "--envs-per-worker", 2, "--generations", 1]
    summary = traincontroller.main(parse(traincontroller, "--logdir", logdir, *ctrl))
    return data, logdir, summary


def test_rollouts_record_the_env_and_its_actions(discrete_run):
    data, _, _ = discrete_run
    for path in list_rollouts(data):
        r = load_rollout(path)
        assert r.env == ENV and r.policy == "held" and r.actions.shape == (len(r), 5)
        assert (r.actions.sum(axis=1) == 1).all()  # one-hot agent actions, what M reads


def test_every_stage_takes_its_sizes_from_the_env_and_checkpoints(discrete_run):
    _, logdir, summary = discrete_run
    assert load_data_record(logdir).env == ENV
    assert load_checkpoint(logdir / "mdrnn" / "best.tar")["model_config"] == {
        "latent": 8, "action": 5, "hidden": 16, "gaussians": 5,
    }  # fmt: skip
    spec, params, _ = load_agent_parts(logdir)
    assert spec.env == ENV and spec.controller.action == 5
    assert params.shape == (5 * (8 + 16) + 5,) and summary["generation"] == 1


def test_test_and_dream_training_run_on_the_new_env(discrete_run, tmp_path):
    _, logdir, _ = discrete_run
    stats = test_controller.main(
        parse(test_controller, "--logdir", logdir, "--episodes", 2, "--max-steps", 30, "--max-workers", 2,
              "--out", tmp_path, "--record", tmp_path / "drive.gif")
    )  # fmt: skip
    saved = json.loads((tmp_path / "test_returns.json").read_text())
    assert saved["env"] == ENV and saved["returns"] == stats["returns"] and saved["steps"] == [30, 30]
    assert (tmp_path / "drive.gif").stat().st_size > 0
    dream = traincontroller.main(
        parse(traincontroller, "--logdir", logdir, "--dream", "--dream-steps", 10, "--pop-size", 4,
              "--n-samples", 2, "--generations", 2, "--eval-every", 2, "--eval-episodes", 1,
              "--max-steps", 20, "--max-workers", 1, "--noreload")
    )  # fmt: skip
    assert dream["generation"] == 2 and np.isfinite(dream["history"][-1]["best"])


def test_flags_the_env_does_not_have_are_one_line(tmp_path):
    with pytest.raises(UserError, match="--policy brown: carracing-discrete has held or controller"):
        generation_script.main(
            parse(generation_script, "--env", ENV, "--rootdir", tmp_path, "--policy", "brown")
        )
    with pytest.raises(UserError, match="unknown env 'doom'"):
        generation_script.main(parse(generation_script, "--env", "doom", "--rootdir", tmp_path))
    with pytest.raises(UserError, match="--preprocessing half"):
        generation_script.main(parse(generation_script, "--rootdir", tmp_path, "--preprocessing", "half"))
    assert not list(tmp_path.glob("*.npz"))


def test_a_dataset_mixing_envs_is_refused(discrete_run, tmp_path):
    data, _, _ = discrete_run
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in list_rollouts(data)[:2]:
        (mixed / path.name).write_bytes(path.read_bytes())
    write_synthetic_rollouts(mixed, n=1, start=10)  # a CarRacing rollout among them
    with pytest.raises(
        UserError, match=r"rollout_000010.npz: env 'carracing' differs from 'carracing-discrete'"
    ):
        FrameCache.open(mixed, verbose=False)


def test_files_from_before_env_specs_load_as_carracing(tmp_path, vae_rollouts):
    old = load_rollout(list_rollouts(vae_rollouts)[0])
    old.env = "CarRacing-v3"  # what generation recorded before envs had specs
    save_rollout(tmp_path / rollout_name(0), old)
    assert load_rollout(tmp_path / rollout_name(0)).env == "carracing"
    bad = Rollout(**{**old.__dict__, "env": "pong"})
    save_rollout(tmp_path / "bad" / rollout_name(0), bad)
    with pytest.raises(UserError, match=r"rollout_000000.npz: unknown env 'pong'"):
        load_rollout(tmp_path / "bad" / rollout_name(0))
    # A V checkpoint without a data record (the shipped agent's) names its dataset flag and CarRacing.
    legacy = {"preprocessing": "full", "args": {"dataset": "datasets/x", "test_fraction": 0.2}}
    record = DataRecord.from_checkpoint(legacy, "vae/best.tar")
    assert (record.env, record.preprocessing, record.test_fraction) == ("carracing", "full", 0.2)
    assert Path(record.rootdir).is_absolute()
