"""trainvae.py end to end on tiny synthetic rollouts: a run, resume, --noreload, SIGKILL, determinism."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import trainvae
from data.rollouts import Rollout, rollout_name, save_rollout
from envs import socnav
from experiment.logdir import load_data_record, load_vae
from tests.conftest import write_synthetic_rollouts
from utils.checkpoint import load_checkpoint
from utils.cli import UserError

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT_KEYS = {
    "model", "optimizer", "scheduler", "early_stopping", "epoch", "step", "best_loss", "test_loss",
    "model_config", "data", "args", "history", "rng", "stage",
}  # fmt: skip


def flags(rollouts, logdir, *extra):
    return trainvae.build_parser().parse_args(
        ["--dataset", str(rollouts), "--logdir", str(logdir), "--batch-size", "16", "--device", "cpu",
         "--test-fraction", "0.3", "--lr", "1e-3", "--max-batches", "3", *extra]
    )  # fmt: skip


def losses(history):
    return [(h["epoch"], h["train_loss"], h["test_loss"]) for h in history]


def test_one_epoch_run(vae_rollouts, tmp_path):
    history = trainvae.main(flags(vae_rollouts, tmp_path, "--epochs", "1", "--latent", "8"))
    assert [h["epoch"] for h in history] == [1]
    out = tmp_path / "vae"
    for name in ("checkpoint.tar", "best.tar", "args.json"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "prior_epoch001.png",
        "reconstruction_epoch001.png",
    ]
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    checkpoint = load_checkpoint(out / "checkpoint.tar")
    assert set(checkpoint) == CHECKPOINT_KEYS
    assert checkpoint["model_config"] == {"latent": 8}
    record = load_data_record(tmp_path)
    assert (record.env, record.preprocessing, record.test_fraction) == ("carracing", "crop84", 0.3)
    assert record.rootdir == str(vae_rollouts.resolve())
    vae, best = load_vae(tmp_path, "cpu")
    assert vae.latent == 8 and not vae.training and best["epoch"] == 1
    mu, _ = vae.encode(torch.rand(2, 3, 64, 64))
    assert mu.shape == (2, 8)


def test_resume_continues_and_equals_an_uninterrupted_run(vae_rollouts, tmp_path):
    straight = trainvae.main(flags(vae_rollouts, tmp_path / "a", "--epochs", "2", "--nosamples"))
    trainvae.main(flags(vae_rollouts, tmp_path / "b", "--epochs", "1", "--nosamples"))
    first = load_checkpoint(tmp_path / "b" / "vae" / "checkpoint.tar")
    resumed = trainvae.main(flags(vae_rollouts, tmp_path / "b", "--epochs", "2", "--nosamples"))
    assert [h["epoch"] for h in resumed] == [1, 2]
    # the same losses to the bit: model, optimizer moments and step count, and random streams all resumed
    assert losses(resumed) == losses(straight)
    second = load_checkpoint(tmp_path / "b" / "vae" / "checkpoint.tar")
    step_of = lambda c: max(int(s["step"]) for s in c["optimizer"]["state"].values())
    assert step_of(second) == 2 * step_of(first) > 0
    assert second["epoch"] == 2 and second["best_loss"] == min(h["test_loss"] for h in resumed)
    best = load_checkpoint(tmp_path / "b" / "vae" / "best.tar")
    assert best["test_loss"] == best["best_loss"] == second["best_loss"]
    # nothing left to do: a rerun trains no epoch and keeps the history
    assert losses(
        trainvae.main(flags(vae_rollouts, tmp_path / "b", "--epochs", "2", "--nosamples"))
    ) == losses(straight)
    # --noreload starts over: epoch 1 again, the same losses as the first epoch of the same seed
    fresh = trainvae.main(flags(vae_rollouts, tmp_path / "b", "--epochs", "1", "--nosamples", "--noreload"))
    assert losses(fresh) == losses(straight)[:1]
    assert load_checkpoint(tmp_path / "b" / "vae" / "checkpoint.tar")["epoch"] == 1


def test_seed_gives_the_same_losses(vae_rollouts, tmp_path):
    a = trainvae.main(flags(vae_rollouts, tmp_path / "a", "--epochs", "1", "--nosamples", "--seed", "3"))
    b = trainvae.main(flags(vae_rollouts, tmp_path / "b", "--epochs", "1", "--nosamples", "--seed", "3"))
    c = trainvae.main(flags(vae_rollouts, tmp_path / "c", "--epochs", "1", "--nosamples", "--seed", "4"))
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)


def test_early_stopping_state_is_kept(vae_rollouts, tmp_path):
    # lr so small that the test loss cannot improve after epoch 1 at this precision: patience 1 stops at 2
    args = ["--nosamples", "--lr", "1e-12", "--patience", "1"]
    history = trainvae.main(flags(vae_rollouts, tmp_path, "--epochs", "5", *args))
    checkpoint = load_checkpoint(tmp_path / "vae" / "checkpoint.tar")
    assert len(history) == checkpoint["epoch"] == 2
    assert checkpoint["early_stopping"]["bad_epochs"] == 1
    again = trainvae.main(flags(vae_rollouts, tmp_path, "--epochs", "5", *args))
    assert len(again) == len(history)  # still stopped after a restart


def test_v_learns_its_held_out_loss_falls(tmp_path):
    """Four short epochs on frames with something to learn (each frame one colour, the colours varying
    smoothly): V's held-out loss must fall each epoch (it stays put with a learning rate of 0)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        t = np.linspace(0, 1, 17)[:, None] + rng.uniform(0, 1, 3)[None]
        colours = (127.5 + 100 * np.sin(2 * np.pi * t)).astype(np.uint8)  # (17, 3)
        frames = np.broadcast_to(colours[:, None, None, :], (17, 64, 64, 3)).copy()
        save_rollout(
            tmp_path / "rollouts" / rollout_name(i),
            Rollout(observations=frames[:-1], actions=np.zeros((16, 3), np.float32),
                    rewards=np.zeros(16, np.float32), terminals=np.zeros(16, bool),
                    final_observation=frames[-1], truncated=True, preprocessing="crop84"),
        )  # fmt: skip
    history = trainvae.main(
        flags(
            tmp_path / "rollouts",
            tmp_path / "exp",
            "--epochs",
            "4",
            "--latent",
            "8",
            "--nosamples",
            "--lr",
            "5e-3",
        )
    )
    test = [h["test_loss"] for h in history]
    assert all(a > b for a, b in zip(test, test[1:], strict=False)) and test[-1] < 0.99 * test[0], test


