"""VizDoom take-cover: the env spec (frames, actions, cap, determinism, files), M's weighted death loss,
survival dreams, and the four stages end to end on tiny Doom data with C trained only in the dream."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("vizdoom")

import test_controller  # noqa: E402
import traincontroller  # noqa: E402
import trainmdrnn  # noqa: E402
import trainvae  # noqa: E402
from data import generation_script  # noqa: E402
from data.rollouts import list_rollouts, load_rollout  # noqa: E402
from envs import get_env_spec, make_env  # noqa: E402
from experiment.logdir import load_agent_parts, load_mdrnn  # noqa: E402
from models.controller import ControllerBatch, ControllerConfig  # noqa: E402
from models.dream import Dream, dream_returns  # noqa: E402
from models.mdrnn import MDRNN, MDRNNCell  # noqa: E402
from scripts import demo, tau_sweep  # noqa: E402
from tests.conftest import copy_logdir, run_demo  # noqa: E402
from utils.checkpoint import load_checkpoint  # noqa: E402

ENV = "doom-takecover"
ROOT = Path(__file__).resolve().parent.parent
SPEC = get_env_spec(ENV)


def test_spec_sizes_are_the_papers():
    sizes = SPEC.model
    assert (sizes.latent, sizes.hidden, sizes.gaussians) == (64, 512, 5)
    config = ControllerConfig(64, 512, SPEC.action_size, sizes.controller_inputs, sizes.controller_bias)
    assert config.vector_size == 1088 and SPEC.max_episode_steps == 2100
    assert not SPEC.reward_head and SPEC.done_weight == 10


def test_actions_are_thresholded_at_a_third():
    actions = np.array([[-1.0], [-0.34], [-0.33], [0.0], [0.33], [0.34], [1.0]], np.float32)
    assert [SPEC.to_env_action(a) for a in actions] == [0, 0, 1, 1, 1, 2, 2]
    torch.testing.assert_close(
        SPEC.squash(torch.tensor([[-50.0], [0.0], [0.5]])), torch.tanh(torch.tensor([[-50.0], [0.0], [0.5]]))
    )
    held = SPEC.policies["held"](np.random.default_rng(0), 500)
    assert held.shape == (500, 1) and (np.abs(held) <= 1).all()


def test_frames_crop_the_status_bar_and_episodes_repeat_per_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ViZDoom's files must not land in the working directory
    env = make_env(ENV, max_episode_steps=30)
    actions = SPEC.policies["held"](np.random.default_rng(1), 30)

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        frames, rewards, end = [obs], [], None
        for a in actions:
            obs, reward, terminated, truncated, _ = env.step(SPEC.to_env_action(a))
            frames.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                end = (terminated, truncated)
                break
        return np.stack(frames), rewards, end

    a, ra, end = episode(7)
    b, rb, _ = episode(7)
    assert a.shape[1:] == (120, 160, 3) and np.array_equal(a, b) and ra == rb
    c, _, _ = episode(8)
    assert not np.array_equal(a, c)  # another seed, another episode
    assert set(ra) == {1.0}  # +1 per frame alive
    env.close()
    capped = make_env(ENV, max_episode_steps=5)  # nobody dies in the first 5 frames: the cap is a truncation
    capped.reset(seed=0)
    ends = [capped.step(1)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    capped.close()
    game = make_env(ENV)  # standing still, a fireball ends it: a termination, long before the cap
    game.reset(seed=0)
    frames, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = game.step(1)
        frames += 1
    assert terminated and not truncated and frames < 2100
    game.close()
    assert list(tmp_path.iterdir()) == []
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[100:] = 255  # the status bar's rows only
    assert SPEC.preprocess(frame, "crop").max() == 0 and SPEC.preprocess(frame, "full")[-1].min() == 255


def test_m_weighs_death_targets_as_the_spec_says():
    """trainmdrnn's termination loss: -(w y log p + (1 - y) log(1 - p)), masked mean over steps."""
    torch.manual_seed(0)
    mdrnn = MDRNN(latent=4, action=1, hidden=8, gaussians=2)
    b, t = 3, 6
    batch = {
        "latents": torch.randn(b, t, 4),
        "next_latents": torch.randn(b, t, 4),
        "actions": torch.rand(b, t, 1),
        "rewards": torch.zeros(b, t),
        "terminals": (torch.rand(b, t) < 0.3).float(),
        "mask": torch.ones(b, t),
    }
    batch["terminals"][0, -1] = 1.0
    with torch.no_grad():
        p = torch.sigmoid(mdrnn(batch["actions"], batch["latents"]).terminations)
        y = batch["terminals"]
        for weight in (1.0, SPEC.done_weight):
            expected = (-(weight * y * p.log() + (1 - y) * (1 - p).log())).mean()
            bce = trainmdrnn.losses(mdrnn, batch, reward=False, done_weight=weight)["bce"]
            torch.testing.assert_close(bce, expected)


