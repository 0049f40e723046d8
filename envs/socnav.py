"""Social navigation in SocNavGym (``--env socnav``): a robot crosses a room to its goal among people.

SocNavGym (the registry's ``socnavgym`` 0.1.1, an optional extra: ``bash scripts/setup.sh --socnav``)
simulates a holonomic robot, walking and standing people (social-force model), plants, tables and laptops
in a square room; the scene is ours (``envs/socnav.yaml``). World Models needs pictures: a frame here is
the room seen from above, drawn by SocNavGym's own entity painters (its ``render()`` draws the same
scene, but only into an OpenCV window), area-averaged to 64x64.

* The agent action is SocNavGym's own: three numbers in [-1, 1], forward, sideways and turning speed
  (0.1 m/s, 0.1 m/s and pi/4 rad/s at 1, one second per step) in a 6 to 7 m room.
* Reward: SocNavGym's DS-RNN reward (+1 at the goal, -1 for a collision, leaving the map or running out
  of time, 5 per metre of progress to the goal, a penalty for passing close to people).
* An episode ends at the goal, a collision, out of the map (terminations) or after 200 steps (a
  truncation); :func:`outcome` names which, and the test reports the rates.
* Random rollouts: brownian actions (consecutive actions correlated, so the robot travels somewhere).
* SocNavGym draws from Python's and NumPy's global random generators; each env here keeps its own
  copies of both, so an episode depends on its seed alone, whatever else runs in the process.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.policies import brownian_actions
from envs.preprocess import area_resize
from envs.spec import EnvSpec, ModelSizes
from utils.cli import UserError

CONFIG = Path(__file__).with_suffix(".yaml")
RESOLUTIONS = ("256x256", "1024x1024")
VIEWS = ("room", "ego")  # the room from above (--env socnav), or the robot's own view (--env socnav-ego)
# Scenes: what each changes in CONFIG's "env" keys. "standing" (--env socnav-ego-standing) has one to three
# people, all standing, and nobody walking: every collision there is one the robot drives into itself,
# the simpler scene that shows whether the four stages learn to reach a goal (docs/socnav.md).
SCENES = {
    "default": {},
    "standing": {
        "min_static_humans": 1,
        "max_static_humans": 3,
        "min_dynamic_humans": 0,
        "max_dynamic_humans": 0,
    },
}
EGO_VIEW = 8.0  # metres across an ego frame: the robot's surroundings at 8 pixels a metre in 64x64
GOAL_EGO = (230, 0, 0)  # the goal in ego frames: red, a colour nothing else has (plants are green)
# Its radius there, in metres: larger than the goal's own 0.4 m, which V (2 epochs) left out of every
# reconstruction (docs/socnav.md).
GOAL_EGO_RADIUS = 0.7
# People in ego frames: blue disks (nothing else is blue) of this radius in metres, over SocNavGym's own
# drawing of them, a thin figure a few dark pixels wide at 64x64 that V left out of every reconstruction
# (docs/socnav.md). Collisions count from their 0.36 m (human_diameter / 2).
PERSON_EGO = (0, 40, 230)
PERSON_EGO_RADIUS = 0.45
OUTSIDE = 60  # beyond the room's walls, in ego frames: dark, so the walls are an edge V cannot miss
MAX_STEPS = 200
LOW, HIGH = -np.ones(3, np.float32), np.ones(3, np.float32)
OUTCOMES = ("success", "collision", "out of map", "timeout")
COLLIDED_WITH = ("person", "furniture", "wall")  # what a collision hit (info["outcome_detail"])
# The floor: light grey, not SocNavGym's white. On frames ~90% pure white V's sigmoid output saturates at
# 1 where the floor is and its gradients vanish: after 8 epochs on 57k frames it still drew a blank room.
FLOOR = 200
_INSTALL = "--env socnav needs the SocNavGym extra: bash scripts/setup.sh --socnav"
# SocNavGym's subpackage of its SNGNN reward model: it imports DGL, whose wheels stop at torch 2.2.
_SNGNN = "socnavgym.envs.utils.sngnnv2"


class _WithoutSNGNN:
    """Stands in for the SNGNN classes SocNavGym imports at load time. Building one is harmless (its
    reward base class builds one whatever the reward); using one is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probing for hooks
            raise AttributeError(name)
        raise RuntimeError(f"SocNavGym's SNGNN reward needs DGL, left out here; {CONFIG.name} uses dsrnn")


