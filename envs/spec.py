"""What the pipeline needs to know about a game: one :class:`EnvSpec` per environment.

Every stage asks the spec instead of knowing the game: generation builds the env, preprocesses its frames
and draws random actions from it; V and M take their default sizes from it; the controller stage maps
C's outputs to actions with it. The rest of the code never names a game.

Actions exist in two forms. The *agent action* is a float32 vector of ``action_size`` numbers: what C's
squashed outputs are, what rollout files store and what M reads. The *env action* is what ``env.step``
takes, made from an agent action by :attr:`EnvSpec.to_env_action` (CarRacing: the same three numbers;
a discrete game: the index of the largest entry).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

CONTROLLER_INPUTS = ("z", "c", "h")  # what C may read: V's latent, M's LSTM cell state, M's hidden state


@dataclass(frozen=True)
class ModelSizes:
    """The sizes a new run of this env starts from; later stages read them from checkpoints.

    Attributes:
        latent: z, V's latent size.
        hidden: h, M's LSTM size.
        gaussians: mixture components per latent dimension of M.
        controller_inputs: what C reads, in order (a subset of ``z``, ``c``, ``h``).
        controller_bias: whether C's linear layer has a bias.
    """

    latent: int = 32
    hidden: int = 256
    gaussians: int = 5
    controller_inputs: tuple[str, ...] = ("z", "h")
    controller_bias: bool = True

    def __post_init__(self) -> None:
        if not self.controller_inputs or any(i not in CONTROLLER_INPUTS for i in self.controller_inputs):
            raise ValueError(
                f"controller_inputs must be drawn from {CONTROLLER_INPUTS}: {self.controller_inputs}"
            )


# A random policy: (rng, horizon) -> (horizon, action_size) float32 agent actions, all drawn up front,
# so a rollout's actions depend on its seed alone.
RandomPolicy = Callable[[np.random.Generator, int], np.ndarray]

# A data-generation policy that reads the simulator's state: (rng, horizon) -> act(env, t) -> the agent
# action at step t; whatever it draws at random it draws from ``rng``, so a rollout depends on its seed alone.
StatePolicy = Callable[[np.random.Generator, int], Callable[[gym.Env, int], np.ndarray]]


@dataclass(frozen=True)
class EnvSpec:
    """One environment, as every stage of the pipeline sees it.

    Attributes:
        name: what ``--env`` takes and what rollout files and checkpoints record.
        make: ``make(renderer, render_mode, max_episode_steps) -> gym.Env``; ``render_mode`` is None
            (frames from observations only), ``rgb_array`` or ``human``; reaching ``max_episode_steps``
            truncates.
        preprocess: ``preprocess(observations, mode)``: (..., H, W, C) observations -> (..., 64, 64, 3)
            uint8 frames for V, bit-identical for a frame alone or in any batch.
        preprocessings: the modes ``preprocess`` knows; the first is the default.
        action_size: length of the agent action (C's outputs, M's action input, rollout files).
        action_low, action_high: bounds of the agent action.
        squash: C's raw outputs (..., action_size) -> agent actions (..., action_size), torch.
        to_env_action: one agent action (action_size,) float32 -> what ``env.step`` takes.
        policies: random policies of data generation by name; the first is the default.
        state_policies: data-generation policies that read the simulator's state (never the default),
            by name, beside ``policies`` in ``generation_script.py --policy``.
        max_episode_steps: the episode cap (time limit) of generation, training and testing.
        model: default model sizes of a new run.
        renderers: implementations ``make`` can build; the first is the default.
        inexact_renderers: those whose pixels differ from the game's own (training only, never a test).
        aliases: other names older files recorded for this env.
        reference_returns: published scores drawn as lines on learning curves and test histograms.
        target_return: the evaluated return at which a controller search stops by default (on the
            game's own scale); None: it runs every generation it is given.
        reward_head: M learns the reward (CarRacing); False: the reward is +1 per step alive, and a
            dream counts the steps survived (Doom).
        done_weight: weight of the rare positive (death) targets in M's termination loss.
        outcomes: how an episode can end, for games that say (``info["outcome"]`` of the last step, e.g.
            ``success`` or ``collision``); the test reports the share of each, and of what the last step's
            ``info["outcome_detail"]`` says where it says something (what a collision hit). Empty: returns
            only.
        action_repeat: frames of the game per agent step (see :meth:`with_action_repeat`); 1: every
            frame is a step.
        references: controllers that read the simulator's state instead of pixels, by name: ``f(env)``
            -> the agent action for the env's current state. Yardsticks an agent is compared with on the
            same episodes (``test_controller.py --reference NAME``), not agents.
        keyboard: the agent action of the arrow keys held (a set of ``left``, ``right``, ``up``,
            ``down``) -> (action_size,) float32, for playing a dream by hand (``scripts/dream.py
            --keyboard``); None: the game has no such mapping.
        salient: the pixels V should not lose, few as they are (SocNavGym's goal and people), by name
            (``trainvae.py --salient``; the first is the default): (B, 3, H, W) frames in [0, 1] ->
            (B, 1, H, W) bool, or float weights in [0, 1], torch; a pixel's squared error counts
            1 + (``--salient-weight`` - 1) x its mark in V's loss.
            Empty: the game marks none.
        labels: what the simulator's state says at the env's current frame, ``f(env)`` -> (K,) float32
            in the order of ``label_names``: recorded beside every frame of a rollout, and V's state head
            is trained on them (``trainvae.py --label-weight``); training only, never an agent's input.
            None: the game records none.
        label_names: the K labels' names.
    """

    name: str
    make: Callable[..., gym.Env]
    preprocess: Callable[[np.ndarray, str], np.ndarray]
    preprocessings: tuple[str, ...]
    action_size: int
    action_low: np.ndarray
    action_high: np.ndarray
    squash: Callable[[torch.Tensor], torch.Tensor]
    to_env_action: Callable[[np.ndarray], Any]
    policies: Mapping[str, RandomPolicy]
    max_episode_steps: int
    model: ModelSizes = field(default_factory=ModelSizes)
    renderers: tuple[str, ...] = ("default",)
    inexact_renderers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    reference_returns: Mapping[str, float] = field(default_factory=dict)
    target_return: float | None = None
    reward_head: bool = True
    done_weight: float = 1.0
    outcomes: tuple[str, ...] = ()
    action_repeat: int = 1
    keyboard: Callable[[frozenset[str]], np.ndarray] | None = None
    references: Mapping[str, Callable[[gym.Env], np.ndarray]] = field(default_factory=dict)
    state_policies: Mapping[str, StatePolicy] = field(default_factory=dict)
    salient: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    labels: Callable[[gym.Env], np.ndarray] | None = None
    label_names: tuple[str, ...] = ()

    @property
    def default_preprocessing(self) -> str:
        return self.preprocessings[0]

    @property
    def default_renderer(self) -> str:
        return self.renderers[0]

    @property
    def default_policy(self) -> str:
        return next(iter(self.policies))

    def make_env(
        self,
        renderer: str | None = None,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
    ) -> gym.Env:
        """The env with this spec's defaults for whatever is None."""
        renderer = renderer or self.default_renderer
        if renderer not in self.renderers:
            raise ValueError(f"{self.name} has no renderer {renderer!r}; expected one of {self.renderers}")
        return self.make(
            renderer=renderer,
            render_mode=render_mode,
            max_episode_steps=max_episode_steps or self.max_episode_steps,
        )

    def with_action_repeat(self, k: int) -> EnvSpec:
        """This game with the agent deciding every ``k`` frames: env ``<name>-repeat<k>``.

        Each step applies the agent's action to ``k`` frames of the game and returns the sum of their
        rewards and the last frame (the frames between are not drawn where the game can skip them:
        FastCarRacing). Everything that counts steps counts agent steps: the episode cap becomes
        ``ceil(max_episode_steps / k)`` (the same frames of the game: CarRacing's 1000 are 250 steps
        of 4), rollouts store one frame per agent step, M predicts k frames ahead, dreams last as many
        steps. Returns are the game's own, over the same frames.
        """
        if k < 1 or self.action_repeat != 1:
            raise ValueError(f"action repeat {k} of {self.name}: expected k >= 1 on a game without one")
        if k == 1:
            return self
        return dataclasses.replace(
            self,
            name=f"{self.name}{REPEAT}{k}",
            make=functools.partial(_make_repeated, self.make, k, self.max_episode_steps),
            max_episode_steps=-(-self.max_episode_steps // k),
            aliases=(),
            action_repeat=k,
        )


REPEAT = "-repeat"  # <game>-repeat<k>: see EnvSpec.with_action_repeat


class ActionRepeat(gym.Wrapper):
    """Each step plays the action for ``k`` frames: the rewards summed, the last frame returned.

    Frames before the last are not drawn where the game lets them be skipped (an unwrapped env with a
    ``render_state`` attribute and a ``draw_state()`` method, as FastCarRacing); when the episode ends on
    such a frame, it is drawn then. ``info["frames"]`` is the frames played (fewer than ``k`` when the
    episode ends within them).
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        self.k = k

    def step(self, action):
        game = self.env.unwrapped
        skippable = hasattr(game, "render_state")
        total = 0.0
        try:
            for frame in range(1, self.k + 1):
                if skippable:
                    game.render_state = frame == self.k
                obs, reward, terminated, truncated, info = self.env.step(action)
                total += float(reward)
                if terminated or truncated:
                    if skippable and frame < self.k:
                        obs = game.draw_state()
                    break
        finally:
            if skippable:
                game.render_state = True
        return obs, total, terminated, truncated, {**info, "frames": frame}


def _make_repeated(
    make: Callable[..., gym.Env],
    k: int,
    game_frames: int,
    renderer: str,
    render_mode: str | None,
    max_episode_steps: int,
) -> gym.Env:
    """``make``'s env under :class:`ActionRepeat`, its time limit in frames: ``k`` per step, and at the
    default cap the game's own (CarRacing with k = 3: 1000 frames, 333 steps of 3 and one of 1)."""
    default = -(-game_frames // k)
    frames = game_frames if max_episode_steps == default else max_episode_steps * k
    return ActionRepeat(make(renderer=renderer, render_mode=render_mode, max_episode_steps=frames), k)