def test_survival_dreams_count_the_steps_alive():
    torch.manual_seed(0)
    cell = MDRNNCell(latent=4, action=1, hidden=8, gaussians=3).eval()
    config = ControllerConfig(4, 8, 1, ("z", "c", "h"), bias=False)
    params = torch.randn(6, config.vector_size).numpy()
    start = torch.randn(6, 4)
    for bias, expected in ((-30.0, 9), (30.0, 1)):  # never dies: the cap; always dies: the first step
        with torch.no_grad():
            cell.termination_linear.weight.zero_()
            cell.termination_linear.bias.fill_(bias)
        dream = Dream(cell, 1.15, generator=torch.Generator().manual_seed(0), survival=True)
        returns, lengths = dream_returns(dream, ControllerBatch(config, params), torch.tanh, start, 9)
        assert lengths.tolist() == [expected] * 6 and returns.tolist() == [float(expected)] * 6


def parse(module, *argv):
    return module.build_parser().parse_args([str(a) for a in argv])


@pytest.fixture(scope="module")
def doom_logdir(tmp_path_factory) -> Path:
    """Tiny Doom rollouts (4 x 60 frames) with V and M trained on them: a logdir for C and what follows."""
    tmp_path = tmp_path_factory.mktemp("doom")
    data, logdir = tmp_path / "rollouts", tmp_path / "exp"
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
            60,
        )
    )
    trainvae.main(
        parse(
            trainvae, "--logdir", logdir, "--dataset", data, "--epochs", 1, "--batch-size", 32, "--latent", 8,
            "--device", "cpu", "--test-fraction", 0.25, "--nosamples",
        )
    )  # fmt: skip
    trainmdrnn.main(
        parse(
            trainmdrnn, "--logdir", logdir, "--epochs", 1, "--batch-size", 4, "--seq-len", 16, "--hidden", 16,
            "--device", "cpu", "--nosamples",
        )
    )  # fmt: skip
    return logdir