def _import_socnavgym() -> type:
    """SocNavGym's env class, imported without DGL (see _SNGNN) and without old gym's import banner.

    Our modules for the SNGNN subpackage go into ``sys.modules`` first, so its real ``__init__`` (which
    imports DGL) never runs; nothing of SocNavGym's own code is copied or changed.
    """
    for name in (_SNGNN, f"{_SNGNN}.socnav", f"{_SNGNN}.socnav_V2_API"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, for the submodules below it
            for cls in ("SocNavDataset", "Human", "Object", "SNScenario", "SocNavAPI"):
                setattr(module, cls, _WithoutSNGNN)
            sys.modules[name] = module
    try:
        # SocNavGym subclasses the old gym's Env; importing gym prints a notice about NumPy 2 and warns.
        # We never call gym.make (its env checker fails on NumPy 2): the class is built directly.
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from socnavgym.envs.socnavenv_v1 import SocNavEnv_v1
    except ImportError as err:
        raise UserError(f"{_INSTALL} ({err})") from None
    return SocNavEnv_v1


@contextlib.contextmanager
def _scene_config(scene: str):
    """The path of a config file for ``scene``: CONFIG itself, or CONFIG with the scene's changes in a
    temporary file (SocNavGym reads a config from a path, once, when its env is built)."""
    if not SCENES[scene]:
        yield str(CONFIG)
        return
    import tempfile

    import yaml  # installed with the extra (SocNavGym reads its config with it)

    config = yaml.safe_load(CONFIG.read_text())
    config["env"].update(SCENES[scene])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"socnav_{scene}.yaml"
        path.write_text(yaml.safe_dump(config))
        yield str(path)


class SocNav(gym.Env):
    """SocNavGym as a Gymnasium env whose observations are top-down RGB frames (R, R, 3) uint8.

    ``info`` of a step holds ``outcome`` (one of :data:`OUTCOMES`, or None while the episode goes on) and
    ``outcome_detail`` (after a collision, what it hit: one of :data:`COLLIDED_WITH`; else empty).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(
        self,
        resolution: str = RESOLUTIONS[0],
        render_mode: str | None = None,
        max_steps: int = MAX_STEPS,
        view: str = VIEWS[0],
        scene: str = "default",
    ) -> None:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; expected one of {RESOLUTIONS}")
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        if scene not in SCENES:
            raise ValueError(f"unknown scene {scene!r}; expected one of {tuple(SCENES)}")
        self.ego = view == "ego"
        self.size = int(resolution.split("x")[0])
        self.render_mode = render_mode
        self.max_steps = max_steps  # the episode cap, a timeout (below SocNavGym's own 200 steps too)
        self._steps = 0
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self._py_rng = random.Random(0).getstate()
        self._np_rng = np.random.RandomState(0).get_state()
        env_class = _import_socnavgym()
        with self._own_generators(), _scene_config(scene) as config:  # its constructor resets once
            self.sim = env_class(config=config)
        self._frame = self._draw()
        self._window = None

    @contextlib.contextmanager
    def _own_generators(self):
        """SocNavGym's calls run on this env's copies of the global generators."""
        outside = random.getstate(), np.random.get_state()
        random.setstate(self._py_rng)
        np.random.set_state(self._np_rng)
        try:
            yield
        finally:
            self._py_rng, self._np_rng = random.getstate(), np.random.get_state()
            random.setstate(outside[0])
            np.random.set_state(outside[1])

    def _draw(self) -> np.ndarray:
        return self._draw_ego() if self.ego else self._draw_room()

    def _draw_room(self) -> np.ndarray:
        """The room from above, as SocNavGym's render() draws it (less the goals of people, which the
        robot cannot know, on a grey floor, see FLOOR, with the goal a disk instead of a ring): RGB
        (size, size, 3)."""
        sim, size = self.sim, self.size
        image = np.full((size, size, 3), FLOOR, np.uint8)
        scale = size / sim.MAP_X, size / sim.MAP_Y
        self._paint(image, (*scale, sim.MAP_X, sim.MAP_Y), goal_scale=scale)
        return np.ascontiguousarray(image[..., ::-1])  # its painters use OpenCV's BGR

    def _paint(self, image: np.ndarray, where: tuple, goal_scale: tuple[float, float] | None = None) -> None:
        """The scene by SocNavGym's painters into ``image`` (BGR), placed by ``where`` (pixels a metre in
        x and y, the map's size in x and y): furniture, then (with ``goal_scale``) the goal, then people
        and the robot on top."""
        sim = self.sim
        for entity in sim.walls + sim.tables + sim.laptops + sim.plants:
            entity.draw(image, *where)
        if goal_scale is not None:
            self._draw_goal(image, goal_scale)
        for entity in sim.static_humans + sim.dynamic_humans + [sim.robot]:
            entity.draw(image, *where)
        for group in sim.moving_interactions + sim.static_interactions + sim.h_l_interactions:
            group.draw(image, *where)

    def _draw_ego(self) -> np.ndarray:
        """The robot's surroundings, EGO_VIEW metres across, turned so that the robot sits at the centre
        heading up: the goal, people and furniture are where they are relative to the robot, which is what
        C must steer by (in the room seen from above, the robot's heading is a few pixels of its disk).
        Beyond the walls is dark (OUTSIDE). A goal beyond the view is drawn at the view's edge, in its
        direction, so that the way to it is always in the frame; it is red (GOAL_EGO), as nothing else
        is. People are blue disks (PERSON_EGO). RGB (size, size, 3)."""
        import cv2

        sim, size = self.sim, self.size
        ppm = size / EGO_VIEW  # pixels a metre
        # The room with half a view's margin on every side, drawn by SocNavGym's painters, which place
        # world (0, 0) at the centre of a map of the size they are given.
        span_x, span_y = sim.MAP_X + EGO_VIEW, sim.MAP_Y + EGO_VIEW
        canvas = np.full((round(span_y * ppm), round(span_x * ppm), 3), OUTSIDE, np.uint8)
        x0, y0 = round(EGO_VIEW / 2 * ppm), round(EGO_VIEW / 2 * ppm)
        canvas[y0 : y0 + round(sim.MAP_Y * ppm), x0 : x0 + round(sim.MAP_X * ppm)] = FLOOR
        self._paint(canvas, (ppm, ppm, span_x, span_y))  # the goal comes after the turn, below

        def in_canvas(entity) -> tuple[float, float]:
            """An entity's place in the canvas, in pixels (x right, y down), as the painters place it."""
            return ppm * (entity.x + span_x / 2), ppm * (span_y / 2 - entity.y)

        for person in sim.static_humans + sim.dynamic_humans:
            at = tuple(round(c) for c in in_canvas(person))
            cv2.circle(canvas, at, round(PERSON_EGO_RADIUS * ppm), PERSON_EGO[::-1], -1)
        robot = sim.robot
        centre = in_canvas(robot)
        turn = cv2.getRotationMatrix2D(centre, 90.0 - np.degrees(robot.orientation), 1.0)
        turn[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        image = cv2.warpAffine(canvas, turn, (size, size), flags=cv2.INTER_LINEAR, borderValue=(OUTSIDE,) * 3)
        ahead, left = self.goal_from_robot()
        radius = GOAL_EGO_RADIUS * ppm
        offset = np.array([-left, -ahead]) * ppm  # image x to the right, y down
        reach = size / 2 - radius - 1
        if np.abs(offset).max() > reach:  # beyond the view: at its edge, in the goal's direction
            offset *= reach / np.abs(offset).max()
        goal = tuple(int(round(c)) for c in size / 2 + offset)
        cv2.circle(image, goal, int(round(radius)), GOAL_EGO[::-1], -1)  # BGR, as the painters draw
        return np.ascontiguousarray(image[..., ::-1])

    def goal_from_robot(self) -> tuple[float, float]:
        """Where the goal is from the robot, in metres: (ahead, to its left)."""
        robot = self.sim.robot
        ahead, left = from_robot(robot, robot.goal_x - robot.x, robot.goal_y - robot.y)
        return float(ahead), float(left)

    def _draw_goal(self, image: np.ndarray, scale: tuple[float, float]) -> None:
        import cv2  # both installed with the extra
        from socnavgym.envs.utils.utils import w2px, w2py

        sim = self.sim
        centre = w2px(sim.robot.goal_x, scale[0], sim.MAP_X), w2py(sim.robot.goal_y, scale[1], sim.MAP_Y)
        radius = max(1, round(sim.GOAL_RADIUS * scale[0]))
        cv2.circle(image, centre, radius, (0, 255, 0), -1)  # filled: a ring is a faint pixel or two at 64x64

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        with self._own_generators():
            self.sim.reset(seed=int(self.np_random.integers(2**31)))
        self._steps = 0
        self._frame = self._draw()
        self._show()
        return self._frame.copy(), {"outcome": None}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, np.float32), LOW, HIGH)
        with self._own_generators():
            _, reward, terminated, truncated, info = self.sim.step(action)
        self._steps += 1
        end = outcome(info)
        if end is None and self._steps >= self.max_steps:
            truncated, end = True, "timeout"
        self._frame = self._draw()
        self._show()
        detail = collided_with(info) if end == "collision" else ""
        return (
            self._frame.copy(),
            float(reward),
            bool(terminated),
            bool(truncated),
            {"outcome": end, "outcome_detail": detail},
        )

    def render(self) -> np.ndarray | None:
        return self._frame.copy() if self.render_mode in ("rgb_array", "human") else None

    def _show(self) -> None:
        if self.render_mode != "human":
            return
        import pygame  # only where a window is shown

        if self._window is None:
            pygame.init()
            self._window = pygame.display.set_mode((512, 512))
            pygame.display.set_caption("SocNavGym")
        pygame.event.pump()
        surface = pygame.surfarray.make_surface(np.transpose(self._frame, (1, 0, 2)))
        self._window.blit(pygame.transform.smoothscale(surface, (512, 512)), (0, 0))
        pygame.display.flip()

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None


