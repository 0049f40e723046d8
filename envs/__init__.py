"""Environment construction: every stage builds CarRacing through :func:`make_env`."""

from __future__ import annotations

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

ENV_ID = "CarRacing-v3"
MAX_EPISODE_STEPS = 1000
# fast: FastCarRacing, pixel-identical to stock and ~3x faster; stock: Gymnasium's class as shipped;
# approx: FastCarRacing on a 4x smaller canvas, ~8x faster, not identical (generation and training only).
RENDERERS: tuple[str, ...] = ("fast", "stock", "approx")
DEFAULT_RENDERER = "fast"


def make_env(
    renderer: str = DEFAULT_RENDERER,
    render_mode: str | None = None,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    continuous: bool = True,
    domain_randomize: bool = False,
) -> gym.Env:
    """CarRacing-v3 under a TimeLimit.

    Args:
        renderer: ``fast`` (default) renders every pixel exactly as ``stock``, Gymnasium's class as
            shipped, about 3x faster; ``approx`` trades exactness for ~8x (see envs/car_racing.py).
        render_mode: None (state pixels only, no display needed), ``rgb_array``, or ``human``
            (a pygame window; on a headless server run under ``xvfb-run``).
        max_episode_steps: the time limit; reaching it sets ``truncated``, never ``terminated``.
    """
    from gymnasium.envs.box2d.car_racing import CarRacing

    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; expected one of {RENDERERS}")
    kwargs = dict(render_mode=render_mode, continuous=continuous, domain_randomize=domain_randomize)
    if renderer == "stock":
        env = CarRacing(**kwargs)
    else:
        from envs.car_racing import FastCarRacing

        env = FastCarRacing(**kwargs, approx=renderer == "approx")
    return TimeLimit(env, max_episode_steps=max_episode_steps)
