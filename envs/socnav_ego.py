"""SocNavGym seen by the robot (``--env socnav-ego``): the game of ``--env socnav`` (the same simulator,
scene, actions, reward, ends and references), with frames centred on the robot and turned to its
heading (:meth:`envs.socnav.SocNav._draw_ego`): the goal, people and furniture where they are relative
to the robot, the goal in a colour of its own and kept at the frame's edge when it is farther than the
view. In the room seen from above, what C must steer by (where the robot heads, where the goal is from
there) is a few pixels of the robot's disk.

A separate env, not a renderer: the frames differ in what they show, so V, M and C trained on one view
do not drive the other, and every file records which one it was.
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
    return socnav.SocNav(renderer, render_mode, max_episode_steps, view="ego")


SPEC = dataclasses.replace(socnav.SPEC, name="socnav-ego", make=make, salient=socnav.EGO_SALIENCE)
