"""SocNavGym seen by the robot with furniture and walls painted solid (``--env socnav-ego-solid``): the game
of ``--env socnav-ego`` (the same simulator, scene, actions, reward, ends and references) whose frames fill
every place where the robot's centre would put its body into furniture or a wall in one colour
(``envs.socnav.FURNITURE_EGO``): each shape grown by the robot's radius, so that the robot touches
something exactly when the centre of its frame is painted. In ``socnav-ego`` furniture is drawn as
SocNavGym draws it, a faint brown table and plants and laptops a few pixels wide at 64x64, and z holds a
quarter of the variance of where the nearest furniture is against nearly nine tenths of where the goal is
(docs/socnav.md).

A separate env, not a renderer: the frames differ in what they show, so V, M and C trained on one view
do not drive the other.
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
    return socnav.SocNav(renderer, render_mode, max_episode_steps, view="ego-solid")


SPEC = dataclasses.replace(socnav.SPEC, name="socnav-ego-solid", make=make, salient=socnav.EGO_SALIENCE)
