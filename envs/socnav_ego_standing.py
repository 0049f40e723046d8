"""SocNavGym seen by the robot, in the simpler scene (``--env socnav-ego-standing``): the game of
``--env socnav-ego`` with one to three people who all stand (``envs.socnav.SCENES["standing"]``), so that
no collision comes from a person walking into the robot. In the default scene people avoid the robot with
probability 0.1, and even a robot that never moves is hit in 29 of 100 episodes (docs/socnav.md): this
scene shows what the four stages learn about reaching a goal and keeping clear of what stands in the way.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

from envs import socnav


def make(
    renderer: str = socnav.RESOLUTIONS[0],
    render_mode: str | None = None,
    max_episode_steps: int = socnav.MAX_STEPS,
) -> gym.Env:
    return socnav.SocNav(renderer, render_mode, max_episode_steps, view="ego", scene="standing")


SPEC = dataclasses.replace(socnav.SPEC, name="socnav-ego-standing", make=make, salient=socnav.EGO_SALIENCE)
