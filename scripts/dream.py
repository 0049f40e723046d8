"""Watch M dream, or drive inside the dream yourself.

Usage:
    python scripts/dream.py --logdir exp_dir --out dream.gif [--controller] [--temperature 1.0]
    python scripts/dream.py --logdir exp_dir --keyboard          # a pygame window: needs a display

A dream (models/dream.py) starts from the first frame of a random rollout of the latent cache,
then M samples each next z at --temperature under the actions of: the env's default random policy of
data generation (default), the trained controller <logdir>/ctrl/best.tar (--controller), or the
arrow keys (--keyboard, as the env maps them: CarRacing steers, accelerates and brakes as in its own
play mode, Doom moves left and right; Esc quits, R restarts). V decodes every dreamed z into the frame
shown. The return is the sum of M's predicted rewards (for an env whose reward is survival, such as Doom,
the frames survived).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from envs import get_env_spec  # noqa: E402
from experiment.logdir import (  # noqa: E402
    load_agent_parts,
    load_data_record,
    load_dream_cell,
    load_start_latents,
    load_vae,
)
from models.controller import ControllerBatch  # noqa: E402
from models.dream import Dream, add_temperature_flag, decode_latents, start_latents  # noqa: E402
from utils.cli import UserError, animation_file, make_parser, positive_int, run  # noqa: E402
from utils.seeding import DREAM_EPISODES, derive_seed  # noqa: E402
from utils.visuals import save_animation  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument(
        "--out", type=animation_file, default=Path("dream.gif"), help="animation to write (.gif or .mp4)"
    )
    parser.add_argument("--controller", action="store_true", help="act with <logdir>/ctrl/best.tar")
    parser.add_argument("--keyboard", action="store_true", help="play with the arrow keys in a window")
    add_temperature_flag(parser, "the dream shown")
    parser.add_argument("--steps", type=positive_int, default=300, help="dream length cap")
    parser.add_argument("--fps", type=positive_int, default=25, help="frames per second shown and written")
    parser.add_argument("--scale", type=positive_int, default=6, help="window / animation enlargement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start frame and M's draws")
    return parser


class OneDream:
    """A single dream (a :class:`models.dream.Dream` of one row) that restarts from a random first frame."""

    def __init__(self, logdir: Path, temperature: float, seed: int) -> None:
        cell, _ = load_dream_cell(logdir)
        self.mu, self.offsets = load_start_latents(logdir)
        self.temperature = temperature
        # Streams of their own: (seed, DREAM_EPISODES, 0xD8[, 1]) is used by nothing else.
        self.rng = np.random.default_rng(derive_seed(seed, DREAM_EPISODES, 0xD8))
        generator = torch.Generator().manual_seed(derive_seed(seed, DREAM_EPISODES, 0xD8, 1))
        self.env = get_env_spec(load_data_record(logdir).env)
        survival = not self.env.reward_head  # Doom: the frames survived
        self.dream = Dream(cell, temperature, generator=generator, survival=survival)

    def reset(self) -> torch.Tensor:
        """z_0 (1, L)."""
        return self.dream.reset(start_latents(self.mu, self.offsets, 1, self.rng, "first"))

    def step(self, action: np.ndarray) -> tuple[torch.Tensor, float, bool]:
        """z_{t+1} (1, L), reward, done under one agent action (A,)."""
        z, reward, done = self.dream.step(torch.as_tensor(action, dtype=torch.float32)[None])
        return z, float(reward[0]), bool(done[0])


def controller_actor(logdir: Path, dream: OneDream):
    """a_t = squash(C(z_t, h_t[, c_t])), on the dream's own LSTM state."""
    spec, params, _ = load_agent_parts(logdir)
    controller, squash = ControllerBatch(spec.controller, params[None]), get_env_spec(spec.env).squash

    def act(t: int, z: torch.Tensor) -> np.ndarray:
        h, c = dream.dream.hidden
        return squash(controller.raw_rows(z, h, c))[0].numpy()

    return act


def record(args, dream: OneDream, vae) -> None:
    if args.controller:
        act = controller_actor(args.logdir, dream)
    else:
        env = dream.env
        actions = env.policies[env.default_policy](dream.rng, args.steps)
        act = lambda t, z: actions[t]  # noqa: E731
    z, zs, total = dream.reset(), [], 0.0
    for t in range(args.steps):
        zs.append(z)
        z, reward, done = dream.step(act(t, z))
        total += reward
        if done:
            break
    frames = decode_latents(vae, torch.cat(zs))
    save_animation(list(frames.repeat(args.scale, 1).repeat(args.scale, 2)), args.out, fps=args.fps)
    print(f"wrote {args.out}: {len(zs)} dreamed frames, dream return {total:.1f}")


def keyboard(args, env: OneDream, vae) -> None:
    """Play in the dream with the arrow keys, as the env maps them (EnvSpec.keyboard); the window shows V's
    decoding of each dreamed z."""
    if env.env.keyboard is None:
        raise UserError(f"--keyboard: {env.env.name} maps no keys to actions (EnvSpec.keyboard); use --out")
    try:
        import pygame

        pygame.display.init()  # not pygame.init(): no audio, which has no device on servers
        pygame.font.init()
        size = 64 * args.scale
        screen = pygame.display.set_mode((size, size + 24))
        driver = pygame.display.get_driver()
    except Exception as err:  # no display: one line, not a pygame traceback
        raise UserError(f"--keyboard needs a display ({err}); run under xvfb-run or use --out") from None
    # Without a display SDL quietly falls back to an invisible window: say so instead of driving blind.
    if driver in ("offscreen", "dummy") and os.environ.get("SDL_VIDEODRIVER") != driver:
        pygame.quit()
        raise UserError(
            f"--keyboard needs a display (SDL found none: '{driver}'); run under xvfb-run or use --out"
        )
    pygame.display.set_caption(f"World Models: playing {env.env.name} in M's dream")
    font, clock = pygame.font.Font(None, 22), pygame.time.Clock()
    z, total, steps, running = env.reset(), 0.0, 0, True
    while running:
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                running = False
            if event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                z, total, steps = env.reset(), 0.0, 0
        keys = pygame.key.get_pressed()
        arrows = {"left": pygame.K_LEFT, "right": pygame.K_RIGHT, "up": pygame.K_UP, "down": pygame.K_DOWN}
        action = env.env.keyboard(frozenset(name for name, key in arrows.items() if keys[key]))
        with torch.no_grad():
            frame = (vae.decode(z)[0].permute(2, 1, 0).clamp(0, 1) * 255).byte().numpy()  # (W, H, 3)
        surface = pygame.transform.scale(pygame.surfarray.make_surface(frame), (size, size))
        screen.fill((0, 0, 0))
        screen.blit(surface, (0, 0))
        text = f"step {steps}  return {total:7.1f}  tau {env.temperature}  (R: restart, Esc: quit)"
        screen.blit(font.render(text, True, (255, 255, 255)), (4, size + 4))
        pygame.display.flip()
        z, reward, done = env.step(action)
        total, steps = total + reward, steps + 1
        if done or steps >= args.steps:
            print(f"dream over after {steps} steps: return {total:.1f}")
            z, total, steps = env.reset(), 0.0, 0
        clock.tick(args.fps)
    pygame.quit()


def main(args) -> None:
    torch.manual_seed(args.seed)
    env = OneDream(args.logdir, args.temperature, args.seed)
    vae, _ = load_vae(args.logdir)
    if args.keyboard:
        keyboard(args, env, vae)
    else:
        record(args, env, vae)


if __name__ == "__main__":
    run(main, build_parser())
