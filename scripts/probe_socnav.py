"""What a linear map (or a small network) reads from a SocNavGym agent's z and h, and how far a C that
copies go-to-goal (or another reference, --teacher) gets: a diagnostic of what limits C, and a way to fit one.

Usage:
    python scripts/probe_socnav.py --logdir runs/socnav --episodes 150 --drive 50 --out probe.json
    python scripts/probe_socnav.py --logdir runs/socnav --save-c runs/socnav-fit.tar  # a start for C
    python scripts/probe_socnav.py --logdir runs/socnav --units 64 --teacher orca --dagger 3 \
        --save-c runs/socnav/ctrl/best.tar  # a C with a hidden layer, fitted to ORCA: the agent's C

Plays --episodes episodes with the goal-mix policy (half of them heading for the goal, all with brownian
noise: generation_script.py --policy goal-mix) through the run's V and M, as the agent would see them (z
the encoder mean, h M's state fed the actions played), and records at every step what C reads (z, h) and
what it would need from the simulator's state: the goal's direction from the robot (ahead and to its
left, over the distance), its distance, the nearest person's distance, and the nearest furniture or
wall: its direction from the robot (as the goal's) and the gap to it (distances capped at 4 m, half the
robot's view). How much of each a linear map reads from z, from h and from both is the R^2 of ridge
regressions cross-fitted over three folds of episodes: each episode is predicted by the fit on the others.

With --drive N, the ridge from [z, h] to go-to-goal's actions (through C's squash, as C acts) drives N
more episodes, and their outcomes are counted: the linear C nearest to go-to-goal on this V and M. With
--dagger R, before that drive, R rounds of DAgger: the fitted C drives --episodes more episodes, every
step is labelled with go-to-goal's action there, and C is fitted again on all the steps so far, so that
it learns to recover from the states its own driving reaches, which goal-mix's rarely does. Its
fit reads the state (go-to-goal's actions), so it is a diagnostic, not an agent; --save-c writes it as a
controller checkpoint that a search of C can start from (traincontroller.py --start-from), C still acting
from pixels alone. The episodes are from a namespace of their own (utils.seeding.PROBE_EPISODES): no
training, pick or test episode.

--teacher NAME fits another reference's actions instead: orca (SocNavGym's, which avoids people and
furniture), or our planners that take all of the avoiding on themselves, lookahead and potential-field
(envs/socnav.py); --fit-epochs and --fit-decay set the network's fit of them.
--units N fits a C with a hidden layer: a network of one tanh layer of N units, fitted by gradient
descent, replaces the ridge in the fit of actions, DAgger and the drive, and the R^2 of what such a
network reads is reported beside the ridge's (cross-fitted the same way). --save-c writes it as a
controller with that hidden layer (models/controller.py), which test_controller.py drives as any C; it
has too many parameters for CMA-ES, so no search starts from it.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from driving.agent import Agent  # noqa: E402
from envs import get_env_spec  # noqa: E402
from envs.socnav import STATE_LABELS, state_labels  # noqa: E402
from experiment.logdir import load_agent_spec, save_controller  # noqa: E402
from models.vae import frames_to_tensor  # noqa: E402
from utils.checkpoint import atomic_write  # noqa: E402
from utils.cli import UserError, make_parser, nonnegative_float, nonnegative_int, positive_int, run  # noqa: E402
from utils.seeding import PROBE_EPISODES, episode_seed  # noqa: E402

TARGETS = STATE_LABELS  # what the probe reads from z and h: envs/socnav.py's state labels
READS = ("z", "h", "z, h")
FOLDS = 3  # episode k is predicted by the fit on the episodes of the other two folds (k mod 3)
RIDGE = 1.0  # the ridge penalty, on inputs of order 1 (z the encoder mean, h in (-1, 1))
# go-to-goal's actions are +-1 at full speed; C's squash (tanh) reaches them only at infinity
SQUASHED = 0.95
TEACHERS = ("go-to-goal", "orca", "lookahead", "potential-field")
# the network of --units: Adam at this rate, batches and epochs over the steps (as many more as reach a
# least number of batches, for small data), and its weight decay
NETWORK_RATE, NETWORK_BATCH, NETWORK_EPOCHS, NETWORK_LEAST, NETWORK_DECAY = 1e-3, 256, 60, 900, 1e-3
# the fit of C to the teacher's actions: longer and without decay (the probe's 60 epochs and decay 1e-3
# smooth away the sharp turn from a person a step away; docs/socnav.md)
FIT_EPOCHS, FIT_DECAY = 400, 0.0


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, required=True, help="a SocNavGym run with V and M")
    parser.add_argument("--episodes", type=at_least_3, default=150, help="goal-mix episodes to fit and score")
    parser.add_argument(
        "--drive", type=int, default=0, help="episodes driven by the fitted linear C (0: none)"
    )
    parser.add_argument(
        "--dagger",
        type=nonnegative_int,
        default=0,
        help="rounds of DAgger after the fit: the fitted C drives --episodes more episodes, every step is "
        "labelled with the teacher's action, and C is fitted again on all steps so far (0: none)",
    )
    parser.add_argument(
        "--teacher",
        choices=TEACHERS,
        default=TEACHERS[0],
        help="the reference whose actions C is fitted to (orca: SocNavGym's, which avoids people; "
        "lookahead and potential-field: planners that take all of the avoiding on themselves)",
    )
    parser.add_argument(
        "--units",
        type=nonnegative_int,
        default=0,
        help="fit a network of one tanh layer of this many units instead of the ridge (0: the ridge, "
        "a linear C); its R^2 is reported beside the ridge's",
    )
    parser.add_argument(
        "--fit-epochs",
        type=positive_int,
        default=FIT_EPOCHS,
        help="with --units: epochs of the network's fit of the teacher's actions (the R^2 probes keep "
        f"{NETWORK_EPOCHS})",
    )
    parser.add_argument(
        "--fit-decay",
        type=nonnegative_float,
        default=FIT_DECAY,
        help="with --units: Adam's weight decay in the network's fit of the teacher's actions (the R^2 "
        f"probes keep {NETWORK_DECAY:g})",
    )
    parser.add_argument("--max-steps", type=positive_int, default=200, help="steps an episode at most")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes and the policy's noise")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--save-c",
        type=Path,
        help="write the fitted C here as a controller checkpoint (a linear one for traincontroller.py "
        "--start-from; with --units, one with a hidden layer, for test_controller.py)",
    )
    return parser


def at_least_3(text: str) -> int:
    value = positive_int(text)
    if value < FOLDS:
        raise argparse.ArgumentTypeError(
            f"at least {FOLDS}, one for each fold of the cross-fit (got {value})"
        )
    return value


class Probe:
    """The run's V and M on one env, stepping episodes and recording [z, h] and the state."""

    def __init__(self, logdir: Path, max_steps: int, teacher: str = TEACHERS[0]) -> None:
        spec = load_agent_spec(logdir)
        self.env_spec = get_env_spec(spec.env)
        if "go-to-goal" not in self.env_spec.references:
            raise UserError(
                f"--logdir {logdir}: its env {spec.env!r} is not SocNavGym's; the probe reads its state"
            )
        if spec.controller.inputs != ("z", "h") or not spec.controller.bias:
            raise UserError(
                f"--logdir {logdir}: the probe fits a C of [z, h] and a bias, not {spec.controller}"
            )
        self.agent = Agent(spec)
        self.env = self.env_spec.make(self.env_spec.renderers[0], max_episode_steps=max_steps)
        self.max_steps = max_steps
        self.teacher = self.env_spec.references[teacher]

    @torch.no_grad()
    def episode(self, seed: int, act) -> tuple[list, str, float]:
        """One episode from ``seed``, ``act(inputs, t)`` choosing each action: its steps as (inputs,
        state, the teacher's action), how it ended (a collision with what it hit) and its return."""
        obs, _ = self.env.reset(seed=seed)
        h, c = self.agent.initial_state(1)
        steps, total = [], 0.0
        for t in range(self.max_steps):
            mu, _ = self.agent.vae.encode(frames_to_tensor(self.agent.preprocess(obs[None])))
            inputs = np.concatenate([mu[0].numpy(), h[0].numpy()])
            steps.append((inputs, state_labels(self.env), self.teacher(self.env)))
            action = np.asarray(act(inputs, t), np.float32)
            h, c = self.agent.mdrnn.recurrent_step(torch.as_tensor(action[None]), mu, (h, c))
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        end = info["outcome"] or "timeout"
        return steps, f"{end} ({info['outcome_detail']})" if info.get("outcome_detail") else end, total


def ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(D + 1, K) weights and bias of the ridge regression of y on x."""
    x = np.c_[x, np.ones(len(x))]
    return np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)


def predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))] @ weights


def fit_actions(inputs: list, actions: list) -> np.ndarray:
    """The ridge from C's inputs to the teacher's ``actions`` through C's squash (tanh, whose +-1 lies at
    infinity: targets clipped to +-SQUASHED first), as :func:`ridge`'s weights."""
    return ridge(np.asarray(inputs), np.arctanh(np.clip(np.asarray(actions), -SQUASHED, SQUASHED)))


def controller_vector(weights: np.ndarray) -> np.ndarray:
    """The ridge's (D + 1, K) weights and bias as C's flat vector (models/controller.py's order: W
    row-major, one row of D inputs per action, then the K biases, the ridge's last row)."""
    return np.r_[weights[:-1].T.ravel(), weights[-1]]


def r_squared(predicted: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(K,) the share of y's variance (about its mean) that ``predicted`` explains."""
    return 1 - ((y - predicted) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


class Network:
    """A network of one tanh layer fitted by :func:`fit_network`: called on (N, D) inputs, it gives (N, K)
    predictions."""

    def __init__(self, net: torch.nn.Sequential, x_mean, x_scale, y_mean, y_scale, squash: bool) -> None:
        self.net, self.x_mean, self.x_scale, self.y_mean, self.y_scale = net, x_mean, x_scale, y_mean, y_scale
        self.squash = squash

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.net((torch.as_tensor(x, dtype=torch.float32) - self.x_mean) / self.x_scale)
        return (torch.tanh(out) if self.squash else out * self.y_scale + self.y_mean).numpy()

    @torch.no_grad()
    def controller_vector(self) -> np.ndarray:
        """A network of actions as C's flat vector with a hidden layer (models/controller.py's order),
        the standardisation of its inputs folded into that layer: C's squash of it is this network."""
        layer, out = self.net[0], self.net[2]
        weight = layer.weight / self.x_scale
        bias = layer.bias - weight @ self.x_mean
        return torch.cat([weight.reshape(-1), bias, out.weight.reshape(-1), out.bias]).double().numpy()


def fit_network(
    x: np.ndarray,
    y: np.ndarray,
    units: int,
    squash: bool = False,
    epochs: int = NETWORK_EPOCHS,
    decay: float = NETWORK_DECAY,
) -> Network:
    """A network of one tanh layer of ``units`` from x (standardised) to y, fitted by Adam with weight
    decay ``decay`` on the squared error (``epochs`` epochs, more if they make fewer than NETWORK_LEAST
    batches). ``squash``: its outputs go through C's tanh and y are actions (as C acts); otherwise y are
    standardised and the output is linear. Seeded by the data's size, so that a rerun fits the same
    network."""
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    x_mean, x_scale = x.mean(0), x.std(0) + 1e-3
    y_mean, y_scale = (torch.zeros(y.shape[1]), torch.ones(y.shape[1])) if squash else (y.mean(0), y.std(0))
    with torch.random.fork_rng():
        torch.manual_seed(len(x))
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], units), torch.nn.Tanh(), torch.nn.Linear(units, y.shape[1])
        )
        optimiser = torch.optim.Adam(net.parameters(), NETWORK_RATE, weight_decay=decay)
        inputs, targets = (x - x_mean) / x_scale, (y - y_mean) / y_scale
        batches = -(-len(x) // NETWORK_BATCH)  # an epoch's
        for _ in range(max(epochs, -(-NETWORK_LEAST // batches))):
            for rows in torch.randperm(len(x)).split(NETWORK_BATCH):
                out = net(inputs[rows])
                loss = ((torch.tanh(out) if squash else out) - targets[rows]).pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return Network(net.eval(), x_mean, x_scale, y_mean, y_scale, squash)


def cross_fitted(x: np.ndarray, y: np.ndarray, folds: np.ndarray, units: int = 0) -> np.ndarray:
    """y predicted for every row by the fit on the rows of the other folds: the ridge, or with ``units``
    the network of :func:`fit_network`."""
    predicted = np.empty_like(y)
    for fold in np.unique(folds):
        rows = folds == fold
        if units:
            predicted[rows] = fit_network(x[~rows], y[~rows], units)(x[rows])
        else:
            predicted[rows] = predict(ridge(x[~rows], y[~rows]), x[rows])
    return predicted


def main(args) -> dict:
    probe = Probe(args.logdir, args.max_steps, args.teacher)
    latent = probe.agent.latent
    rng = np.random.default_rng(episode_seed(args.seed, PROBE_EPISODES))
    goal_mix = probe.env_spec.state_policies["goal-mix"]
    inputs, states, actions, folds = [], [], [], []
    for index in tqdm(range(args.episodes), desc="probe episodes", unit="episode"):
        policy = goal_mix(rng, args.max_steps)
        steps, _, _ = probe.episode(
            episode_seed(args.seed, PROBE_EPISODES, index), lambda x, t, policy=policy: policy(probe.env, t)
        )
        inputs += [s[0] for s in steps]
        states += [s[1] for s in steps]
        actions += [s[2] for s in steps]
        folds += [index % FOLDS] * len(steps)
    x, y, folds = np.asarray(inputs), np.asarray(states, np.float64), np.asarray(folds)
    columns = {"z": slice(0, latent), "h": slice(latent, None), "z, h": slice(None)}
    result = {"logdir": str(args.logdir), "env": probe.agent.spec.env, "episodes": args.episodes}
    result.update(teacher=args.teacher, units=args.units, frames=len(x))
    if args.units:
        result.update(fit_epochs=args.fit_epochs, fit_decay=args.fit_decay)
    reads = {"r_squared": 0} | ({"r_squared_network": args.units} if args.units else {})
    for key, units in reads.items():
        result[key] = {}
        for read, cols in columns.items():
            scores = r_squared(cross_fitted(x[:, cols], y, folds, units), y)
            result[key][read] = dict(zip(TARGETS, map(float, scores), strict=True))
        print(
            f"R^2 by the {f'network of {units} units' if units else 'ridge'} over {len(x)} frames of "
            f"{args.episodes} episodes, each predicted by the fit on other episodes:"
        )
        for read in READS:
            print(f"  from {read:5s}  " + "  ".join(f"{t}: {v:.2f}" for t, v in result[key][read].items()))

    def fit(inputs: list, actions: list):
        """C fitted to the teacher's actions, as C's flat vector and C's step: the ridge, or the network."""
        if args.units:
            network = fit_network(
                np.asarray(inputs), np.asarray(actions), args.units, True, args.fit_epochs, args.fit_decay
            )
            return network.controller_vector(), lambda x, t: network(x[None])[0]
        weights = fit_actions(inputs, actions)
        step = lambda x, t: probe.env_spec.squash(torch.as_tensor(np.r_[x, 1.0] @ weights))  # noqa: E731
        return controller_vector(weights), step

    vector, fitted = fit(inputs, actions)
    name = f"the network of {args.units} units" if args.units else "the linear C"
    fitted_by = f"network ({args.units} tanh units)" if args.units else "ridge"
    first = args.episodes + args.drive  # the probe namespace's episodes after the fit's and the drive's
    result["dagger"] = []
    for round_ in range(args.dagger):
        outcomes = collections.Counter()
        for index in tqdm(range(args.episodes), desc=f"DAgger round {round_ + 1}", unit="episode"):
            seed = episode_seed(args.seed, PROBE_EPISODES, first + round_ * args.episodes + index)
            steps, end, _ = probe.episode(seed, fitted)
            inputs += [s[0] for s in steps]
            actions += [s[2] for s in steps]
            outcomes[end.split(" ")[0]] += 1
        vector, fitted = fit(inputs, actions)
        result["dagger"].append(
            {"episodes": args.episodes, "outcomes": dict(sorted(outcomes.items())), "frames": len(inputs)}
        )
        print(
            f"DAgger round {round_ + 1}: the C it labelled "
            + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            + f"; refitted on {len(inputs)} frames"
        )
    returns = []
    if args.drive > 0:
        outcomes = collections.Counter()
        for index in tqdm(range(args.drive), desc=f"{name} nearest {args.teacher}", unit="episode"):
            seed = episode_seed(args.seed, PROBE_EPISODES, args.episodes + index)
            _, end, total = probe.episode(seed, fitted)
            outcomes[end] += 1
            returns.append(total)
        result["drive"] = {
            "episodes": args.drive,
            "outcomes": dict(sorted(outcomes.items())),
            "returns": returns,
        }
        print(
            f"{name} nearest {args.teacher}, {args.drive} episodes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            + f"; return {np.mean(returns):.1f} +- {np.std(returns):.1f}"
        )
    if args.save_c is not None:
        save_controller(
            args.save_c,
            vector,
            dataclasses.replace(probe.agent.spec.controller, units=args.units),
            score=float(np.mean(returns)) if returns else float("nan"),
            returns=returns,
            generation=0,
            source=f"the {fitted_by} fit of {args.teacher}'s actions from [z, h] (scripts/probe_socnav.py)",
            z_mode="mu",
        )
        print(f"the fitted C: {args.save_c}")
    if args.out is not None:
        text = json.dumps(result, indent=1).encode()
        atomic_write(args.out, lambda file: file.write(text))
    return result


if __name__ == "__main__":
    run(main, build_parser())
