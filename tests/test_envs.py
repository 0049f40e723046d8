"""Env specs: the registry, CarRacing's spec (squashing, defaults), the discrete variant's action mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs import available_envs, get_env_spec, make_env
from utils.cli import UserError


def test_registry_finds_every_spec_and_old_names():
    assert {"carracing", "carracing-discrete"} <= set(available_envs())
    assert get_env_spec() is get_env_spec("carracing")
    assert get_env_spec("CarRacing-v3").name == "carracing"  # what rollout files recorded before specs
    with pytest.raises(UserError, match="unknown env 'pong'.*carracing"):
        get_env_spec("pong")
    with pytest.raises(UserError, match="unknown env"):
        get_env_spec("preprocess")  # a helper module of envs/, not a spec


def test_carracing_spec_is_the_papers():
    spec = get_env_spec("carracing")
    assert spec.action_size == 3 and spec.max_episode_steps == 1000
    assert spec.default_preprocessing == "crop84" and spec.default_renderer == "fast"
    assert spec.default_policy == "brown" and "approx" in spec.inexact_renderers
    sizes = spec.model
    assert (sizes.latent, sizes.hidden, sizes.gaussians) == (32, 256, 5)
    assert sizes.controller_inputs == ("z", "h") and sizes.controller_bias
    env = spec.make_env(max_episode_steps=7)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (96, 96, 3) and spec.preprocess(obs, "crop84").shape == (64, 64, 3)
    for _ in range(7):
        *_, terminated, truncated, _ = env.step(spec.to_env_action(np.zeros(3, np.float32)))
    assert truncated and not terminated
    actions = spec.policies["brown"](np.random.default_rng(0), 50)
    assert (
        actions.shape == (50, 3)
        and (actions >= spec.action_low).all()
        and (actions <= spec.action_high).all()
    )


def test_carracing_squash_ranges_over_extreme_inputs():
    squash = get_env_spec("carracing").squash
    values = torch.tensor([-math.inf, -1e30, -1e4, -3.0, -1e-3, 0.0, 1e-3, 3.0, 1e4, 1e30, math.inf])
    raw = torch.cartesian_prod(values, values, values)
    a = squash(raw)
    assert a.shape == raw.shape and torch.isfinite(a).all()
    steer, gas, brake = a.unbind(-1)
    assert steer.min() == -1 and steer.max() == 1 and gas.min() == 0 and gas.max() == 1
    assert brake.min() == 0 and brake.max() == 1
    for x in (-3.0, -1e-3, 0.0, 1e-3, 3.0):
        s, g, b = squash(torch.tensor([x, x, x])).tolist()
        assert s == pytest.approx(math.tanh(x), abs=1e-6)
        assert g == pytest.approx((math.tanh(x) + 1) / 2, abs=1e-6)
        assert b == pytest.approx(min(max(math.tanh(x), 0.0), 1.0), abs=1e-6)


def test_discrete_variant_maps_outputs_to_one_action():
    spec = get_env_spec("carracing-discrete")
    raw = torch.tensor([[0.1, 2.0, -1.0, 0.0, 0.5], [-3.0, -2.0, -1.0, -0.5, -4.0]])
    one_hot = spec.squash(raw)
    torch.testing.assert_close(one_hot, torch.tensor([[0.0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]))
    assert [spec.to_env_action(a) for a in one_hot.numpy()] == [1, 3]
    env = make_env("carracing-discrete", max_episode_steps=5)
    env.reset(seed=0)
    assert env.action_space.n == 5
    env.step(spec.to_env_action(spec.policies["held"](np.random.default_rng(0), 1)[0]))


def test_every_game_maps_the_arrow_keys_to_its_own_actions():
    """scripts/dream.py --keyboard plays any game through its spec: every set of arrow keys held gives an
    agent action of the game's size within its bounds, and the keys mean what the game's player expects."""
    keys = ("left", "right", "up", "down")
    for name in available_envs():
        spec = get_env_spec(name)
        assert spec.keyboard is not None, name
        for mask in range(16):
            action = spec.keyboard(frozenset(k for i, k in enumerate(keys) if mask >> i & 1))
            assert action.dtype == np.float32 and action.shape == (spec.action_size,), name
            assert (spec.action_low <= action).all() and (action <= spec.action_high).all(), name

    def env_action(game: str, *held: str):
        spec = get_env_spec(game)
        return np.asarray(spec.to_env_action(spec.keyboard(frozenset(held)))).tolist()

    assert env_action("carracing", "left", "up") == [-1.0, 1.0, 0.0]
    assert env_action("carracing", "down") == [0.0, 0.0, pytest.approx(0.8)]
    assert [env_action("doom-takecover", *held) for held in (["left"], [], ["right"], ["left", "right"])] == [
        0, 1, 2, 1,
    ]  # fmt: skip
    discrete = [env_action("carracing-discrete", *k) for k in ([], ["left"], ["right"], ["up"], ["down"])]
    assert discrete == [0, 1, 2, 3, 4]