def test_four_stages_on_tiny_doom_data_with_c_trained_in_the_dream(doom_logdir, tmp_path):
    logdir = copy_logdir(doom_logdir, tmp_path / "exp")
    r = load_rollout(list_rollouts(doom_logdir.parent / "rollouts")[0])
    assert r.env == ENV and r.actions.shape[1] == 1 and r.policy == "held"
    mdrnn, ckpt = load_mdrnn(logdir)
    assert ckpt["reward_head"] is False and mdrnn.config["action"] == 1
    summary = traincontroller.main(
        parse(
            traincontroller,
            "--logdir",
            logdir,
            "--dream",
            "--dream-steps",
            30,
            "--pop-size",
            4,
            "--n-samples",
            2,
            "--generations",
            2,
            "--eval-every",
            2,
            "--eval-episodes",
            2,
            "--max-steps",
            40,
            "--max-workers",
            2,
            "--envs-per-worker",
            1,
            "--weight-penalty",
            0.01,
            "--z-mode",
            "sample",
        )
    )
    history = summary["history"]
    assert len(history) == 2 and all(0 < h["best"] <= 30 for h in history)  # dream fitness: frames survived
    spec, params, _ = load_agent_parts(logdir)
    assert spec.controller.inputs == ("z", "c", "h") and not spec.controller.bias and params.shape == (40,)
    stats = test_controller.main(
        parse(
            test_controller,
            "--logdir",
            logdir,
            "--episodes",
            2,
            "--max-steps",
            40,
            "--max-workers",
            2,
            "--out",
            tmp_path / "test",
            "--record",
            tmp_path / "drive.gif",
        )
    )
    saved = json.loads((tmp_path / "test" / "test_returns.json").read_text())
    assert saved["env"] == ENV and saved["returns"] == stats["returns"]
    assert all(
        ret == steps for ret, steps in zip(saved["returns"], saved["steps"], strict=True)
    )  # +1 a frame
    assert (tmp_path / "drive.gif").stat().st_size > 0 and os.path.getsize(logdir / "ctrl" / "best.tar") > 0
    assert load_checkpoint(logdir / "ctrl" / "best.tar")["model_config"]["bias"] is False


def test_tau_sweep_scores_on_pick_episodes_and_resumes_an_interrupted_search(doom_logdir, tmp_path, capsys):
    """The sweep chooses a temperature, so it scores on the pick episodes (the test's stay unused), and a
    rerun after an interruption resumes the search it cut short (of its --seed) instead of starting it
    again; --test-seed then adds the test episodes of that seed to the finished table without searching."""
    out = tmp_path / "sweep dir"  # a space in the path: the stages' command lines are argv lists
    # The doom recipe's dream settings with shorter dreams and 2 evaluation episodes (the last generation's).
    recipe = tmp_path / "short dreams.toml"
    recipe.write_text(
        (demo.RECIPES / "doom.toml")
        .read_text()
        .replace("dream_steps = 2100", "dream_steps = 60")
        .replace("eval_episodes = 16", "eval_episodes = 2")
    )
    knobs = ["--generations", 2, "--pop-size", 4, "--n-samples", 2, "--eval-every", 3, "--episodes", 2]
    # An interrupted sweep: tau 1.15's search stopped after its first generation.
    tau_dir = out / "tau_1.15"
    for stage in ("vae", "mdrnn"):
        shutil.copytree(doom_logdir / stage, tau_dir / stage)
    traincontroller.main(
        parse(
            traincontroller, "--logdir", tau_dir, "--dream", "--temperature", 1.15, "--generations", 1,
            "--pop-size", 4, "--n-samples", 2, "--dream-steps", 60, "--weight-penalty", 0.01,
            "--z-mode", "sample", "--eval-every", 3, "--eval-episodes", 2, "--max-workers", 2, "--seed", 1,
        )
    )  # fmt: skip
    first = load_checkpoint(tau_dir / "ctrl" / "checkpoint.tar")["history"]
    capsys.readouterr()
    sweep = ["--logdir", doom_logdir, "--out", out, "--taus", 1.15, *knobs, "--preset", recipe, "--seed", 1]
    tau_sweep.main(parse(tau_sweep, *sweep))
    assert "resuming the search after generation 1" in capsys.readouterr().out
    state = load_checkpoint(tau_dir / "ctrl" / "checkpoint.tar")
    assert len(state["history"]) == 2 and state["history"][0] == first[0] and state["args"]["seed"] == 1
    pick = json.loads((tau_dir / "ctrl" / "pick_returns.json").read_text())
    assert pick["episode_set"] == "pick" and pick["episodes"] == 2
    assert not (tau_dir / "ctrl" / "test_returns.json").exists()
    scores = json.loads((out / "sweep.json").read_text())["1.15"]
    assert scores["real"]["mean"] == pick["mean"]
    dream = json.loads((tau_dir / "ctrl" / "pick_dream_returns.json").read_text())
    assert scores["dream"]["mean"] == dream["mean"] and dream["episode_set"] == "pick"
    # The finished table, again with --test-seed: the test episodes of seed 3 are added, nothing searched.
    tau_sweep.main(parse(tau_sweep, *sweep, "--test-seed", 3))
    assert "traincontroller.py" not in capsys.readouterr().out
    test = json.loads((tau_dir / "ctrl" / "test_returns.json").read_text())
    assert test["episode_set"] == "test" and test["seed"] == 3 and test["episodes"] == 2
    scores = json.loads((out / "sweep.json").read_text())["1.15"]
    assert scores["test"] == {"mean": test["mean"], "std": test["std"], "seed": 3}
    assert (
        scores["real"]["mean"] == pick["mean"]
        and len(load_checkpoint(tau_dir / "ctrl" / "checkpoint.tar")["history"]) == 2
    )


