"""M's data (latent cache, sequence windows) and trainmdrnn.py run for real on tiny rollouts."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import trainmdrnn
from data.latents import Latents, load_or_build_latents, make_batch, sequence_windows
from data.rollouts import Rollout, list_rollouts, rollout_name, save_rollout
from experiment.logdir import Logdir, load_vae
from models.vae import VAE, frames_to_tensor
from tests.conftest import copy_logdir
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import UserError

ROOT = Path(__file__).resolve().parent.parent


def synthetic_latents(lengths, latent=4, terminated=()):
    """Latents whose mu encodes (rollout, frame) so alignment can be read back; sigma = 0."""
    mus, acts, rews, terms, fo, so = [], [], [], [], [0], [0]
    for r, t in enumerate(lengths):
        frames = np.arange(t + 1, dtype=np.float32)
        mus.append(np.stack([np.full(t + 1, r, np.float32), frames] + [frames * 0] * (latent - 2), 1))
        acts.append(np.stack([np.arange(t, dtype=np.float32)] * 3, 1))
        rews.append(np.arange(t, dtype=np.float32) + 100 * r)
        term = np.zeros(t, bool)
        term[-1] = r in terminated
        terms.append(term)
        fo.append(fo[-1] + t + 1)
        so.append(so[-1] + t)
    mu = np.concatenate(mus)
    return Latents(
        mu=mu,
        logsigma=np.full_like(mu, -np.inf),
        actions=np.concatenate(acts),
        rewards=np.concatenate(rews),
        terminals=np.concatenate(terms),
        frame_offsets=np.array(fo),
        step_offsets=np.array(so),
        names=np.array([f"r{i}" for i in range(len(lengths))]),
    )


@pytest.mark.parametrize("random_offsets", [False, True])
def test_windows_cover_every_step_once(random_offsets):
    lat = synthetic_latents([37, 5, 16, 1])
    rng = np.random.default_rng(0) if random_offsets else None
    windows = sequence_windows(lat, np.arange(4), 16, rng)
    batch = make_batch(lat, windows, 16, torch.device("cpu"))
    mask = batch["mask"].numpy().astype(bool)
    rollout = batch["latents"][..., 0].numpy()[mask].astype(int)
    step = batch["latents"][..., 1].numpy()[mask].astype(int)
    seen = sorted(zip(rollout.tolist(), step.tolist(), strict=True))
    assert seen == [(r, t) for r, n in enumerate([37, 5, 16, 1]) for t in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_rollouts_start_at_a_window_start_and_padding_only_ends_windows(seed):
    """M acts and dreams from the zero state at a rollout's step 0: training must run step 0 from it too,
    so step 0 is always a window's first step, and no padding comes before a counted step."""
    lengths = [37, 5, 16, 1, 64]
    lat = synthetic_latents(lengths)
    windows = sequence_windows(lat, np.arange(len(lengths)), 16, np.random.default_rng(seed))
    assert (windows[:, 1] >= 0).all()
    batch = make_batch(lat, windows, 16, torch.device("cpu"))
    mask = batch["mask"].numpy().astype(bool)
    assert (np.sort(mask, axis=1)[:, ::-1] == mask).all()  # each window's counted steps are a prefix
    step = batch["latents"][..., 1].numpy()
    assert (step[:, 0] == windows[:, 1]).all()
    assert sorted(windows[step[:, 0] == 0, 0].tolist()) == list(range(len(lengths)))
    # The borders still move between epochs: first windows of random lengths.
    firsts = {int(w[2]) for w in windows if w[1] == 0 and lengths[w[0]] >= 16}
    assert firsts and firsts != {16} or seed == 0


def test_first_steps_loss_is_m_run_from_the_zero_state(tmp_path):
    """``first20`` is the mean loss of each held-out rollout's first 20 steps, M run from the zero state
    one step at a time (the cell that acts and dreams), whatever --seq-len tiles the rest."""
    from torch import distributions as D

    from models.mdrnn import MDRNN, MDRNNCell

    torch.manual_seed(0)
    lat = synthetic_latents([37, 12, 25], latent=4, terminated=(1,))
    lat.mu = np.random.default_rng(0).normal(size=lat.mu.shape).astype(np.float32)
    mdrnn = MDRNN(latent=4, action=3, hidden=8, gaussians=2)
    cell = MDRNNCell.from_config(mdrnn.config)
    cell.load_state_dict(mdrnn.state_dict())
    ids = np.arange(3)
    total, n = 0.0, 0
    with torch.no_grad():
        for r in ids:
            f0, s0, steps = lat.frame_offsets[r], lat.step_offsets[r], min(int(lat.lengths[r]), 20)
            hidden = None
            for t in range(steps):
                z = torch.from_numpy(lat.mu[f0 + t : f0 + t + 1])
                a = torch.from_numpy(lat.actions[s0 + t : s0 + t + 1])
                out = cell(a, z, hidden)
                hidden = out.hidden
                target = torch.from_numpy(lat.mu[f0 + t + 1 : f0 + t + 2])
                mixture = D.MixtureSameFamily(D.Categorical(logits=out.logpi), D.Normal(out.mus, out.sigmas))
                gmm = -mixture.log_prob(target).sum().item()
                done = torch.tensor([float(lat.terminals[s0 + t])])
                bce = torch.nn.functional.binary_cross_entropy_with_logits(out.terminations, done).item()
                mse = (out.rewards - float(lat.rewards[s0 + t])).pow(2).item()
                total, n = total + (gmm + bce + mse) / 6, n + 1
    for seq_len in (8, 32):
        args = trainmdrnn.build_parser().parse_args(["--seq-len", str(seq_len), "--batch-size", "2"])
        result = trainmdrnn.evaluate(mdrnn, lat, ids, args, torch.device("cpu"), reward=True, done_weight=1.0)
        assert result["first20"] == pytest.approx(total / n, rel=1e-4)


