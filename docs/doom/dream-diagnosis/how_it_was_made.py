"""Where the old M's and the fixed M's Doom dreams differ (the record beside this file).

A: M's death head on held-out real rollouts, M run from the zero state over whole rollouts.
B: 128 dreams (tau 1.15, threshold) of the same controllers in both Ms, from the same first frames:
   their lengths and M's mean death probability along the steps.

Run from the repository root with the logdirs of docs/mdrnn-first-steps.md's Doom runs under ~/runs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, ".")
from data.latents import Latents  # noqa: E402
from data.rollouts import split_names  # noqa: E402
from envs import get_env_spec  # noqa: E402
from experiment.logdir import (  # noqa: E402
    load_controller,
    load_data_record,
    load_dream_cell,
    load_mdrnn,
    load_start_latents,  # noqa: E402
)
from models.controller import ControllerBatch  # noqa: E402
from models.dream import Dream, start_latents  # noqa: E402

torch.set_num_threads(1)
RUNS = Path.home() / "runs"
LOGDIRS = {"old": RUNS / "doomold-s0", "fixed": RUNS / "doomfix-s0"}
STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 150, 200, 250, 300, 400, 600)


@torch.no_grad()
def death_head_on_real_rollouts(logdir: Path, latents: Latents, rollouts: list[int]) -> dict:
    mdrnn, _ = load_mdrnn(logdir)
    p, t, d = [], [], []
    for r in rollouts:
        f0, f1 = latents.frame_offsets[r], latents.frame_offsets[r + 1]
        s0, s1 = latents.step_offsets[r], latents.step_offsets[r + 1]
        z = torch.from_numpy(latents.mu[f0 : f1 - 1])[None]
        out = mdrnn(torch.from_numpy(latents.actions[s0:s1])[None], z)
        p.append(torch.sigmoid(out.terminations[0]).numpy())
        t.append(np.arange(s1 - s0))
        d.append(latents.terminals[s0:s1])
    p, t, d = map(np.concatenate, (p, t, d))
    res = {
        "p_at_death_mean": float(p[d].mean()),
        "death_detected_gt05": float((p[d] > 0.5).mean()),
        "false_gt05_per_1000_steps": float((p[~d] > 0.5).mean() * 1000),
        "n_deaths": int(d.sum()),
        "steps": int(len(p)),
    }
    for lo, hi in [(0, 10), (10, 50), (50, 100), (100, 200), (200, 400), (400, 3000)]:
        alive = (~d) & (t >= lo) & (t < hi)
        res[f"p_alive_{lo}_{hi}"] = float(p[alive].mean())
        res[f"p_alive_{lo}_{hi}_gt05"] = float((p[alive] > 0.5).mean())
    return res


@torch.no_grad()
def dream_lengths(logdir: Path, config, params: np.ndarray, squash, start_pool) -> dict:
    cell, _ = load_dream_cell(logdir)
    dream = Dream(cell, 1.15, "threshold", torch.Generator().manual_seed(1), survival=True)
    n = len(params)
    z = dream.reset(start_latents(*start_pool, n, np.random.default_rng(2), "first"))
    controllers = ControllerBatch(config, params, "cpu", torch.float32)
    rows, lengths, p_mean = torch.arange(n), torch.zeros(n), []
    for _ in range(2100):
        h, c = dream.hidden
        action = squash(controllers.raw_rows(z, h, c))
        p_mean.append(float(torch.sigmoid(cell(action, dream.z, dream.hidden).terminations).mean()))
        step = dream.step(action)
        z = step.z
        lengths[rows] += 1
        if step.done.any():
            keep = torch.nonzero(~step.done).squeeze(1)
            if len(keep) == 0:
                break
            rows, controllers, z = rows[keep], controllers.rows(keep), dream.keep(keep)
    lengths = lengths.numpy()
    return {
        "mean_len": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p10": float(np.percentile(lengths, 10)),
        "p90": float(np.percentile(lengths, 90)),
        "p_mean_steps": {s: round(p_mean[s], 4) for s in STEPS if s < len(p_mean)},
    }


def main() -> None:
    latents = Latents.load(LOGDIRS["fixed"] / "mdrnn" / "latents.npz")
    data = load_data_record(LOGDIRS["fixed"])
    _, test = split_names(list(latents.names), data.test_fraction)
    rollouts = [i for i, name in enumerate(latents.names) if name in set(test)]
    out = {"test_rollouts": len(rollouts)}
    for name, logdir in LOGDIRS.items():
        out[f"real_{name}"] = death_head_on_real_rollouts(logdir, latents, rollouts)
    controllers = {}
    for name, logdir in LOGDIRS.items():
        params, config, _ = load_controller(logdir)
        controllers[f"best_C_of_{name}_M"] = np.repeat(params[None].astype(np.float32), 128, axis=0)
    rng = np.random.default_rng(5)
    controllers["random_sigma0.1"] = (rng.standard_normal((128, params.size)) * 0.1).astype(np.float32)
    controllers["zero"] = np.zeros((128, params.size), np.float32)
    squash = get_env_spec(data.env).squash
    start_pool = load_start_latents(LOGDIRS["fixed"])  # the same first frames for both Ms
    for name, logdir in LOGDIRS.items():
        for which, params in controllers.items():
            out[f"dream_{name}_M_{which}"] = dream_lengths(logdir, config, params, squash, start_pool)
            print(name, which, out[f"dream_{name}_M_{which}"], flush=True)
    Path("dream_diagnosis.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