def test_doom_recipe_runs_every_stage_at_its_smallest(tmp_path):
    """scripts/demo.py --preset doom with size overrides only: two rounds, the second keeping round 0's V
    and training M on both rounds' rollouts through it; C trained in the dream, tested in the game."""
    logdir = tmp_path / "doom"
    sizes = [
        "--rollouts",
        3,
        "--max-steps",
        60,
        "--vae-epochs",
        1,
        "--mdrnn-epochs",
        1,
        "--generations",
        2,
        "--pop-size",
        4,
        "--n-samples",
        2,
        "--dream-steps",
        30,
        "--eval-every",
        2,
        "--eval-episodes",
        2,
        "--episode-steps",
        40,
        "--test-episodes",
        2,
    ]
    run_demo("doom", logdir, *sizes)
    summary = json.loads((logdir / "stages.json").read_text())
    for key in ("env", "dream", "temperature", "weight_penalty", "z_mode", "seq_len", "vae_lr"):
        assert summary["knobs"][key] == demo.PRESETS["doom"][key]
    ctrl_args = json.loads((logdir / "ctrl" / "args.json").read_text())
    assert ctrl_args["dream"] and ctrl_args["temperature"] == 1.15 and ctrl_args["weight_penalty"] == 0.01
    assert summary["test"]["env"] == ENV and summary["test"]["episodes"] == 2
    assert (logdir / "ctrl" / "dream_gen_002.gif").is_file() and (logdir / "drive.gif").is_file()
    assert (summary["knobs"]["rounds"], summary["knobs"]["round_v"]) == (2, "keep")
    assert (logdir / "vae" / "best.tar").read_bytes() == (logdir / "round0" / "vae" / "best.tar").read_bytes()
    assert [p.parent.name for p in list_rollouts(logdir / "rollouts")] == ["round0"] * 3 + ["round1"] * 3
    mdrnn_args = json.loads((logdir / "mdrnn" / "args.json").read_text())
    assert Path(mdrnn_args["dataset"]) == logdir / "rollouts"  # both rounds', through round 0's V


PRETRAINED = ROOT / "pretrained" / "doom-takecover"


@pytest.mark.skipif(not (PRETRAINED / "ctrl" / "best.tar").is_file(), reason="no shipped weights")
def test_shipped_agent_survives_longer_than_the_random_policy(tmp_path):
    """The shipped agent, trained only in the dream, on the first 5 test episodes of the game."""
    total = sum(p.stat().st_size for p in PRETRAINED.rglob("*") if p.is_file())
    assert total < 20e6
    argv = ["--logdir", str(PRETRAINED), "--episodes", "5", "--max-workers", "2", "--z-mode", "sample"]
    agent = test_controller.main(parse(test_controller, *argv, "--out", tmp_path / "agent"))
    chance = test_controller.main(
        parse(test_controller, *argv, "--random-policy", "--out", tmp_path / "random")
    )
    assert np.mean(agent["returns"]) > np.mean(chance["returns"]) + 100
    record = json.loads((PRETRAINED / "run" / "test_returns.json").read_text())
    assert record["episodes"] == 100 and record["env"] == ENV and len(record["returns"]) == 100
