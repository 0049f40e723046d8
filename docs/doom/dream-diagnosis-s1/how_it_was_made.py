"""What the seed-1 fixed M's controllers do in the game and in the dream (the record beside this file).

The recipe's C search on this M (docs/doom/mfix-recipe-s1) raised its dream survival to ~400 frames while
its real survival stayed at 188-192 at every evaluation. For its best controller (and the same search
run with --dream-done sample, docs/doom/mfix-s1-dreamsample, at generation 49), side by side:
- in the game, 16 episodes (z sampled, as C was trained; the probe namespace: no search, pick or test
  episode): frames survived, the share of frames C moves left / stays / moves right, mean |a|, the mean
  norm of z, and M's death probability along the real steps;
- in M's dream, 128 dreams (tau 1.15, threshold, real first frames): the same.

Run from the repository root with the logdirs under ~/runs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, ".")
from driving.agent import Agent  # noqa: E402
from driving.episode import z_noise  # noqa: E402
from envs import get_env_spec  # noqa: E402
from experiment.logdir import load_agent_parts, load_dream_cell, load_start_latents  # noqa: E402
from models.dream import Dream, start_latents  # noqa: E402
from models.vae import frames_to_tensor  # noqa: E402
from utils.seeding import PROBE_EPISODES, episode_seed  # noqa: E402

torch.set_num_threads(1)
RUNS = Path.home() / "runs"
LOGDIRS = {
    "threshold search, best": RUNS / "doom-mfix-s1",
    "sample search, best at 49": RUNS / "doom-s1-sample",
}
EPISODES, DREAMS, STEPS = 16, 128, 2100


def summary(actions: np.ndarray, z: np.ndarray, p: np.ndarray, lengths: np.ndarray) -> dict:
    """Actions (T,) over every step of every episode, z (T, L), M's death probability (T,)."""
    return {
        "survived_mean": float(lengths.mean()),
        "survived_median": float(np.median(lengths)),
        "left": float((actions < -1 / 3).mean()),
        "stay": float((np.abs(actions) <= 1 / 3).mean()),
        "right": float((actions > 1 / 3).mean()),
        "abs_action_mean": float(np.abs(actions).mean()),
        "z_norm_mean": float(np.linalg.norm(z, axis=1).mean()),
        "p_death_mean": float(p.mean()),
        "p_death_gt05_per_1000": float((p > 0.5).mean() * 1000),
    }


@torch.no_grad()
def real(logdir: Path) -> dict:
    spec, params, _ = load_agent_parts(logdir)
    agent, env_spec = Agent(spec), get_env_spec(spec.env)
    cell, _ = load_dream_cell(logdir)
    controllers = agent.controllers(params[None])
    env = env_spec.make("160x120", max_episode_steps=STEPS)
    actions, zs, ps, lengths = [], [], [], []
    for i in range(EPISODES):
        seed = episode_seed(0, PROBE_EPISODES, i)
        obs, _ = env.reset(seed=seed)
        noise, state, t = z_noise(seed), agent.initial_state(1), 0
        while True:
            eps = torch.as_tensor(noise.standard_normal(agent.latent)[None], dtype=torch.float32)
            mu, logsigma = agent.vae.encode(frames_to_tensor(agent.preprocess(obs[None])))
            z = mu + logsigma.exp() * eps
            h, c = state
            action = env_spec.squash(controllers.raw_rows(z, h, c))
            ps.append(float(torch.sigmoid(cell(action, z, state).terminations)[0]))
            state = agent.mdrnn.recurrent_step(action, z, state)
            actions.append(float(action[0, 0]))
            zs.append(z[0].numpy())
            obs, _, terminated, truncated, _ = env.step(env_spec.to_env_action(action[0].numpy()))
            t += 1
            if terminated or truncated:
                break
        lengths.append(t)
    env.close()
    return summary(np.array(actions), np.array(zs), np.array(ps), np.array(lengths))


@torch.no_grad()
def dream(logdir: Path) -> dict:
    """The loop of models.dream.dream_returns, recording z, the action and M's death probability."""
    spec, params, _ = load_agent_parts(logdir)
    cell, _ = load_dream_cell(logdir)
    squash = get_env_spec(spec.env).squash
    dreamer = Dream(cell, 1.15, "threshold", torch.Generator().manual_seed(1), survival=True)
    controllers = Agent(spec).controllers(np.repeat(params[None], DREAMS, axis=0))
    z = dreamer.reset(start_latents(*load_start_latents(logdir), DREAMS, np.random.default_rng(2), "first"))
    rows, lengths = torch.arange(DREAMS), torch.zeros(DREAMS)
    actions, zs, ps = [], [], []
    for _ in range(STEPS):
        h, c = dreamer.hidden
        action = squash(controllers.raw_rows(z, h, c))
        actions.append(action[:, 0].numpy())
        zs.append(z.numpy())
        ps.append(torch.sigmoid(cell(action, z, dreamer.hidden).terminations).numpy())
        z, _, done = dreamer.step(action)
        lengths[rows] += 1
        if done.any():
            keep = torch.nonzero(~done).squeeze(1)
            if len(keep) == 0:
                break
            rows, controllers, z = rows[keep], controllers.rows(keep), dreamer.keep(keep)
    return summary(np.concatenate(actions), np.concatenate(zs), np.concatenate(ps), lengths.numpy())


def main() -> None:
    out = {}
    for name, logdir in LOGDIRS.items():
        out[name] = {"game": real(logdir), "dream": dream(logdir)}
        print(name, json.dumps(out[name], indent=1), flush=True)
    Path(__file__).with_name("dream_vs_game.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