def test_batch_alignment_and_terminals():
    lat = synthetic_latents([20, 20], terminated=(1,))  # rollout 0 truncated, rollout 1 a real death
    windows = sequence_windows(lat, np.arange(2), 8)
    b = make_batch(lat, windows, 8, torch.device("cpu"))
    mask = b["mask"].bool()
    # Target at step t is frame t + 1 of the same rollout; actions and rewards are those of step t.
    np.testing.assert_array_equal(b["next_latents"][..., 1][mask], b["latents"][..., 1][mask] + 1)
    np.testing.assert_array_equal(b["actions"][..., 0][mask], b["latents"][..., 1][mask])
    np.testing.assert_array_equal(b["rewards"][mask] % 100, b["latents"][..., 1][mask])
    term = b["terminals"][mask]
    assert term.sum() == 1  # the time-limit end of rollout 0 is not a termination
    last = (b["latents"][..., 0][mask] == 1) & (b["latents"][..., 1][mask] == 19)
    assert term[last].item() == 1


def test_z_is_resampled_from_mu_and_sigma():
    lat = synthetic_latents([40])
    lat.logsigma[:] = np.log(0.5)
    gen = torch.Generator().manual_seed(0)
    b = make_batch(lat, sequence_windows(lat, np.arange(1), 40), 40, torch.device("cpu"), gen)
    noise = (b["latents"][0] - torch.from_numpy(lat.mu[:40])) / 0.5
    assert abs(noise.std().item() - 1) < 0.15 and abs(noise.mean().item()) < 0.15


