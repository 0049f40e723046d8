"""Why round 1 exploited seed 0's dream and not seed 1's (the records beside this file:
dream_vs_game_seed<seed>.json and the picture).

Round 1 of the recipe keeps round 0's V and trains M again on both rounds' rollouts. On seed 0 its C
then lived 1,000+ frames in the dream and 280-573 in the game; on seed 1 the two agreed. For each seed,
round 0's agent (M0, C0) and round 1's (M1, C1), which share V:
- in the game, 24 episodes of each agent (z sampled, as C was trained; the probe namespace: no search,
  pick or test episode), with both Ms run along the same frames and actions, each from its own zero
  state: how many of the real deaths each M calls (its death probability above 0.5 at one of the last
  5 steps), its false alarms (above 0.5 more than 30 steps before a death, per 1,000 such steps), and
  its mean death probability on the living steps;
- in the agent's own dream, 128 dreams (tau 1.15, threshold, real first frames): frames survived.
And a picture (`dream_vs_game_seed0_round1.png`): seed 0's round-1 agent in one game episode, its last
60 frames before its death (every 6th), V's reconstructions of them, and M1's dream from the real state
60 frames before the death, C1 acting, decoded by V.

Run from the repository root with the logdirs under ~/runs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, ".")
from driving.agent import Agent  # noqa: E402
from driving.episode import z_noise  # noqa: E402
from envs import get_env_spec  # noqa: E402
from experiment.logdir import load_agent_parts, load_dream_cell, load_start_latents, load_vae  # noqa: E402
from models.dream import Dream, decode_latents, start_latents  # noqa: E402
from models.vae import frames_to_tensor  # noqa: E402
from utils.seeding import PROBE_EPISODES, episode_seed  # noqa: E402

torch.set_num_threads(1)
RUNS = Path.home() / "runs"
ROUNDS = {
    0: (RUNS / "doom-s2x-seed0", RUNS / "doom-r2k-seed0"),
    1: (RUNS / "doom-s2x-seed1", RUNS / "doom-r2k-seed1"),
}
EPISODES, DREAMS, STEPS, TAU, LAST, QUIET, BACK, EVERY = 24, 128, 2100, 1.15, 5, 30, 60, 6
OUT = Path(__file__).parent


@torch.no_grad()
def game(agent_dir: Path, m_dirs: dict) -> tuple[dict, list]:
    """The agent of ``agent_dir`` in the game; every M of ``m_dirs`` run along. Also returns, per
    episode, the frames, z, the agent's own M state and actions (for the picture)."""
    spec, params, _ = load_agent_parts(agent_dir)
    agent, env_spec = Agent(spec), get_env_spec(spec.env)
    cells = {name: load_dream_cell(d)[0] for name, d in m_dirs.items()}
    controllers = agent.controllers(params[None])
    env = env_spec.make("160x120", max_episode_steps=STEPS)
    lengths, died, probs, traces = [], [], {name: [] for name in cells}, []
    for i in range(EPISODES):
        seed = episode_seed(0, PROBE_EPISODES, i)
        obs, _ = env.reset(seed=seed)
        noise, state = z_noise(seed), agent.initial_state(1)
        m_states = {name: cell.initial_hidden(1) for name, cell in cells.items()}
        p = {name: [] for name in cells}
        trace = {"frames": [], "z": [], "state": [], "actions": []}
        while True:
            eps = torch.as_tensor(noise.standard_normal(agent.latent)[None], dtype=torch.float32)
            frame = agent.preprocess(obs[None])
            mu, logsigma = agent.vae.encode(frames_to_tensor(frame))
            z = mu + logsigma.exp() * eps
            h, c = state
            action = env_spec.squash(controllers.raw_rows(z, h, c))
            for name, cell in cells.items():
                out = cell(action, z, m_states[name])
                p[name].append(float(torch.sigmoid(out.terminations)[0]))
                m_states[name] = out.hidden
            trace["frames"].append(frame[0])
            trace["z"].append(z)
            trace["state"].append(state)
            trace["actions"].append(action)
            state = agent.mdrnn.recurrent_step(action, z, state)
            obs, _, terminated, truncated, _ = env.step(env_spec.to_env_action(action[0].numpy()))
            if terminated or truncated:
                break
        lengths.append(len(trace["frames"]))
        died.append(bool(terminated))
        for name in cells:
            probs[name].append(np.array(p[name]))
        traces.append(trace)
    env.close()
    result = {
        "survived_mean": float(np.mean(lengths)),
        "survived_median": float(np.median(lengths)),
        "deaths": sum(died),
    }
    for name in cells:
        caught = [bool((q[-LAST:] > 0.5).any()) for q, d in zip(probs[name], died, strict=True) if d]
        quiet = np.concatenate(
            [q[: len(q) - QUIET] if d else q for q, d in zip(probs[name], died, strict=True)]
        )
        living = np.concatenate([q[:-1] if d else q for q, d in zip(probs[name], died, strict=True)])
        result[f"{name}: deaths called"] = float(np.mean(caught)) if caught else None
        result[f"{name}: false alarms per 1000"] = float((quiet > 0.5).mean() * 1000)
        result[f"{name}: death probability on living steps"] = float(living.mean())
    return result, traces


