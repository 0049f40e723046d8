"""VizDoom take-cover, the paper's second experiment (``--env doom-takecover``): dodge fireballs.

The paper's game (its gym-doom set-up), as far as ViZDoom allows: the status bar drawn and then cropped
away (rows 0..399 of 480, the same 5/6 of the height at any resolution), the episode starting at tic 14,
a 2100-frame cap (a truncation, never a death), frame skip 1, +1 per frame alive. ViZDoom's own
take_cover.cfg has no HUD and no time limit.

Skill 4, not 5: the paper's gym-doom is said to have run skill 5, but its random policy survived
210 +- 108 frames, and here (40 episodes of the paper's random policy) skill 4 gives 266 +- 135 while
ViZDoom's skill 5 (nightmare) gives 82 +- 48. Skill 4 is the game the paper's numbers describe.

* Renderers are resolutions: ``160x120`` (the default, ~8,000 raw steps/s on one core) or ``640x480``
  (the paper's); both crop and area-average to the same 64x64 view.
* The agent action is one number in [-1, 1]; the game gets left (a < -1/3), nothing, or right (a > 1/3).
  C's output is tanh(W [z, c, h]) with no bias (1,088 parameters with z = 64, h = c = 512).
* Random rollouts hold a ~ U(-1, 1) for a random 1..10 frames, then redraw (the paper's policy).
* ViZDoom's files (``_vizdoom/``, ``_vizdoom.ini``) go to ``$XDG_CACHE_HOME/world-models/vizdoom``,
  not into the working directory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from envs.policies import held_actions
from envs.preprocess import area_resize
from envs.spec import EnvSpec, ModelSizes
from utils.cli import UserError

RESOLUTIONS = ("160x120", "640x480")
SKILL = 4  # see the module docstring
START_TIC = 14
MAX_FRAMES = 2100
LOW, HIGH = np.array([-1.0], np.float32), np.array([1.0], np.float32)
BUTTONS = ([1, 0], [0, 0], [0, 1])  # MOVE_LEFT, nothing, MOVE_RIGHT
_CHDIR = threading.Lock()  # the engine starts in the working directory: init() changes it briefly


def vizdoom_dir() -> Path:
    """Where ViZDoom may write its files."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "world-models" / "vizdoom"


class DoomTakeCover(gym.Env):
    """ViZDoom's take_cover map as a Gymnasium env: RGB frames (H, W, 3), 3 discrete actions, +1 per tic.

    ``reset(seed=s)`` makes the episode a function of ``s`` (ViZDoom's own seed): the same seed and
    actions give the same frames.
    """

    metadata = {"render_modes": ["rgb_array", "human"]}

    def __init__(
        self, resolution: str = "160x120", render_mode: str | None = None, skill: int = SKILL
    ) -> None:
        try:
            import vizdoom as vzd  # only games of this env need it
        except ImportError:
            raise UserError("--env doom-takecover needs vizdoom: pip install -r requirements.txt") from None

        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; expected one of {RESOLUTIONS}")
        width, height = map(int, resolution.split("x"))
        self.render_mode = render_mode
        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        files = vizdoom_dir()
        files.mkdir(parents=True, exist_ok=True)
        game.set_doom_config_path(str(files / "_vizdoom.ini"))
        game.set_doom_skill(skill)
        game.set_screen_resolution(getattr(vzd.ScreenResolution, f"RES_{width}X{height}"))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_render_hud(True)
        game.set_episode_start_time(START_TIC)
        game.set_episode_timeout(0)  # the cap is the TimeLimit's: a truncation, not a death
        game.set_window_visible(render_mode == "human")
        game.set_sound_enabled(False)
        with _CHDIR:
            cwd = os.getcwd()
            os.chdir(files)
            try:
                game.init()
            finally:
                os.chdir(cwd)
        self.game = game
        self.observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self._frame = np.zeros((height, width, 3), np.uint8)

    def _observe(self) -> np.ndarray:
        state = self.game.get_state()
        if state is not None:  # None once the player is dead: keep the last frame
            self._frame = np.array(state.screen_buffer)
        return self._frame

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.game.set_seed(int(seed) & 0x7FFFFFFF)
        self.game.new_episode()
        return self._observe().copy(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = self.game.make_action(BUTTONS[int(action)], 1)
        dead = self.game.is_episode_finished()
        return self._observe().copy(), float(reward), dead, False, {}

    def render(self) -> np.ndarray | None:
        """The last frame (in ``human`` mode ViZDoom shows it in its own window as well)."""
        return self._frame.copy() if self.render_mode in ("rgb_array", "human") else None

    def close(self) -> None:
        self.game.close()


def make(
    renderer: str = "160x120", render_mode: str | None = None, max_episode_steps: int = MAX_FRAMES
) -> gym.Env:
    return TimeLimit(DoomTakeCover(renderer, render_mode), max_episode_steps=max_episode_steps)


def preprocess(frames: np.ndarray, mode: str = "crop") -> np.ndarray:
    """(..., H, W, 3) uint8 game frames -> (..., 64, 64, 3): ``crop`` drops the status bar (the bottom
    sixth, as the paper's rows 400..479 of 480), ``full`` keeps it."""
    if mode not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {mode!r}; expected one of {PREPROCESSINGS}")
    frames = np.asarray(frames)
    if mode == "crop":
        frames = frames[..., : frames.shape[-3] * 5 // 6, :, :]
    return area_resize(frames)


def to_env_action(action: np.ndarray) -> int:
    """One continuous number -> 0 (left) below -1/3, 2 (right) above 1/3, else 1 (nothing)."""
    a = float(action[0])
    return 0 if a < -1 / 3 else 2 if a > 1 / 3 else 1


PREPROCESSINGS = ("crop", "full")

SPEC = EnvSpec(
    name="doom-takecover",
    make=make,
    preprocess=preprocess,
    preprocessings=PREPROCESSINGS,
    action_size=1,
    action_low=LOW,
    action_high=HIGH,
    squash=torch.tanh,
    to_env_action=to_env_action,
    policies={"held": lambda rng, n: held_actions(rng, LOW, HIGH, n, max_hold=10)},
    max_episode_steps=MAX_FRAMES,
    model=ModelSizes(
        latent=64, hidden=512, gaussians=5, controller_inputs=("z", "c", "h"), controller_bias=False
    ),
    renderers=RESOLUTIONS,
    reference_returns={"paper: 1092": 1092.0, "solved: 750": 750.0},
    reward_head=False,
    done_weight=10.0,
    keyboard=lambda held: np.array([float("right" in held) - float("left" in held)], np.float32),
)
