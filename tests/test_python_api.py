"""world_models.load_agent: the shipped agents and a freshly trained one, played from Python one step at a
time, give step for step the episodes test_controller.py drives from the same seeds."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import test_controller
import traincontroller
from tests.conftest import copy_logdir
from utils.cli import UserError
from world_models import load_agent

ROOT = Path(__file__).resolve().parent.parent


def play(agent, env, seed: int) -> tuple[float, int]:
    """The README's loop: one episode from ``seed``, its return and length."""
    obs, _ = env.reset(seed=seed)
    agent.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
    return total, steps


def check_against_the_test(logdir: Path, episodes: int, max_steps: int, out: Path, seed: int = 0) -> dict:
    argv = ["--logdir", logdir, "--episodes", episodes, "--max-steps", max_steps, "--out", out]
    argv += ["--seed", seed]
    args = test_controller.build_parser().parse_args([*map(str, argv), "--envs-per-worker", "1"])
    record = test_controller.main(args)
    agent = load_agent(logdir)
    env = agent.make_env(max_episode_steps=max_steps)
    played = [play(agent, env, seed) for seed in test_controller.episode_seeds(args)]
    assert played == list(zip(record["returns"], record["steps"], strict=True))
    return record


@pytest.mark.parametrize(
    "agent,episodes,max_steps,seed",
    [
        ("carracing", 2, 150, 0),  # carracing-repeat2: 300 frames of the game, z the encoder mean
        # z sampled from the agent's own stream; --seed 1's first episode dies at ~380 frames, its second
        # is cut by the cap: both ends of an episode
        ("doom-takecover", 2, 600, 1),
        # the robot's view of SocNavGym, on the first of the --seed 8 episodes its card reports
        ("socnav", 3, 200, 8),
    ],
)
def test_a_shipped_agent_plays_the_test_episodes_from_python(agent, episodes, max_steps, seed, tmp_path):
    logdir = ROOT / "pretrained" / agent
    if not (logdir / "ctrl" / "best.tar").is_file():
        pytest.skip("no shipped weights")
    if agent == "socnav" and importlib.util.find_spec("socnavgym") is None:
        pytest.skip("the SocNavGym extra is not installed (bash scripts/setup.sh --socnav)")
    record = check_against_the_test(logdir, episodes, max_steps, tmp_path / "test", seed)
    assert len(set(record["returns"])) == episodes  # different episodes, not one repeated
    if agent.startswith("doom"):
        assert min(record["steps"]) < max_steps == max(record["steps"])
    loaded = load_agent(logdir)
    assert loaded.z_mode == ("sample" if agent.startswith("doom") else "mu")


def test_a_trained_logdir_plays_from_python(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    argv = ["--logdir", logdir, "--generations", 1, "--pop-size", 4, "--n-samples", 1, "--max-steps", 30]
    argv += ["--eval-every", 1, "--eval-episodes", 1, "--max-workers", 1]
    traincontroller.main(traincontroller.build_parser().parse_args(list(map(str, argv))))
    check_against_the_test(logdir, 2, 40, tmp_path / "test")
    agent = load_agent(logdir)
    env = agent.make_env(max_episode_steps=5)
    obs, _ = env.reset(seed=3)
    action = agent.act(obs)
    assert env.action_space.contains(np.asarray(action, env.action_space.dtype))


def test_a_logdir_without_a_controller_is_one_line(pipeline_logdir):
    with pytest.raises(UserError, match="ctrl"):
        load_agent(pipeline_logdir)
