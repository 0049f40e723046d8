"""Does M see a collision coming? The agent of a SocNavGym logdir drives episodes of the probe namespace;
at every step M's reward and termination heads are read for C's action (before the env steps), and how
well each separates the steps that end in a collision from all others is their AUROC (0.5: blind).

    python docs/socnav/m-collision/m_collision.py --logdir pretrained/socnav --episodes 100 --out m.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from experiment.logdir import load_dream_cell  # noqa: E402
from models.vae import frames_to_tensor  # noqa: E402
from utils.seeding import PROBE_EPISODES, episode_seed  # noqa: E402
from world_models import load_agent  # noqa: E402


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a positive step scores above a negative one (ties broken by order)."""
    ranks = np.argsort(np.argsort(score, kind="stable")) + 1.0
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = load_agent(args.logdir)
    cell, _ = load_dream_cell(args.logdir)
    inner = agent._agent
    env = agent.make_env()
    p_end, reward, collision, steps_left, outcomes = [], [], [], [], []
    for index in range(args.episodes):
        seed = episode_seed(0, PROBE_EPISODES, 100_000 + index)  # keys the probe itself never reaches
        obs, _ = env.reset(seed=seed)
        agent.reset(seed=seed)
        first = len(p_end)
        while True:
            with torch.no_grad():
                mu, _ = inner.vae.encode(
                    frames_to_tensor(inner.preprocess(np.asarray(obs)[None]), inner.device)
                )
                h, c = agent._state
                action = inner.env.squash(agent._controller.raw_rows(mu, h, c))
                out = cell(action, mu, (h, c))
            p_end.append(torch.sigmoid(out.terminations).item())
            reward.append(out.rewards.item())
            obs, _, terminated, truncated, info = env.step(agent.act(obs))
            if terminated or truncated:
                break
        length = len(p_end) - first
        steps_left += list(range(length - 1, -1, -1))
        collision += [False] * (length - 1) + [info["outcome"] == "collision"]
        outcomes.append(info["outcome"])
    p_end, reward = np.array(p_end), np.array(reward)
    collision, steps_left = np.array(collision), np.array(steps_left)
    result = {
        "logdir": str(args.logdir),
        "episodes": args.episodes,
        "steps": int(len(p_end)),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "auroc collision step, M's termination probability": auroc(p_end, collision),
        "auroc collision step, M's reward (lower: collision)": auroc(-reward, collision),
        "auroc collision step among the steps 1-3 before it and the collision step itself": auroc(
            p_end[steps_left < 4], collision[steps_left < 4]
        ),
        "termination probability, median at collision steps": float(np.median(p_end[collision])),
        "termination probability, median at steps >= 4 before any end": float(
            np.median(p_end[steps_left >= 4])
        ),
        "termination probability, 0.95 quantile at steps >= 4 before any end": float(
            np.quantile(p_end[steps_left >= 4], 0.95)
        ),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