def from_robot(robot, dx: float, dy: float) -> tuple[float, float]:
    """A world vector (dx, dy) in the robot's own frame: (ahead, to its left)."""
    cos, sin = np.cos(robot.orientation), np.sin(robot.orientation)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def outcome(info: dict) -> str | None:
    """How a SocNavGym episode ended, from its last step's info: one of :data:`OUTCOMES` or None."""
    if info.get("SUCCESS"):
        return "success"
    if info.get("COLLISION"):
        return "collision"
    if info.get("OUT_OF_MAP"):
        return "out of map"
    if info.get("TIMEOUT"):
        return "timeout"
    return None


def collided_with(info: dict) -> str:
    """What a collision hit, from its step's info: one of :data:`COLLIDED_WITH`. SocNavGym flags people
    (COLLISION_HUMAN) apart from objects (COLLISION_OBJECT: furniture and walls), and walls again on their
    own (COLLISION_WALL); a step that hit a person and something else counts as the person."""
    if info.get("COLLISION_HUMAN"):
        return "person"
    return "wall" if info.get("COLLISION_WALL") else "furniture"


def make(
    renderer: str = RESOLUTIONS[0], render_mode: str | None = None, max_episode_steps: int = MAX_STEPS
) -> gym.Env:
    """SocNavGym's env; it ends episodes at ``max_episode_steps`` itself (as a timeout), so no TimeLimit."""
    return SocNav(renderer, render_mode, max_episode_steps)


