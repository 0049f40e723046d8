"""Action repeat (``--env <game>-repeat<k>``): the repeated game is the game itself, k frames per step,
with the frames between left undrawn; names, caps and the four stages on it."""

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
from data.rollouts import list_rollouts, load_rollout
from envs import get_env_spec
from tests.conftest import hold_until_end
from utils.cli import UserError

BASE = get_env_spec("carracing")


def parse(module, *argv):
    return module.build_parser().parse_args([str(a) for a in argv])


def play_base(renderer: str, seed: int, actions: np.ndarray, k: int, frames: int):
    """The game itself, each action played k times: (frames at decisions, summed rewards, end)."""
    env = BASE.make_env(renderer, None, frames)
    seen, rewards = [env.reset(seed=seed)[0]], []
    for a in actions:
        total = 0.0
        for _ in range(k):
            obs, reward, terminated, truncated, _ = env.step(a)
            total += float(reward)
            if terminated or truncated:
                break
        seen.append(obs)
        rewards.append(total)
        if terminated or truncated:
            break
    return np.stack(seen), rewards, (terminated, truncated)


def play_repeated(name: str, renderer: str, seed: int, actions: np.ndarray):
    spec = get_env_spec(name)
    env = spec.make_env(renderer)
    seen, rewards, played = [env.reset(seed=seed)[0]], [], []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        seen.append(obs)
        rewards.append(reward)
        played.append(info["frames"])
        if terminated or truncated:
            break
    return np.stack(seen), rewards, (terminated, truncated), played


@pytest.mark.parametrize("renderer", ["fast", "stock"])
def test_repeated_game_is_the_game_every_k_frames(renderer):
    """k = 3 over a 1000-frame cap: 333 full steps and a last one of 1 frame. The fast renderer skips
    drawing the frames between; the pixels C sees are the stock game's all the same. (The stock renderer
    draws every frame, skipped or not: its first 100 steps show the repeat is the same there; the whole
    episode and its end are the fast renderer's case.)"""
    k, seed = 3, 7
    spec = get_env_spec(f"carracing-repeat{k}")
    assert spec.max_episode_steps == 334 and spec.action_repeat == k
    actions = BASE.policies["brown"](np.random.default_rng(1), spec.max_episode_steps)
    if renderer == "stock":
        actions = actions[:100]
    frames, rewards, end, played = play_repeated(spec.name, renderer, seed, actions)
    want_frames, want_rewards, want_end = play_base("stock", seed, actions, k, 1000)
    np.testing.assert_array_equal(frames, want_frames)
    assert rewards == want_rewards
    if renderer == "stock":
        assert len(frames) == 101 and played == [3] * 100
    else:
        assert end == want_end == (False, True)
        assert played == [3] * 333 + [1] and sum(played) == 1000


def test_names_caps_and_refusals():
    assert get_env_spec("carracing-repeat4").max_episode_steps == 250
    assert get_env_spec("carracing-repeat4") is get_env_spec("carracing-repeat4")
    assert get_env_spec("doom-takecover-repeat2").max_episode_steps == 1050
    assert get_env_spec("CarRacing-v3-repeat2").name == "carracing-repeat2"  # an older name's alias
    for bad in ("carracing-repeat1", "carracing-repeat0", "carracing-repeat04", "nogame-repeat2"):
        with pytest.raises(UserError, match="unknown env"):
            get_env_spec(bad)
    with pytest.raises(ValueError, match="without one"):
        get_env_spec("carracing-repeat2").with_action_repeat(2)
    # A cap of the repeated game is in steps: 10 steps of 4 are 40 frames of the game.
    env = get_env_spec("carracing-repeat4").make_env("fast", None, 10)
    steps, _, truncated, info = hold_until_end(env, np.zeros(3, np.float32), seed=0)
    assert (steps, truncated, info["frames"]) == (10, True, 4)


def test_the_four_stages_on_a_repeated_game(tmp_path):
    """Rollouts hold one frame per step; V, M, C and the test take the env from them."""
    env, data, logdir = "carracing-repeat4", tmp_path / "rollouts", tmp_path / "exp"
    generation_script.main(
        parse(generation_script, "--env", env, "--rootdir", data, "--rollouts", 3, "--threads", 2,
              "--max-steps", 30)
    )  # fmt: skip
    rollouts = [load_rollout(p) for p in list_rollouts(data)]
    assert all(r.env == env and len(r) == 30 for r in rollouts)
    # The 30 steps are 120 frames of CarRacing: the car got further than in 30 frames.
    trainvae.main(
        parse(trainvae, "--logdir", logdir, "--dataset", data, "--epochs", 1, "--batch-size", 16,
              "--latent", 8, "--device", "cpu", "--test-fraction", 0.34, "--nosamples")
    )  # fmt: skip
    trainmdrnn.main(
        parse(trainmdrnn, "--logdir", logdir, "--epochs", 1, "--batch-size", 2, "--seq-len", 8,
              "--hidden", 16, "--device", "cpu")
    )  # fmt: skip
    traincontroller.main(
        parse(traincontroller, "--logdir", logdir, "--pop-size", 4, "--n-samples", 1, "--generations", 1,
              "--max-steps", 12, "--eval-every", 1, "--eval-episodes", 2, "--max-workers", 2)
    )  # fmt: skip
    stats = test_controller.main(
        parse(test_controller, "--logdir", logdir, "--episodes", 2, "--max-steps", 12, "--max-workers", 2,
              "--record", tmp_path / "drive.gif")
    )  # fmt: skip
    assert stats["env"] == env and stats["steps"] == [12, 12]
    assert json.loads((logdir / "ctrl" / "test_returns.json").read_text())["env"] == env
    assert Path(tmp_path / "drive.gif").stat().st_size > 0