def test_resume_refuses_another_model_dataset_or_split(vae_rollouts, tmp_path):
    """best.tar is ranked on the held-out rollouts of the run's own dataset and split, and the run trains
    its own model: a resume asking for another of any is one line (and --noreload starts over)."""
    logdir = tmp_path / "exp"
    trainvae.main(flags(vae_rollouts, logdir, "--epochs", "1", "--latent", "8", "--nosamples"))
    other = tmp_path / "other"
    shutil.copytree(vae_rollouts, other, ignore=shutil.ignore_patterns(".cache", ".lock"))
    refused = [
        (["--latent", "16"], "is a model with --latent 8, not 16"),
        (["--test-fraction", "0.5"], "trained with --test-fraction 0.3"),
        (["--dataset", str(other)], f"was trained on {vae_rollouts.resolve()}, not --dataset"),
    ]
    for extra, message in refused:
        with pytest.raises(UserError, match=message):
            trainvae.main(flags(vae_rollouts, logdir, "--epochs", "2", "--nosamples", *extra))
    assert load_checkpoint(logdir / "vae" / "checkpoint.tar")["epoch"] == 1
    history = trainvae.main(flags(vae_rollouts, logdir, "--epochs", "2", "--latent", "8", "--nosamples"))
    assert [h["epoch"] for h in history] == [1, 2]