def preprocess(frames: np.ndarray, mode: str = "full") -> np.ndarray:
    """(..., R, R, 3) uint8 top-down frames -> (..., 64, 64, 3), area-averaged."""
    if mode not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {mode!r}; expected one of {PREPROCESSINGS}")
    return area_resize(np.asarray(frames))


PREPROCESSINGS = ("full",)


def keyboard(held: frozenset[str]) -> np.ndarray:
    """Up and down drive forward and back, left and right turn (left: SocNavGym's positive angular
    speed); no sideways motion."""
    forward = float("up" in held) - float("down" in held)
    return np.array([forward, 0.0, float("left" in held) - float("right" in held)], np.float32)


def stand_still(env: gym.Env) -> np.ndarray:
    """A reference, not an agent: the robot never moves, so its collisions are people walking into it:
    how often the scene's people run into a robot that does nothing (docs/socnav.md)."""
    return np.zeros(3, np.float32)


def go_to_goal(env: gym.Env) -> np.ndarray:
    """A reference, not an agent: straight to the goal at full speed (the robot is holonomic: it slides
    there without turning), reading the goal's place from the simulator and blind to everything else."""
    ahead, left = env.unwrapped.goal_from_robot()
    distance = float(np.hypot(ahead, left))
    if distance == 0:
        return np.zeros(3, np.float32)
    speed = min(1.0, distance / env.unwrapped.sim.MAX_ADVANCE_ROBOT)  # no overshoot on the last step
    return np.array([speed * ahead / distance, speed * left / distance, 0.0], np.float32)


