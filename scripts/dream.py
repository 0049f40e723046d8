"""Watch M dream, or drive inside the dream yourself.

Usage:
    python scripts/dream.py --logdir exp_dir --out dream.gif [--controller] [--temperature 1.0]
    python scripts/dream.py --logdir exp_dir --keyboard          # a pygame window: needs a display

A dream starts from the first frame of a random training rollout (the latent cache), then M samples each
next z at --temperature under the actions of: the brownian random policy of data generation (default),
the trained controller <logdir>/ctrl/best.tar (--controller), or the keyboard (--keyboard: arrow keys
steer, accelerate and brake, as in CarRacing's own play mode; Esc quits, R restarts). V decodes every
dreamed z into the frame shown. The return is the sum of M's predicted rewards.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.dream import (  # noqa: E402
    DEFAULT_TEMPERATURE,
    DREAM_EPISODES,
    load_dream_cell,
    load_start_pool,
    start_latents,  # noqa: E402
)
from models.mdrnn import sample_latent  # noqa: E402
from utils.cli import UserError, make_parser, positive_float, positive_int, run  # noqa: E402
from utils.seeding import derive_seed  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument(
        "--out", type=Path, default=Path("dream.gif"), help="animation to write (.gif or .mp4)"
    )
    parser.add_argument("--controller", action="store_true", help="act with <logdir>/ctrl/best.tar")
    parser.add_argument("--keyboard", action="store_true", help="drive with the arrow keys in a window")
    parser.add_argument(
        "--temperature", type=positive_float, default=DEFAULT_TEMPERATURE, help="tau of M's sampling"
    )
    parser.add_argument("--steps", type=positive_int, default=300, help="dream length cap")
    parser.add_argument("--fps", type=positive_int, default=25, help="frames per second shown and written")
    parser.add_argument("--scale", type=positive_int, default=6, help="window / animation enlargement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start frame and M's draws")
    return parser


class DreamEnv:
    """M as an environment of latents: reset() -> z (1, L); step(action (3,)) -> z, reward, done."""

    def __init__(self, logdir: Path, temperature: float, seed: int) -> None:
        self.cell, _ = load_dream_cell(logdir)
        self.mu, self.offsets = load_start_pool(logdir)
        self.temperature = temperature
        self.rng = np.random.default_rng(derive_seed(seed, DREAM_EPISODES, 0xD8))
        self.generator = torch.Generator().manual_seed(derive_seed(seed, DREAM_EPISODES, 0xD9))

    def reset(self) -> torch.Tensor:
        self.z = start_latents(self.mu, self.offsets, 1, self.rng, "first")
        self.hidden = self.cell.initial_hidden(1)
        return self.z

    @torch.no_grad()
    def step(self, action: np.ndarray) -> tuple[torch.Tensor, float, bool]:
        out = self.cell(torch.as_tensor(action, dtype=torch.float32)[None], self.z, self.hidden)
        self.hidden = out.hidden
        self.z = sample_latent(out.mus, out.sigmas, out.logpi, self.temperature, self.generator)
        return self.z, float(out.rewards[0]), bool(torch.sigmoid(out.terminations[0]) > 0.5)


def controller_actor(logdir: Path, env: DreamEnv):
    """a_t = C(z_t, h_t), on the dream's own LSTM state."""
    from data.controller_policy import load_controller_agent
    from models.controller import batched_controller_actions, unflatten_controller_vectors

    _, params = load_controller_agent(logdir)
    w, b = unflatten_controller_vectors(params[None], latent=env.cell.latent, hidden=env.cell.hidden)
    return lambda t, z: batched_controller_actions(w, b, z[:, None], env.hidden[0][:, None])[0, 0].numpy()


def record(args, env: DreamEnv, vae) -> None:
    from data.policies import brownian_actions
    from utils.visuals import save_animation, to_uint8

    if args.controller:
        act = controller_actor(args.logdir, env)
    else:
        actions = brownian_actions(env.rng, np.array([-1.0, 0.0, 0.0]), np.ones(3), args.steps)
        act = lambda t, z: actions[t]  # noqa: E731
    z, zs, total = env.reset(), [], 0.0
    for t in range(args.steps):
        zs.append(z)
        z, reward, done = env.step(act(t, z))
        total += reward
        if done:
            break
    with torch.no_grad():
        frames = to_uint8(vae.decode(torch.cat(zs)))
    save_animation(list(frames.repeat(args.scale, 1).repeat(args.scale, 2)), args.out, fps=args.fps)
    print(f"wrote {args.out}: {len(zs)} dreamed frames, dream return {total:.1f}")


def keyboard(args, env: DreamEnv, vae) -> None:
    """Drive in the dream; the window shows V's decoding of each dreamed z."""
    import os

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
    pygame.display.set_caption("World Models: driving in M's dream")
    font, clock = pygame.font.Font(None, 22), pygame.time.Clock()
    z, total, steps, running = env.reset(), 0.0, 0, True
    while running:
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                running = False
            if event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                z, total, steps = env.reset(), 0.0, 0
        keys = pygame.key.get_pressed()
        action = np.array(
            [
                float(keys[pygame.K_RIGHT]) - float(keys[pygame.K_LEFT]),
                float(keys[pygame.K_UP]),
                0.8 * float(keys[pygame.K_DOWN]),  # CarRacing's play mode brakes with 0.8
            ],
            np.float32,
        )
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
    from models.vae import load_vae

    torch.manual_seed(args.seed)
    env = DreamEnv(args.logdir, args.temperature, args.seed)
    vae, _ = load_vae(args.logdir)
    if args.keyboard:
        keyboard(args, env, vae)
    else:
        record(args, env, vae)


if __name__ == "__main__":
    run(main, build_parser())
