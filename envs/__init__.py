"""Environments, one spec each (:class:`envs.spec.EnvSpec`), looked up by name.

The spec of ``--env NAME`` is the ``SPEC`` of the module ``envs/<NAME with - as _>.py``: adding a game is
adding one file here. :func:`available_envs` lists every module of this package that defines a SPEC.
``NAME-repeat<k>`` is game NAME with the agent deciding every k frames (``EnvSpec.with_action_repeat``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import cache

import gymnasium as gym

from envs.spec import REPEAT, EnvSpec, ModelSizes  # noqa: F401  (the types a spec is made of)
from utils.cli import UserError

DEFAULT_ENV = "carracing"
# Modules of this package that are not games (listing the games need not import them: fast_car_racing
# pulls in pygame and Box2D).
HELPERS = frozenset({"spec", "preprocess", "policies", "fast_car_racing"})


@cache
def available_envs() -> tuple[str, ...]:
    """Names of every env spec in this package."""
    names = []
    for module in pkgutil.iter_modules(__path__):
        if module.name in HELPERS:
            continue
        try:
            spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        except ImportError:  # a game whose packages are not installed here
            continue
        if isinstance(spec, EnvSpec):
            names.append(spec.name)
    return tuple(sorted(names))


@cache
def get_env_spec(name: str = DEFAULT_ENV) -> EnvSpec:
    """The spec of env ``name`` (or of a name older files recorded, e.g. ``CarRacing-v3``).

    Raises :class:`UserError` listing the known envs when there is none.
    """
    base, repeat, k = name.rpartition(REPEAT)
    if repeat and k.isdigit() and int(k) > 1 and not k.startswith("0"):
        return get_env_spec(base).with_action_repeat(int(k))
    module_name = name.replace("-", "_")
    if module_name.isidentifier() and importlib.util.find_spec(f"{__name__}.{module_name}") is not None:
        spec = getattr(importlib.import_module(f"{__name__}.{module_name}"), "SPEC", None)
        if isinstance(spec, EnvSpec) and spec.name == name:
            return spec
    for known in available_envs():
        spec = get_env_spec(known)
        if name in spec.aliases:
            return spec
    raise UserError(
        f"unknown env {name!r}; known envs: {', '.join(available_envs())} "
        f"(and NAME{REPEAT}K: NAME with the agent deciding every K frames)"
    )


def make_env(
    env: str = DEFAULT_ENV,
    renderer: str | None = None,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """Env ``env`` built by its spec, with the spec's defaults for whatever is None."""
    return get_env_spec(env).make_env(renderer, render_mode, max_episode_steps)