def orca(env: gym.Env) -> np.ndarray:
    """A reference, not an agent: SocNavGym's own ORCA velocity for the robot (its ``robot_orca``: toward
    the goal at full speed, avoiding people, furniture and walls, all read from the simulator), turned
    into the robot's frame as SocNavGym does; without its turn towards the motion, which a holonomic
    robot does not need (its turn comes before the step's motion and would throw the step off)."""
    game = env.unwrapped
    sim = game.sim
    with game._own_generators():
        vx, vy = sim.compute_orca_velocity_robot(sim.robot)
    return _towards(sim, np.array([vx, vy]))


# lookahead: how far ahead it looks (steps), the velocities it tries (directions x fractions of full
# speed, and standing still), and the clearance (m) it keeps from people and from furniture and walls
LOOKAHEAD_STEPS = 10
LOOKAHEAD_DIRECTIONS = 32
LOOKAHEAD_SPEEDS = (1.0, 0.5)
LOOKAHEAD_CLEARANCE = {"people": 0.15, "furniture": 0.05}


def _velocities() -> np.ndarray:
    """(V, 2) the velocities lookahead tries, as fractions of full speed: standing still first."""
    angles = np.linspace(0, 2 * np.pi, LOOKAHEAD_DIRECTIONS, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], 1)
    return np.concatenate([np.zeros((1, 2)), *(speed * unit for speed in LOOKAHEAD_SPEEDS)])


def _rectangle(x: float, y: float, theta: float, length: float, width: float):
    import shapely  # installed with SocNavGym (its collision test)

    cos, sin = np.cos(theta), np.sin(theta)
    corners = ((1, 1), (1, -1), (-1, -1), (-1, 1))
    half = [(a * length / 2, b * width / 2) for a, b in corners]
    return shapely.Polygon([(x + a * cos - b * sin, y + a * sin + b * cos) for a, b in half])


def _still_things(sim) -> list:
    """Shapely shapes of the furniture (plants, tables, laptops) and walls."""
    import shapely  # installed with SocNavGym (its collision test)

    still = [shapely.Point(o.x, o.y).buffer(o.radius) for o in sim.plants]
    still += [_rectangle(o.x, o.y, o.orientation, o.length, o.width) for o in sim.tables + sim.laptops]
    return still + [_rectangle(o.x, o.y, o.orientation, o.length, o.thickness) for o in sim.walls]