def test_latent_cache_built_reused_and_invalidated(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    vae, ckpt = load_vae(logdir)
    rootdir = Path(ckpt["data"]["rootdir"])
    files = list_rollouts(rootdir)
    cache = Logdir(logdir).latents
    vae_path = logdir / "vae" / "best.tar"
    cache.unlink(missing_ok=True)
    lat, rebuilt = load_or_build_latents(
        cache, files, rootdir, vae, vae_path, "carracing", "crop84", torch.device("cpu")
    )
    assert rebuilt and cache.is_file()
    # The cached mu is V's encoder mean of every frame, final frames included.
    from data.rollouts import load_rollout

    r = load_rollout(files[1])
    with torch.no_grad():
        mu, _ = vae.encode(frames_to_tensor(np.concatenate([r.observations, r.final_observation[None]])))
    np.testing.assert_allclose(lat.mu[lat.frame_offsets[1] : lat.frame_offsets[2]], mu.numpy(), atol=1e-5)
    assert lat.lengths.tolist() == [40] * 4
    _, rebuilt = load_or_build_latents(
        cache, files, rootdir, vae, vae_path, "carracing", "crop84", torch.device("cpu")
    )
    assert not rebuilt
    # A retrained VAE invalidates the cache.
    other = VAE.from_config(ckpt["model_config"])
    save_checkpoint({**ckpt, "model": other.state_dict()}, vae_path)
    _, rebuilt = load_or_build_latents(
        cache, files, rootdir, other, vae_path, "carracing", "crop84", torch.device("cpu")
    )
    assert rebuilt


def run_mdrnn(logdir, *flags):
    parser = trainmdrnn.build_parser()
    return trainmdrnn.main(
        parser.parse_args(
            [
                "--logdir",
                str(logdir),
                "--batch-size",
                "4",
                "--seq-len",
                "16",
                "--device",
                "cpu",
                "--nosamples",
                *flags,
            ]
        )
    )


def test_train_resume_noreload_and_seed(pipeline_logdir, tmp_path):
    a = copy_logdir(pipeline_logdir, tmp_path / "a")
    straight = run_mdrnn(a, "--epochs", "2", "--noreload")
    assert [h["epoch"] for h in straight] == [1, 2]
    ckpt = load_checkpoint(a / "mdrnn" / "checkpoint.tar")
    assert ckpt["epoch"] == 2 and ckpt["optimizer"]["state"]  # Adam moments are saved
    assert (a / "mdrnn" / "best.tar").is_file()
    # Resume continues at epoch 3 with the saved optimizer and schedule, and keeps the history.
    resumed = run_mdrnn(a, "--epochs", "3")
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[:2] == straight
    # Same seed, same losses; and 1 epoch + resume equals 2 epochs straight, bit for bit.
    b = copy_logdir(pipeline_logdir, tmp_path / "b")
    first = run_mdrnn(b, "--epochs", "1", "--noreload")
    second = run_mdrnn(b, "--epochs", "2")
    losses = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert losses(first) == losses(straight[:1]) and losses(second) == losses(straight)
    # --noreload starts again at epoch 1.
    assert [h["epoch"] for h in run_mdrnn(b, "--epochs", "1", "--noreload")] == [1]


def test_m_learns_its_held_out_loss_falls(pipeline_logdir, tmp_path):
    """Three epochs on latents with something to learn: M's held-out loss, and its loss on each held-out
    rollout's first steps from the zero state, must fall (they stay put with a learning rate of 0). The
    tiny pipeline's V has barely left its prior (its z are noise), so its latent cache is given smooth
    trajectories instead, under the same key: M trains on them as on any V's."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    cache = Latents.load(Logdir(logdir).latents)
    starts = np.repeat(np.arange(len(cache.names)), np.diff(cache.frame_offsets))
    t = np.arange(len(cache.mu)) - cache.frame_offsets[starts]
    cache.mu = np.sin(0.2 * t[:, None] + np.arange(cache.mu.shape[1])[None] + starts[:, None]).astype(
        np.float32
    )
    cache.logsigma = np.full_like(cache.mu, -3.0)
    cache.save(Logdir(logdir).latents)
    history = run_mdrnn(logdir, "--epochs", "3", "--noreload")
    test, first = [h["test_loss"] for h in history], [h["test_first20"] for h in history]
    assert test[0] > test[1] > test[2] and first[2] < first[0], (test, first)


def test_resume_refuses_other_model_sizes(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    run_mdrnn(logdir, "--epochs", "1", "--noreload", "--hidden", "16", "--gaussians", "3")
    with pytest.raises(UserError, match="is a model with --hidden 16, not 32"):
        run_mdrnn(logdir, "--epochs", "2", "--hidden", "32")
    with pytest.raises(UserError, match="is a model with --gaussians 3, not 5"):
        run_mdrnn(logdir, "--epochs", "2", "--gaussians", "5")
    assert [h["epoch"] for h in run_mdrnn(logdir, "--epochs", "2", "--hidden", "16")] == [1, 2]


def test_visuals_written(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    parser = trainmdrnn.build_parser()
    trainmdrnn.main(
        parser.parse_args(
            [
                "--logdir",
                str(logdir),
                "--epochs",
                "1",
                "--noreload",
                "--seq-len",
                "16",
                "--batch-size",
                "4",
                "--device",
                "cpu",
            ]
        )
    )
    samples = logdir / "mdrnn" / "samples"
    assert (samples / "epoch_001_predictions.png").stat().st_size > 0
    import imageio.v3 as iio

    gif = iio.imread(samples / "epoch_001_dream.gif")
    assert gif.ndim == 4 and gif.shape[0] > 10


def test_other_vae_is_refused(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    ckpt = load_checkpoint(logdir / "vae" / "best.tar")
    save_checkpoint(
        {**ckpt, "model": VAE.from_config(ckpt["model_config"]).state_dict()}, logdir / "vae" / "best.tar"
    )
    res = subprocess.run(
        [sys.executable, "trainmdrnn.py", "--logdir", str(logdir), "--epochs", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "another VAE" in res.stderr and "--noreload" in res.stderr


def test_clear_error_without_vae(tmp_path):
    res = subprocess.run(
        [sys.executable, "trainmdrnn.py", "--logdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1
    assert "no VAE checkpoint" in lines[0] and "trainvae.py" in lines[0]


def test_rollouts_with_real_termination_are_learned_as_deaths(tmp_path):
    """A rollout that ended in a real termination yields exactly one termination target."""
    rng = np.random.default_rng(0)
    for i, (terminated, truncated) in enumerate([(True, False), (False, True)]):
        frames = rng.integers(0, 256, size=(11, 64, 64, 3), dtype=np.uint8)
        terminals = np.zeros(10, bool)
        terminals[-1] = terminated
        save_rollout(
            tmp_path / rollout_name(i),
            Rollout(
                observations=frames[:-1],
                actions=np.zeros((10, 3), np.float32),
                rewards=np.zeros(10, np.float32),
                terminals=terminals,
                final_observation=frames[-1],
                truncated=truncated,
                preprocessing="crop84",
            ),
        )
    from data.latents import encode_rollouts

    lat = encode_rollouts(
        list_rollouts(tmp_path), tmp_path, VAE().eval(), "carracing", "crop84", torch.device("cpu")
    )
    b = make_batch(lat, sequence_windows(lat, np.arange(2), 10), 10, torch.device("cpu"))
    assert b["terminals"].sum().item() == 1 and b["terminals"][0, -1].item() == 1