def test_user_errors(vae_rollouts, tmp_path):
    with pytest.raises(UserError, match="no rollout files"):
        trainvae.main(flags(tmp_path, tmp_path / "exp", "--epochs", "1"))
    with pytest.raises(UserError, match="--device"):
        trainvae.main(flags(vae_rollouts, tmp_path / "exp", "--device", "tpu"))


def test_sigkill_mid_epoch_leaves_loadable_checkpoints(vae_rollouts, tmp_path):
    logdir = tmp_path / "exp"
    cmd = [sys.executable, str(REPO / "trainvae.py"), "--dataset", str(vae_rollouts), "--logdir", str(logdir),
           "--epochs", "1000", "--batch-size", "8", "--max-batches", "2", "--device", "cpu", "--nosamples",
           "--test-fraction", "0.3"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = logdir / "vae" / "checkpoint.tar"
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert checkpoint.exists(), "no checkpoint within 60 s"
        time.sleep(0.3)  # into a later epoch, possibly mid-write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    state = load_checkpoint(checkpoint)
    assert state["epoch"] >= 1
    load_vae(logdir, "cpu")
    history = trainvae.main(
        flags(
            vae_rollouts,
            logdir,
            "--epochs",
            str(state["epoch"] + 1),
            "--nosamples",
            "--batch-size",
            "8",
            "--max-batches",
            "2",
        )
    )
    assert [h["epoch"] for h in history] == list(range(1, state["epoch"] + 2))
    assert not list((logdir / "vae").glob(".*.tmp"))


def test_salient_weight_counts_the_pixels_the_game_marks(vae_rollouts, tmp_path, monkeypatch):
    """--salient-weight W: each pixel the game marks salient (SocNavGym's ego view: by default the goal's
    red and people's blue; --salient coloured adds furniture) weighs W in V's loss, every other 1, in
    training and on held-out frames (--salient graded: furniture 1 + 0.3 (W - 1)); a game that marks none
    refuses the flag in one line, as does a mask the game does not have, and 1 is the paper's loss."""
    rollouts = tmp_path / "socnav"
    write_synthetic_rollouts(rollouts, n=4, steps=10, preprocessing="full", env="socnav-ego")
    seen, loss = [], trainvae.vae_loss

    def spy(recon, x, mu, logsigma, kl_tolerance, weights=None):
        seen.append((x.detach().clone(), weights))
        return loss(recon, x, mu, logsigma, kl_tolerance, weights)

    monkeypatch.setattr(trainvae, "vae_loss", spy)
    trainvae.main(flags(rollouts, tmp_path / "w", "--epochs", "1", "--nosamples", "--salient-weight", "10"))
    assert len(seen) >= 2  # training batches and held-out ones
    marked = 0
    for x, weights in seen:
        salient = socnav.ego_salient(x)
        torch.testing.assert_close(weights, 1 + 9 * salient.float())
        marked += int(salient.sum())
    assert marked > 0  # the random blocks hold some red and blue
    seen.clear()
    trainvae.main(flags(rollouts, tmp_path / "c", "--epochs", "1", "--nosamples", "--salient-weight", "3",
                        "--salient", "coloured"))  # fmt: skip
    assert seen and all(torch.equal(w, 1 + 2 * socnav.ego_coloured(x).float()) for x, w in seen)
    seen.clear()
    trainvae.main(flags(rollouts, tmp_path / "g", "--epochs", "1", "--nosamples", "--salient-weight", "11",
                        "--salient", "graded"))  # fmt: skip
    levels = set()
    for x, weights in seen:  # goal and people 11, furniture 1 + 10 x 0.3, the rest 1
        want = torch.ones_like(weights).masked_fill(socnav.ego_coloured(x), 4)
        want = want.masked_fill(socnav.ego_salient(x), 11)
        torch.testing.assert_close(weights, want)
        levels |= set(weights.unique().tolist())
    assert levels == {1, 4, 11}
    seen.clear()
    trainvae.main(flags(rollouts, tmp_path / "plain", "--epochs", "1", "--nosamples"))
    assert seen and all(weights is None for _, weights in seen)
    marks = "goal-people or coloured or graded$"  # every mask the game has, by name
    with pytest.raises(UserError, match=f"--salient people: socnav-ego marks {marks}"):
        trainvae.main(flags(rollouts, tmp_path / "p", "--salient-weight", "2", "--salient", "people"))
    # A resumed V keeps the loss it was trained on.
    for other, asked in ((("--salient-weight", "3"), "3.0"), ((), "1.0")):
        held = f"--salient-weight 10.0, not --salient-weight {asked}"
        with pytest.raises(UserError, match=f"trained with {held}: pass --salient-weight 10.0 to resume"):
            trainvae.main(flags(rollouts, tmp_path / "w", "--epochs", "2", *other))
    with pytest.raises(UserError, match="trained with no --salient, not --salient coloured: drop --salient"):
        trainvae.main(flags(rollouts, tmp_path / "w", "--epochs", "2", "--salient-weight", "10",
                            "--salient", "coloured"))  # fmt: skip
    with pytest.raises(UserError, match="--salient-weight 2.0: carracing marks no pixels salient"):
        trainvae.main(flags(vae_rollouts, tmp_path / "car", "--epochs", "1", "--salient-weight", "2"))


def test_the_state_head_reads_the_labels_and_stays_out_of_acting(tmp_path):
    """--label-weight W: V's state head, a linear map from mu to the rollouts' state labels standardised on
    the training frames, adds W x its squared error to the loss; on labels that are linear in the pixels
    its held-out error per label falls far below the 1 of knowing nothing. The head and its label
    statistics are in the checkpoint, not in what an agent acts with; a resumed V keeps its weight; rollouts
    without labels, or a game that records none, refuse the flag in one line."""
    rollouts = tmp_path / "socnav"
    write_synthetic_rollouts(rollouts, n=6, steps=30, preprocessing="full", env="socnav-ego", labels=7)
    extra = ("--epochs", "6", "--nosamples", "--latent", "8", "--max-batches", "12", "--label-weight", "50")
    history = trainvae.main(flags(rollouts, tmp_path / "head", *extra))
    label = [h["test_label"] for h in history]
    assert label[-1] < 0.35 and label[-1] < 0.5 * label[0], label
    vae, checkpoint = load_vae(tmp_path / "head")
    assert checkpoint["model_config"] == {"latent": 8, "labels": 7}
    frames = torch.cat([torch.from_numpy(np.load(p)["labels"]) for p in sorted(rollouts.glob("*.npz"))])
    assert vae.label_mean.shape == (7,) and (vae.label_std > 0).all()
    # standardised on the training frames: near the mean and spread of all of them
    torch.testing.assert_close(vae.label_mean, frames.mean(0), atol=0.05, rtol=0)
    assert not any(k.startswith(("fc_label", "label_")) for k in vae.acting_state_dict())
    with pytest.raises(UserError, match="trained with --label-weight 50.0, not --label-weight 5.0"):
        trainvae.main(flags(rollouts, tmp_path / "head", *extra[:-1], "5"))
    plain = tmp_path / "plain"
    write_synthetic_rollouts(plain, n=3, steps=5, preprocessing="full", env="socnav-ego")
    with pytest.raises(
        UserError, match="--label-weight 1.0: .*3 of its rollouts carry none .*generation_script"
    ):
        trainvae.main(flags(plain, tmp_path / "p", "--label-weight", "1"))
    write_synthetic_rollouts(tmp_path / "car", n=3)
    with pytest.raises(UserError, match="--label-weight 1.0: .*carracing records none: leave it at 0"):
        trainvae.main(flags(tmp_path / "car", tmp_path / "c", "--label-weight", "1"))