def nearest_still(sim) -> np.ndarray | None:
    """The world vector (m) from the robot's centre to the nearest point of furniture or a wall (None
    where the room has neither)."""
    import shapely.ops

    still = _still_things(sim)
    if not still:
        return None
    robot = sim.robot
    nearest = shapely.ops.nearest_points(shapely.union_all(still), shapely.Point(robot.x, robot.y))[0]
    return np.array([nearest.x - robot.x, nearest.y - robot.y])


def _towards(sim, velocity: np.ndarray) -> np.ndarray:
    """A world velocity (m/s) as the holonomic robot's action, in its own frame, without turning."""
    action = np.array([*from_robot(sim.robot, *velocity), 0.0]) / sim.MAX_ADVANCE_ROBOT
    return np.clip(action, LOW, HIGH).astype(np.float32)


def lookahead(env: gym.Env) -> np.ndarray:
    """A reference, not an agent: a planner that takes all of the avoiding on itself. People here step
    aside for the robot in one case in ten (the scene's ``prob_to_avoid_robot``) and walk faster than it,
    so ORCA, which leaves half of each avoidance to the other party, is walked into. It tries
    :func:`_velocities` held for LOOKAHEAD_STEPS steps against people going on at their present
    velocities, furniture and walls (read from the simulator), and takes the one that comes closest to
    the goal without coming within LOOKAHEAD_CLEARANCE of anything; when every one does, the one whose
    first collision is latest. Holonomic: it slides, never turns."""
    import shapely

    sim = env.unwrapped.sim
    robot, step = sim.robot, sim.TIMESTEP
    velocities = _velocities() * sim.MAX_ADVANCE_ROBOT  # (V, 2) metres per second
    times = np.arange(1, LOOKAHEAD_STEPS + 1) * step  # (K,)
    path = np.array([robot.x, robot.y]) + velocities[:, None] * times[None, :, None]  # (V, K, 2)
    first_hit = np.full(len(velocities), LOOKAHEAD_STEPS)  # the step of each velocity's first collision

    def note(clearance: np.ndarray, keep: float) -> None:  # (V, K) metres between the robot and obstacles
        hit = clearance < keep
        first_hit[:] = np.minimum(first_hit, np.where(hit.any(1), hit.argmax(1), LOOKAHEAD_STEPS))

    people = sim.static_humans + sim.dynamic_humans
    if people:
        where = np.array([[p.x, p.y] for p in people])  # (P, 2)
        velocity = np.array([[np.cos(p.orientation), np.sin(p.orientation)] for p in people])
        velocity *= np.array([p.speed for p in people])[:, None]
        ahead = where + velocity * times[:, None, None]  # (K, P, 2)
        gap = np.linalg.norm(path[:, :, None] - ahead[None], axis=-1)  # (V, K, P)
        gap -= np.array([p.width / 2 for p in people]) + robot.radius
        note(gap.min(-1), LOOKAHEAD_CLEARANCE["people"])
    still = _still_things(sim)
    if still:
        gap = shapely.distance(shapely.union_all(still), shapely.points(path.reshape(-1, 2)))
        note(gap.reshape(first_hit.size, -1) - robot.radius, LOOKAHEAD_CLEARANCE["furniture"])
    nearest = np.linalg.norm(path - [robot.goal_x, robot.goal_y], axis=-1).min(1)  # (V,) to the goal
    best = np.lexsort((nearest, -first_hit))[0]  # the latest first collision (none), then the goal
    return _towards(sim, velocities[best])


# potential-field: how hard people and the nearest furniture or wall push the robot away when it touches
# them (against the goal's pull of 1), and the gap (m) over which the push falls by e
FIELD_PUSH = {"people": 2.0, "furniture": 2.0}
FIELD_RANGE = {"people": 0.5, "furniture": 0.3}