@torch.no_grad()
def dream(logdir: Path) -> dict:
    """The agent in its own M's dream: frames survived (the loop of models.dream.dream_returns)."""
    spec, params, _ = load_agent_parts(logdir)
    cell, _ = load_dream_cell(logdir)
    squash = get_env_spec(spec.env).squash
    dreamer = Dream(cell, TAU, "threshold", torch.Generator().manual_seed(1), survival=True)
    controllers = Agent(spec).controllers(np.repeat(params[None], DREAMS, axis=0))
    z = dreamer.reset(start_latents(*load_start_latents(logdir), DREAMS, np.random.default_rng(2), "first"))
    rows, lengths = torch.arange(DREAMS), torch.zeros(DREAMS)
    for _ in range(STEPS):
        h, c = dreamer.hidden
        z, _, done = dreamer.step(squash(controllers.raw_rows(z, h, c)))
        lengths[rows] += 1
        if done.any():
            keep = torch.nonzero(~done).squeeze(1)
            if len(keep) == 0:
                break
            rows, controllers, z = rows[keep], controllers.rows(keep), dreamer.keep(keep)
    return {"survived_mean": float(lengths.mean()), "survived_median": float(lengths.median())}


@torch.no_grad()
def picture(logdir: Path, traces: list) -> dict:
    """Game, V's reconstruction and M's dream from the game's state BACK frames before a death."""
    spec, params, _ = load_agent_parts(logdir)
    cell, _ = load_dream_cell(logdir)
    vae, _ = load_vae(logdir)
    squash = get_env_spec(spec.env).squash
    controller = Agent(spec).controllers(params[None])
    trace = next(t for t in traces if len(t["frames"]) >= 3 * BACK and len(t["frames"]) < STEPS)
    start = len(trace["frames"]) - BACK
    dreamer = Dream(cell, TAU, "threshold", torch.Generator().manual_seed(3), survival=True)
    dreamer.reset(trace["z"][start])
    dreamer.hidden = trace["state"][start]
    z, dreamed, ended = trace["z"][start], [], None
    for t in range(BACK):
        h, c = dreamer.hidden
        dreamed.append(z)
        z, _, done = dreamer.step(squash(controller.raw_rows(z, h, c)))
        if done.any() and ended is None:
            ended = t + 1
    cols = list(range(0, BACK, EVERY)) + [BACK - 1]
    game_row = [trace["frames"][start + k] for k in cols]
    recon_row = decode_latents(vae, torch.cat([trace["z"][start + k] for k in cols]))
    dream_row = decode_latents(vae, torch.cat([dreamed[k] for k in cols]))
    gap = 4
    sheet = np.full((3 * 64 + 2 * gap, len(cols) * (64 + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate((game_row, recon_row, dream_row)):
        for k, img in enumerate(row):
            sheet[r * (64 + gap) : r * (64 + gap) + 64, k * (64 + gap) : k * (64 + gap) + 64] = img
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(
        OUT / "dream_vs_game_seed0_round1.png"
    )
    return {
        "episode_length": len(trace["frames"]),
        "dream_from_frame": start,
        "columns_frames_after": cols,
        "dream_ended_after": ended,
    }


def main() -> None:
    """``python how_it_was_made.py [SEED ...]`` (default: both seeds; one process per seed runs them side
    by side) writes dream_vs_game_seed<SEED>.json."""
    for seed in [int(s) for s in sys.argv[1:]] or list(ROUNDS):
        round0, round1 = ROUNDS[seed]
        out = {}
        m_dirs = {"M0": round0, "M1": round1}
        for name, logdir in (("round 0", round0), ("round 1", round1)):
            result, traces = game(logdir, m_dirs)
            out[name] = {"game": result, "dream": dream(logdir)}
            if seed == 0 and name == "round 1":
                out["picture"] = picture(logdir, traces)
            print(seed, name, json.dumps(out[name]), flush=True)
        (OUT / f"dream_vs_game_seed{seed}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
