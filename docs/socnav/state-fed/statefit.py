"""A record, not part of the project: the probe's fit of C (a network of 64 tanh units, 150 goal-mix
episodes, 3 rounds of DAgger of 150, then 100 episodes driven; scripts/probe_socnav.py's episodes of
--seed 0) with the simulator's state as C's input instead of [z, h]: the goal's direction and distance,
the three nearest people and the nearest furniture or wall (where each is from the robot, 4 m at most).
What the fit copies when perception is perfect (docs/socnav.md).

    python docs/socnav/state-fed/statefit.py TEACHER [PEOPLE [EPOCHS [DECAY [UNITS [ROUNDS]]]]]
"""

import collections
import sys

import numpy as np
import shapely
import shapely.ops
import torch

sys.path.insert(0, ".")
from envs import get_env_spec  # noqa: E402
from envs.socnav import _still_things  # noqa: E402
from scripts.probe_socnav import NETWORK_DECAY, NETWORK_EPOCHS, fit_network  # noqa: E402
from utils.seeding import PROBE_EPISODES, episode_seed  # noqa: E402

CAP = 4.0
teacher_name = sys.argv[1] if len(sys.argv) > 1 else "lookahead"
npeople = int(sys.argv[2]) if len(sys.argv) > 2 else 3
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else NETWORK_EPOCHS  # the fit's epochs and weight decay
decay = float(sys.argv[4]) if len(sys.argv) > 4 else NETWORK_DECAY
units = int(sys.argv[5]) if len(sys.argv) > 5 else 64  # the network's tanh units and the rounds of DAgger
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 3
print("epochs", epochs, "decay", decay, flush=True)
spec = get_env_spec("socnav-ego")
env = spec.make(spec.renderers[0], max_episode_steps=200)
teacher = spec.references["potential-field" if teacher_name == "field" else teacher_name]
goal_mix = spec.state_policies["goal-mix"]


def rel(robot, x, y):
    dx, dy = x - robot.x, y - robot.y
    c, s = np.cos(robot.orientation), np.sin(robot.orientation)
    return c * dx + s * dy, -s * dx + c * dy


def features():
    game = env.unwrapped
    sim, robot = game.sim, game.sim.robot
    ahead, left = game.goal_from_robot()
    d = max(np.hypot(ahead, left), 1e-6)
    out = [ahead / d, left / d, min(d, CAP)]
    people = sorted(
        (rel(robot, p.x, p.y) for p in sim.static_humans + sim.dynamic_humans), key=lambda p: np.hypot(*p)
    )
    people = [(a, b) if np.hypot(a, b) < CAP else (CAP, 0.0) for a, b in people][:npeople]
    people += [(CAP, 0.0)] * (npeople - len(people))
    out += [v for p in people for v in p]
    still = _still_things(sim)
    near = shapely.ops.nearest_points(shapely.union_all(still), shapely.Point(robot.x, robot.y))[0]
    a, b = rel(robot, near.x, near.y)
    out += [a, b] if np.hypot(a, b) < CAP else [CAP, 0.0]
    return np.array(out, np.float32)


@torch.no_grad()
def episode(seed, act):
    env.reset(seed=seed)
    steps = []
    for t in range(200):
        f = features()
        steps.append((f, teacher(env)))
        _, _, term, trunc, info = env.step(np.asarray(act(f, t), np.float32))
        if term or trunc:
            break
    return steps, info["outcome"] + (f" ({info['outcome_detail']})" if info.get("outcome_detail") else "")


rng = np.random.default_rng(episode_seed(0, PROBE_EPISODES))
X, Y = [], []
n = 150
for i in range(n):
    pol = goal_mix(rng, 200)
    steps, _ = episode(episode_seed(0, PROBE_EPISODES, i), lambda f, t, pol=pol: pol(env, t))
    X += [s[0] for s in steps]
    Y += [s[1] for s in steps]
net = fit_network(np.asarray(X), np.asarray(Y), units, True, epochs, decay)
first = n + 100
for r in range(rounds):
    out = collections.Counter()
    for i in range(n):
        steps, end = episode(
            episode_seed(0, PROBE_EPISODES, first + r * n + i), lambda f, t, net=net: net(f[None])[0]
        )
        X += [s[0] for s in steps]
        Y += [s[1] for s in steps]
        out[end] += 1
    net = fit_network(np.asarray(X), np.asarray(Y), units, True, epochs, decay)
    print(f"DAgger {r + 1}: {dict(out)}; {len(X)} frames", flush=True)
out = collections.Counter()
for i in range(100):
    _, end = episode(episode_seed(0, PROBE_EPISODES, n + i), lambda f, t, net=net: net(f[None])[0])
    out[end] += 1
what = f"{teacher_name}, {npeople} people, {units} units, {rounds} rounds"
print(f"state-fed network copying {what}: {dict(sorted(out.items()))}", flush=True)