def potential_field(env: gym.Env) -> np.ndarray:
    """A reference, not an agent: the goal pulls the robot (at full speed, less on the last step), and
    every person and the nearest furniture or wall push it straight away, FIELD_PUSH at contact, falling
    by e every FIELD_RANGE metres of gap; it moves along the sum, at full speed at most. Unlike
    :func:`lookahead`, a smooth function of where things are, which a network fits closely."""
    sim = env.unwrapped.sim
    robot = sim.robot
    here = np.array([robot.x, robot.y])
    goal = np.array([robot.goal_x, robot.goal_y]) - here
    distance = np.linalg.norm(goal)
    force = goal / max(distance, 1e-9) * min(1.0, distance / sim.MAX_ADVANCE_ROBOT)

    def push(away: np.ndarray, gap: float, kind: str) -> np.ndarray:
        norm = np.linalg.norm(away)
        return FIELD_PUSH[kind] * np.exp(-gap / FIELD_RANGE[kind]) * away / max(norm, 1e-9)

    for person in sim.static_humans + sim.dynamic_humans:
        away = here - [person.x, person.y]
        force += push(away, np.linalg.norm(away) - person.width / 2 - robot.radius, "people")
    towards = nearest_still(sim)
    if towards is not None:
        away = -towards
        force += push(away, np.linalg.norm(away) - robot.radius, "furniture")
    force /= max(1.0, np.linalg.norm(force))  # full speed at most
    return _towards(sim, force * sim.MAX_ADVANCE_ROBOT)


# What the simulator's state says of the robot's surroundings, per frame: the targets of the probe
# (scripts/probe_socnav.py) and of V's state head (trainvae.py --label-weight). Training only: the agent
# acts from pixels.
STATE_LABELS = (
    "goal ahead / distance",
    "goal left / distance",
    "goal distance",
    "nearest person distance",
    "furniture ahead / distance",
    "furniture left / distance",
    "furniture gap",
)
LABEL_CAP = 4.0  # metres: distances beyond half the robot's 8 m view count as 4


def state_labels(env: gym.Env) -> np.ndarray:
    """(len(STATE_LABELS),) float32, in their order: the goal's direction from the robot (ahead and to
    its left, over the distance) and its distance, the nearest person's distance, and the nearest
    furniture or wall: its direction (as the goal's) and the gap between it and the robot's edge
    (distances capped at LABEL_CAP; no furniture: direction 0 and the cap)."""
    game = env.unwrapped
    sim, robot = game.sim, game.sim.robot
    ahead, left = game.goal_from_robot()
    distance = max(float(np.hypot(ahead, left)), 1e-6)
    people = sim.static_humans + sim.dynamic_humans
    near = min((float(np.hypot(p.x - robot.x, p.y - robot.y)) for p in people), default=LABEL_CAP)
    labels = [ahead / distance, left / distance, min(distance, LABEL_CAP), min(near, LABEL_CAP)]
    towards = nearest_still(sim)  # in the world's frame
    if towards is None:
        labels += [0.0, 0.0, LABEL_CAP]
    else:
        apart = max(float(np.hypot(*towards)), 1e-6)  # from the robot's centre
        f_ahead, f_left = from_robot(robot, *towards)
        labels += [f_ahead / apart, f_left / apart, min(apart - robot.radius, LABEL_CAP)]
    return np.asarray(labels, np.float32)


# goal-mix: the share of its episodes that head for the goal, and the scale of the brownian noise added
GOAL_MIX_SHARE = 0.5
GOAL_MIX_NOISE = 0.5


def goal_mix(rng: np.random.Generator, n: int) -> Callable[[gym.Env, int], np.ndarray]:
    """A data-generation policy that reads the simulator's state: an episode is brownian (as the random
    policy) or, with probability GOAL_MIX_SHARE, heads for the goal (:func:`go_to_goal`) with GOAL_MIX_NOISE
    times a brownian sequence added, turning included, so the data holds goals reached from many headings."""
    noise = brownian_actions(rng, LOW, HIGH, n)
    if rng.random() >= GOAL_MIX_SHARE:
        return lambda env, t: noise[t]
    return lambda env, t: np.clip(go_to_goal(env) + GOAL_MIX_NOISE * noise[t], LOW, HIGH).astype(np.float32)


# What ego_salient takes for the goal's red, a person's blue or the two blended where they meet: red or
# blue above green by this much (frames in [0, 1]), which holds for their edges blended with the floor at
# 64x64 and for nothing else drawn (furniture is brown, grey, green or black). Brown is held apart from the
# goal's red by its green above its blue (more than EGO_GREY_SPREAD; the goal's edges are grey below red).
EGO_SALIENT_MARGIN = 0.25
EGO_GREY_SPREAD = 0.12


def ego_salient(frames: torch.Tensor) -> torch.Tensor:
    """The goal (GOAL_EGO) and people (PERSON_EGO) in ego frames: (B, 3, H, W) in [0, 1] -> (B, 1, H, W)
    bool. About 2.5% of pixels each; V trained on the plain loss drew people faintly or not at all
    (docs/socnav.md), so ``trainvae.py --salient-weight`` can count these pixels more."""
    r, g, b = frames.float().unbind(1)
    coloured = torch.maximum(r, b) - g > EGO_SALIENT_MARGIN
    return (coloured & (b + EGO_GREY_SPREAD >= g)).unsqueeze(1)


def ego_coloured(frames: torch.Tensor) -> torch.Tensor:
    """Everything coloured in ego frames: the goal, people and furniture (brown tables, green plants),
    what the floor, the walls and the outside (all grey) are not: the largest channel above the smallest
    by EGO_SALIENT_MARGIN. (B, 3, H, W) in [0, 1] -> (B, 1, H, W) bool; about 6.5% of pixels."""
    frames = frames.float()
    return (frames.amax(1, keepdim=True) - frames.amin(1, keepdim=True)) > EGO_SALIENT_MARGIN


# What furniture counts in ``graded``: a share of what the goal and people count. The coloured mask, which
# counts furniture as much as them, kept furniture and lost people (docs/socnav.md).
EGO_FURNITURE_SHARE = 0.3


def ego_graded(frames: torch.Tensor) -> torch.Tensor:
    """The goal and people (:func:`ego_salient`) at 1 and the rest of what is coloured (furniture,
    :func:`ego_coloured`) at EGO_FURNITURE_SHARE, everything else 0: (B, 3, H, W) in [0, 1] -> (B, 1, H, W)
    float. With ``--salient-weight W`` a person's pixel weighs W in V's loss, a table's
    1 + (W - 1) x EGO_FURNITURE_SHARE."""
    goal_people = ego_salient(frames)
    return torch.where(goal_people, 1.0, EGO_FURNITURE_SHARE * ego_coloured(frames).float())


# The masks ``trainvae.py --salient`` names, the first the default.
EGO_SALIENCE = {"goal-people": ego_salient, "coloured": ego_coloured, "graded": ego_graded}


SPEC = EnvSpec(
    name="socnav",
    make=make,
    preprocess=preprocess,
    preprocessings=PREPROCESSINGS,
    action_size=3,
    action_low=LOW,
    action_high=HIGH,
    squash=torch.tanh,
    to_env_action=lambda action: np.asarray(action, np.float32),
    policies={"brownian": lambda rng, n: brownian_actions(rng, LOW, HIGH, n)},
    max_episode_steps=MAX_STEPS,
    model=ModelSizes(latent=32, hidden=256, gaussians=5, controller_inputs=("z", "h"), controller_bias=True),
    renderers=RESOLUTIONS,
    done_weight=10.0,
    outcomes=OUTCOMES,
    keyboard=keyboard,
    references={
        "go-to-goal": go_to_goal,
        "orca": orca,
        "lookahead": lookahead,
        "potential-field": potential_field,
        "stand-still": stand_still,
    },
    state_policies={"goal-mix": goal_mix},
    labels=state_labels,
    label_names=STATE_LABELS,
)
