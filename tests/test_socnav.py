"""SocNavGym (--env socnav): the import shim, frames, actions, ends of episodes, determinism per seed
whatever else runs in the process, and the four stages end to end through the socnav preset.

Needs the optional extra (``bash scripts/setup.sh --socnav``); skipped without it."""

from __future__ import annotations

import json
import random
import shutil
import sys
import types

import numpy as np
import pytest
import torch

import test_controller
from data import generation_script
from data.rollouts import list_rollouts, load_rollout
from envs import available_envs, get_env_spec, make_env, socnav
from experiment.logdir import load_controller_file, save_controller
from models.controller import Controller, ControllerConfig
from scripts import demo, probe_socnav
from tests.conftest import hold_until_end, run_demo
from utils.cli import UserError

ENV = "socnav"
SPEC = get_env_spec(ENV)


def test_spec_without_the_package():
    """What needs no SocNavGym: sizes, actions, preprocessing, the outcome labels."""
    assert ENV in available_envs()
    assert SPEC.action_size == 3 and SPEC.max_episode_steps == 200 and SPEC.outcomes == socnav.OUTCOMES
    np.testing.assert_array_equal(SPEC.action_low, -np.ones(3))
    np.testing.assert_array_equal(SPEC.action_high, np.ones(3))
    raw = torch.tensor([[-40.0, 0.0, 0.3]])
    torch.testing.assert_close(SPEC.squash(raw), torch.tanh(raw))
    actions = SPEC.policies["brownian"](np.random.default_rng(0), 300)
    assert actions.shape == (300, 3) and (np.abs(actions) <= 1).all()
    assert np.abs(np.diff(actions, axis=0)).mean() < 0.3  # correlated: the robot goes somewhere
    # Area averaging: a 256x256 frame of 4x4 blocks of one colour each gives those colours at 64x64.
    small = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    big = small.repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_array_equal(SPEC.preprocess(big, "full"), small)
    np.testing.assert_array_equal(SPEC.preprocess(big[0], "full"), small[0])
    assert socnav.outcome({"SUCCESS": True, "COLLISION": False}) == "success"
    assert socnav.outcome({"SUCCESS": False, "COLLISION": True, "OUT_OF_MAP": False}) == "collision"
    assert socnav.outcome({"OUT_OF_MAP": True}) == "out of map"
    assert socnav.outcome({"TIMEOUT": True}) == "timeout" and socnav.outcome({}) is None


def test_the_config_is_ours_and_complete():
    """The scene file names every key SocNavGym's _configure reads (a missing one is a KeyError there)."""
    yaml = pytest.importorskip("yaml")

    config = yaml.safe_load(socnav.CONFIG.read_text())
    assert config["robot"]["robot_type"] == "holonomic" and config["env"]["reward_file"] == "dsrnn"
    assert config["episode"]["episode_length"] == SPEC.max_episode_steps - 1
    for key in ("crowd_formation_probability", "human_laptop_formation_probability"):
        assert config["env"][key] == 0  # see the file: SocNavGym times those out on the wall clock
    for scene, changes in socnav.SCENES.items():  # a scene changes keys the file has (a typo adds one)
        assert set(changes) <= set(config["env"]), scene


needs_socnavgym = pytest.mark.skipif(
    __import__("importlib").util.find_spec("socnavgym") is None,
    reason="the SocNavGym extra is not installed (bash scripts/setup.sh --socnav)",
)


@needs_socnavgym
def test_imports_without_dgl_and_the_sngnn_stand_in_refuses_use():
    env = make_env(ENV, max_episode_steps=5)
    assert "dgl" not in sys.modules
    stand_in = sys.modules[f"{socnav._SNGNN}.socnav_V2_API"].SocNavAPI(device="cpu")
    with pytest.raises(RuntimeError, match="needs DGL"):
        stand_in.predict(None)
    env.close()


@needs_socnavgym
def test_frames_actions_and_the_ends_of_episodes():
    env = make_env(ENV, max_episode_steps=200)
    obs, info = env.reset(seed=3)
    assert obs.shape == (256, 256, 3) and obs.dtype == np.uint8 and info["outcome"] is None
    assert (obs == socnav.FLOOR).all(axis=-1).mean() > 0.5  # a grey floor with things on it
    assert (obs[..., 1] > 200).any() and (obs[..., 0] < 60).any()  # the green goal, the black robot
    frame = SPEC.preprocess(obs, "full")
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    # Standing still never collides by itself; the cap ends the episode as a timeout (truncation).
    outcomes = []
    for seed in range(6):
        steps, terminated, truncated, info = hold_until_end(env, np.zeros(3, np.float32), seed)
        outcomes.append((info["outcome"], terminated, truncated, steps))
        if outcomes[-1] == ("timeout", False, True, 200):
            break
    assert outcomes[-1] == ("timeout", False, True, 200), outcomes
    # Full speed ahead ends every episode on a termination with a named outcome before the cap.
    ends = []
    for seed in range(6):
        _, terminated, _, info = hold_until_end(env, np.array([1.0, 0.0, 0.0], np.float32), seed)
        ends.append((info["outcome"], terminated))
    assert all(terminated and o in ("success", "collision", "out of map") for o, terminated in ends)
    # A shorter cap than SocNavGym's own also ends as a timeout.
    steps, _, truncated, info = hold_until_end(make_env(ENV, max_episode_steps=3), np.zeros(3, np.float32), 0)
    assert (steps, truncated, info["outcome"]) == (3, True, "timeout")


@needs_socnavgym
def test_the_standing_scene_has_one_to_three_people_who_all_stand():
    env = make_env("socnav-ego-standing", max_episode_steps=40)
    counts = set()
    for seed in range(8):
        env.reset(seed=seed)
        sim = env.unwrapped.sim
        assert not sim.dynamic_humans and 1 <= len(sim.static_humans) <= 3, seed
        counts.add(len(sim.static_humans))
        places = [(person.x, person.y) for person in sim.static_humans]
        # Nobody moves, so a robot that stands still is never hit (in the default scene people walk).
        steps, _, _, info = hold_until_end(env, np.zeros(3, np.float32), seed)
        assert (steps, info["outcome"]) == (40, "timeout"), seed
        assert [(person.x, person.y) for person in sim.static_humans] == places
    assert len(counts) > 1
    assert make_env("socnav-ego").unwrapped.sim.dynamic_humans  # the default scene keeps its walkers
    with pytest.raises(ValueError, match="unknown scene"):
        socnav.SocNav(scene="empty")


@needs_socnavgym
def test_a_collision_says_what_it_hit():
    """info["outcome_detail"] after a collision names what the robot's disk overlaps in the simulator's own
    geometry (people, walls, furniture: the scene forms no groups), and is empty after other endings."""
    env = make_env(ENV, max_episode_steps=200)
    seen = set()
    for seed in range(14):
        env.reset(seed=seed)
        for action in SPEC.policies["brownian"](np.random.default_rng(seed), 200):
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        sim = env.unwrapped.sim
        overlaps = {
            "person": any(sim.robot.collides(h) for h in sim.static_humans + sim.dynamic_humans),
            "wall": any(sim.robot.collides(w) for w in sim.walls),
            "furniture": any(sim.robot.collides(o) for o in sim.plants + sim.tables + sim.laptops),
        }
        hit = [kind for kind, overlap in overlaps.items() if overlap]
        if info["outcome"] != "collision":
            assert info["outcome_detail"] == "" and not hit, (seed, info, overlaps)
        elif len(hit) == 1:  # (two kinds at once: the person wins, see collided_with)
            assert info["outcome_detail"] == hit[0], (seed, info, overlaps)
            seen.add(hit[0])
    assert seen >= set(socnav.COLLIDED_WITH), seen  # these seeds hit each kind
    env.close()


@needs_socnavgym
def test_an_episode_depends_on_its_seed_alone():
    """SocNavGym draws from the global generators; each env keeps its own, so interleaving another
    env (or other code using `random`) changes nothing, and the caller's generators are left alone."""
    actions = SPEC.policies["brownian"](np.random.default_rng(5), 40)

    def episode(env, other=None):
        frames = [env.reset(seed=11)[0]]
        if other is not None:
            other.reset(seed=12)
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(a)
            frames.append(obs)
            if other is not None and any(other.step(-a)[2:4]):
                other.reset()
            random.random()
            np.random.random()
            if terminated or truncated:
                break
        return np.stack(frames)

    alone = episode(make_env(ENV, max_episode_steps=200))
    random.seed(99)
    np.random.seed(99)
    caller = random.getstate(), np.random.get_state()[1].copy()
    mixed = episode(make_env(ENV, max_episode_steps=200), make_env(ENV, max_episode_steps=200))
    np.testing.assert_array_equal(alone, mixed)
    random.seed(99)
    np.random.seed(99)
    make_env(ENV, max_episode_steps=5).reset(seed=1)
    assert random.getstate() == caller[0] and (np.random.get_state()[1] == caller[1]).all()
    assert not np.array_equal(alone[-1], alone[0])  # the robot and people moved


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "socnavgym.envs.socnavenv_v1", None)  # import fails
    with pytest.raises(UserError, match=r"setup.sh --socnav"):
        socnav.SocNav()


@needs_socnavgym
def test_socnav_recipe_runs_every_stage_at_its_smallest(tmp_path):
    """scripts/demo.py --preset socnav with size overrides only: generation, V, M, C in the real
    simulator, the test and the random policy on the same episodes, with outcome rates."""
    logdir = tmp_path / "socnav"
    sizes = {
        "--rollouts": 4,
        "--max-steps": 40,
        "--vae-epochs": 1,
        "--mdrnn-epochs": 1,
        "--generations": 1,
        "--pop-size": 4,
        "--n-samples": 1,
        "--eval-every": 1,
        "--eval-episodes": 2,
        "--episode-steps": 30,
        "--test-episodes": 3,
        "--imitate": 3,
        "--dagger": 1,  # the recipe's 6 rounds cost a network's fit each
    }
    res = run_demo(ENV, logdir, *[x for kv in sizes.items() for x in kv])
    summary = json.loads((logdir / "stages.json").read_text())
    for key in ("env", "dream", "train_renderer", "test_renderer", "random_baseline"):
        assert summary["knobs"][key] == demo.PRESETS[ENV][key]
    test = summary["test"]
    baselines = ["random_returns.json"] + [f"reference_{name}_returns.json" for name in SPEC.references]
    baselines = [json.loads((logdir / "ctrl" / name).read_text()) for name in baselines]
    for result in (test, *baselines):
        assert result["env"] == "socnav-ego" and result["episodes"] == 3 and len(result["outcomes"]) == 3
        assert result["seed"] == test["seed"] and result["episode_set"] == "test"
        assert set(result["outcome_rates"]) == set(socnav.OUTCOMES)
        assert abs(sum(result["outcome_rates"].values()) - 1) < 1e-9  # every episode ended somehow
        for outcome, steps in zip(result["outcomes"], result["steps"], strict=True):
            assert (outcome == "timeout") == (steps == 30)
        details = result.get("outcome_details", [""] * 3)
        assert [bool(d) for d in details] == [o == "collision" for o in result["outcomes"]]
        assert set(details) - {""} <= set(socnav.COLLIDED_WITH)
    assert "reference orca: success" in res and (logdir / "drive.gif").stat().st_size > 0
    # The trained agent drives rollouts of its own game (iterative training) without --env: the logdir's.
    flags = ["--policy", "controller", "--logdir", logdir, "--rollouts", 1, "--max-steps", 5]
    flags += ["--rootdir", tmp_path / "round1", "--threads", 1]
    generation_script.main(generation_script.build_parser().parse_args(list(map(str, flags))))
    (rollout,) = list_rollouts(tmp_path / "round1")
    assert load_rollout(rollout).env == "socnav-ego"
    # V's loss weighted the goal's and people's pixels as the recipe says.
    knobs = demo.PRESETS[ENV]
    vae_args = json.loads((logdir / "vae" / "args.json").read_text())
    assert vae_args["salient_weight"] == knobs["vae_salient_weight"] > 1
    # C, with the recipe's hidden layer, fitted to its teacher with DAgger, is the agent's C: no search.
    imitation = json.loads((logdir / "imitation.json").read_text())
    assert imitation["episodes"] == 3 and imitation["units"] == knobs["units"] > 0
    assert len(imitation["dagger"]) == 1 and imitation["teacher"] == knobs["teacher"]
    _, config, fit = load_controller_file(logdir / "ctrl" / "best.tar")
    assert config.units == knobs["units"] and f"{knobs['teacher']}'s actions" in fit["source"]
    assert not (logdir / "ctrl" / "checkpoint.tar").exists()
    assert "train C (CMA-ES)" not in [stage["stage"] for stage in summary["stages"]]
    # The probe of what [z, h] carries runs on the trained run: every step recorded, each episode
    # predicted by the fit on the others, and the linear C it fits (after a round of DAgger) drives
    # episodes to an end.
    argv = [
        "--logdir",
        logdir,
        "--episodes",
        3,
        "--drive",
        2,
        "--dagger",
        1,
        "--max-steps",
        10,
        "--out",
        tmp_path / "probe.json",
        "--save-c",
        tmp_path / "fit.tar",
    ]
    probe = probe_socnav.main(probe_socnav.build_parser().parse_args(list(map(str, argv))))
    assert probe == json.loads((tmp_path / "probe.json").read_text()) and probe["env"] == "socnav-ego"
    assert 3 <= probe["frames"] <= 30
    assert set(probe["r_squared"]) == set(probe_socnav.READS)
    assert all(set(scores) == set(probe_socnav.TARGETS) for scores in probe["r_squared"].values())
    assert sum(probe["drive"]["outcomes"].values()) == len(probe["drive"]["returns"]) == 2
    # A DAgger round drives the fitted C on 3 more episodes and fits again on their steps too.
    (dagger,) = probe["dagger"]
    assert (
        sum(dagger["outcomes"].values()) == 3
        and probe["frames"] + 3 <= dagger["frames"] <= probe["frames"] + 30
    )
    # ... and is saved as a C of this run's shape, for a search to start from (traincontroller --start-from)
    vector, config, fit = load_controller_file(tmp_path / "fit.tar")
    assert vector.size == 867 and config.inputs == ("z", "h") and fit["returns"] == probe["drive"]["returns"]
    assert "go-to-goal's actions" in fit["source"]
    # The same with ORCA as the teacher and a network in place of the ridge: its reads beside the ridge's,
    # and the C it saves has that hidden layer and drives in test_controller.py as any C.
    argv[argv.index("--out") + 1] = tmp_path / "network.json"
    agent = tmp_path / "network"
    argv[argv.index("--save-c") + 1] = agent / "ctrl" / "best.tar"
    network = probe_socnav.main(
        probe_socnav.build_parser().parse_args(list(map(str, argv + ["--units", 4, "--teacher", "orca"])))
    )
    assert network["teacher"] == "orca" and network["units"] == 4 and network["frames"] == probe["frames"]
    assert (network["fit_epochs"], network["fit_decay"]) == (probe_socnav.FIT_EPOCHS, probe_socnav.FIT_DECAY)
    assert network["r_squared"] == probe["r_squared"]  # the same goal-mix episodes, the same ridge
    assert set(network["r_squared_network"]) == set(probe_socnav.READS)
    assert sum(network["drive"]["outcomes"].values()) == 2 and len(network["dagger"]) == 1
    vector, config, fit = load_controller_file(agent / "ctrl" / "best.tar")
    assert config.units == 4 and vector.size == 4 * 289 + 3 * 5 and "orca's actions" in fit["source"]
    for stage in ("vae", "mdrnn"):
        shutil.copytree(logdir / stage, agent / stage)
    flags = ["--logdir", agent, "--episodes", 2, "--max-steps", 10, "--out", agent]
    stats = test_controller.main(test_controller.build_parser().parse_args(list(map(str, flags))))
    assert len(stats["returns"]) == 2


def test_the_probe_refuses_another_games_run_in_one_line(pipeline_logdir):
    with pytest.raises(UserError, match="is not SocNavGym's; the probe reads its state"):
        probe_socnav.Probe(pipeline_logdir, 10)


def test_the_probes_fitted_c_is_saved_as_the_controller_that_computes_it(tmp_path):
    """--save-c: the ridge's weights laid out as C's flat vector compute, through models/controller.py's
    Controller, the ridge's own predictions; and the file loads as a controller checkpoint."""
    rng = np.random.default_rng(0)
    x, weights = rng.standard_normal((5, 32 + 256)), rng.standard_normal((32 + 256 + 1, 3))
    config = ControllerConfig(latent=32, hidden=256, action=3)
    save_controller(tmp_path / "c.tar", probe_socnav.controller_vector(weights), config, source="fit")
    vector, loaded, _ = load_controller_file(tmp_path / "c.tar")
    controller = Controller(loaded)
    controller.load_vector(vector)
    with torch.no_grad():
        raw = controller(torch.as_tensor(x[:, :32]).float(), torch.as_tensor(x[:, 32:]).float())
    np.testing.assert_allclose(raw.numpy(), probe_socnav.predict(weights, x), rtol=1e-4, atol=1e-4)


def test_the_probes_regression_reads_a_linear_map_back_and_not_noise():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((600, 5)), rng.standard_normal((5, 2))
    y = x @ w + 0.3
    np.testing.assert_allclose(probe_socnav.ridge(x, y), np.vstack([w, [0.3, 0.3]]), atol=0.01)
    folds = np.arange(600) // 10 % 3  # "episodes" of 10 rows
    fitted = probe_socnav.cross_fitted(x, y, folds)
    np.testing.assert_allclose(probe_socnav.r_squared(fitted, y), 1, atol=1e-3)
    noise = rng.standard_normal((600, 2)) + 3  # a mean far from 0: R^2 is of the variance about it
    assert probe_socnav.r_squared(probe_socnav.cross_fitted(x, noise, folds), noise).max() < 0.05
    half = y + rng.standard_normal(y.shape) * y.std(0)  # as much noise as signal: R^2 about a half
    scores = probe_socnav.r_squared(probe_socnav.cross_fitted(x, half, folds), half)
    assert np.all(np.abs(scores - 0.5) < 0.1), scores
    # an episode is never in its own fit: a code per episode reads back its noise only from a fit that saw it
    memorised = rng.standard_normal((30, 2))[np.arange(600) // 20]
    codes = np.eye(30)[np.arange(600) // 20]
    assert (
        probe_socnav.r_squared(
            probe_socnav.cross_fitted(codes, memorised, np.arange(600) // 20 % 3), memorised
        ).max()
        < 0
    )


def test_the_probes_network_reads_what_the_ridge_cannot():
    """--units: a tanh layer reads a map no linear one can (the product of two inputs), the ridge reads
    none of it; cross-fitted the same way. As C, its outputs are in tanh's range and near the
    actions it was fitted to; a rerun fits the same network."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (1500, 2))
    y = x[:, :1] * x[:, 1:]
    folds = np.arange(1500) // 10 % 3
    network = probe_socnav.r_squared(probe_socnav.cross_fitted(x, y, folds, units=16), y)
    ridge = probe_socnav.r_squared(probe_socnav.cross_fitted(x, y, folds), y)
    assert network[0] > 0.9 and ridge[0] < 0.05, (network, ridge)
    actions = np.c_[np.tanh(y), np.tanh(x[:, :1])]
    c = probe_socnav.fit_network(x, actions, 16, squash=True)
    out = c(x)
    assert np.abs(out).max() < 1 and np.mean(np.abs(out - actions)) < 0.15
    np.testing.assert_array_equal(out, probe_socnav.fit_network(x, actions, 16, squash=True)(x))
    # As C's flat vector with a hidden layer, standardisation folded in, C's squash of it is the network.
    controller = Controller(ControllerConfig(latent=1, hidden=1, action=2, units=16))
    controller.load_vector(c.controller_vector())
    with torch.no_grad():
        raw = controller(torch.as_tensor(x[:, :1]).float(), torch.as_tensor(x[:, 1:]).float())
    np.testing.assert_allclose(torch.tanh(raw).numpy(), out, atol=1e-5)


@pytest.mark.parametrize("rows, steps", [(10, 900), (600, 900), (4000, 60 * 16)])
def test_a_network_fit_makes_its_epochs_or_at_least_network_least_batches(monkeypatch, rows, steps):
    """NETWORK_EPOCHS epochs, or more where they make fewer than NETWORK_LEAST batches (of NETWORK_BATCH
    rows, the last one short): a fit of 10 rows makes 900 steps, not one per 256 rows it has not got."""
    made = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: made.append(1) or step(self, *a, **k))
    rng = np.random.default_rng(0)
    probe_socnav.fit_network(rng.standard_normal((rows, 2)), rng.standard_normal((rows, 1)), 4)
    sizes = probe_socnav.NETWORK_EPOCHS, probe_socnav.NETWORK_LEAST, probe_socnav.NETWORK_BATCH
    assert sizes == (60, 900, 256)  # what the steps above are counted for
    assert len(made) == steps


def test_cs_fit_is_long_and_undecayed_enough_for_a_sharp_push():
    """The fit of C to a teacher's actions (FIT_EPOCHS, FIT_DECAY, the defaults of --fit-epochs and
    --fit-decay) copies an action that turns sharply near one place (as a push off a person does) with
    under 0.8 of the held-out error of the probe's shorter, decayed fit (NETWORK_EPOCHS, NETWORK_DECAY)."""
    rng = np.random.default_rng(0)

    def push(x: np.ndarray) -> np.ndarray:  # a bump 0.08 wide in the first input, its sign the second's
        return 0.9 * np.exp(-(((x[:, :1] - 0.3) / 0.08) ** 2)) * np.sign(x[:, 1:])

    x, held_out = rng.uniform(-1, 1, (2000, 2)), rng.uniform(-1, 1, (2000, 2))
    errors = []
    for epochs, decay in (
        (probe_socnav.NETWORK_EPOCHS, probe_socnav.NETWORK_DECAY),
        (probe_socnav.FIT_EPOCHS, probe_socnav.FIT_DECAY),
    ):
        network = probe_socnav.fit_network(x, push(x), 64, True, epochs, decay)
        errors.append(np.mean((network(held_out) - push(held_out)) ** 2))
    assert errors[1] < 0.8 * errors[0], errors
    args = probe_socnav.build_parser().parse_args(["--logdir", "x"])
    assert (args.fit_epochs, args.fit_decay) == (probe_socnav.FIT_EPOCHS, probe_socnav.FIT_DECAY)


def test_state_labels_read_the_goal_people_and_nearest_furniture_from_the_robot():
    """The state labels (the probe's targets, V's state head's): the goal's direction over its distance
    and the distance, the nearest person's distance, and the nearest point of furniture or a wall in the
    robot's frame (ahead, left) over its distance with the gap from the robot's edge; distances capped
    at LABEL_CAP, and no furniture reads as far."""
    pytest.importorskip("shapely")
    plant = types.SimpleNamespace(x=2.0, y=0.0, radius=0.5)
    robot = types.SimpleNamespace(x=0.0, y=0.0, orientation=np.pi / 2, radius=0.25)  # heading +y
    person = types.SimpleNamespace(x=0.0, y=-3.0)
    sim = types.SimpleNamespace(robot=robot, plants=[plant], tables=[], laptops=[], walls=[],
                                static_humans=[person], dynamic_humans=[])  # fmt: skip
    # the goal 6 m ahead and 8 m to the left: 10 m away, beyond the cap
    env = types.SimpleNamespace(unwrapped=types.SimpleNamespace(sim=sim, goal_from_robot=lambda: (6.0, 8.0)))
    np.testing.assert_allclose(socnav.nearest_still(sim), [1.5, 0.0], atol=1e-3)
    # the plant is 1.5 m along +x, the robot's right: (ahead, left) = (0, -1), 1.25 m from its edge
    want = [0.6, 0.8, socnav.LABEL_CAP, 3.0, 0.0, -1.0, 1.25]
    labels = socnav.state_labels(env)
    assert labels.dtype == np.float32 and labels.shape == (len(socnav.STATE_LABELS),)
    np.testing.assert_allclose(labels, want, atol=1e-3)
    plant.x, person.y = 9.0, -5.0
    assert socnav.state_labels(env)[3] == socnav.state_labels(env)[6] == socnav.LABEL_CAP
    sim.plants = []
    assert socnav.nearest_still(sim) is None
    np.testing.assert_allclose(socnav.state_labels(env)[4:], [0.0, 0.0, socnav.LABEL_CAP])
    assert socnav.SPEC.labels is socnav.state_labels and socnav.SPEC.label_names == socnav.STATE_LABELS


def red_centre(frame: np.ndarray) -> np.ndarray:
    """(x, y) pixel centre of the goal in an ego frame (the only red there is)."""
    ys, xs = np.nonzero((frame[..., 0] > 200) & (frame[..., 1] < 50) & (frame[..., 2] < 50))
    assert len(xs), "no goal in the frame"
    return np.array([xs.mean(), ys.mean()])


@needs_socnavgym
def test_the_ego_view_turns_the_world_to_the_robots_heading():
    """The robot sits at the centre heading up: a goal ahead is above it, one to its left is left of it,
    at EGO_VIEW metres a frame; one beyond the view sits at the view's edge in its direction; past the
    walls is dark."""
    env = make_env("socnav-ego").unwrapped
    env.reset(seed=0)
    sim, size = env.sim, env.size
    ppm, centre = size / socnav.EGO_VIEW, np.array([size / 2, size / 2])
    robot = sim.robot
    robot.x, robot.y = 0.0, 0.0
    for heading in (0.0, 0.7, -2.5):
        robot.orientation = heading
        forward = np.array([np.cos(heading), np.sin(heading)])
        leftward = np.array([-np.sin(heading), np.cos(heading)])
        for ahead, left in ((2.0, 0.0), (0.0, 1.5), (-1.0, -2.0)):
            robot.goal_x, robot.goal_y = ahead * forward + left * leftward
            assert env.goal_from_robot() == pytest.approx((ahead, left))
            want = centre + ppm * np.array([-left, -ahead])  # image x to the right, y down
            np.testing.assert_allclose(red_centre(env._draw()), want, atol=1.0)
        robot.goal_x, robot.goal_y = 30 * forward + 10 * leftward  # far off: at the top edge, to the left
        x, y = red_centre(env._draw())
        edge = socnav.GOAL_EGO_RADIUS * ppm + 1  # the marker's centre stays a radius inside the frame
        assert y == pytest.approx(edge, abs=1.5) and x == pytest.approx(
            size / 2 - (size / 2 - y) * 10 / 30, abs=2
        )
    # The room turns with the robot: 1 m from the east wall, the outside is 1.5 m ahead when it heads
    # east, 1.5 m to its right when it heads north.
    robot.x, step = sim.MAP_X / 2 - 1, round(1.5 * ppm)
    for heading, outside in (
        (0.0, (size // 2, size // 2 - step)),
        (np.pi / 2, (size // 2 + step, size // 2)),
    ):
        robot.orientation = heading
        frame, (x, y) = env._draw(), outside
        assert (frame[y, x] == socnav.OUTSIDE).all() and (frame[size - y, size - x] != socnav.OUTSIDE).any()
    robot.x = 0.0
    frame = env._draw()
    robot.x = sim.MAP_X / 2 + socnav.EGO_VIEW  # well past the wall: nothing but the outside
    assert (
        env._draw()[size // 2 - 20 : size // 2 + 20, size // 2 - 20 : size // 2 + 20] == socnav.OUTSIDE
    ).all()
    assert (frame == socnav.FLOOR).mean() > 0.3  # inside the room: mostly floor


def blue_pixels(frame: np.ndarray) -> np.ndarray:
    """(x, y) of every person pixel in an ego frame (the only blue there is)."""
    ys, xs = np.nonzero((frame[..., 2] > 200) & (frame[..., 0] < 50) & (frame[..., 1] < 90))
    return np.stack([xs, ys], axis=1)


@needs_socnavgym
def test_the_ego_view_draws_people_as_disks_where_they_are_from_the_robot():
    """Every person is a blue disk of PERSON_EGO_RADIUS at its place relative to the robot, turned with
    it; one behind a wall of the frame's edge is not in the frame."""
    env = make_env("socnav-ego").unwrapped
    env.reset(seed=1)
    sim, size = env.sim, env.size
    ppm, centre = size / socnav.EGO_VIEW, np.array([size / 2, size / 2])
    people = sim.static_humans + sim.dynamic_humans
    assert len(people) >= 2
    robot = sim.robot
    robot.x, robot.y, robot.orientation = 0.0, 0.0, 0.7
    robot.goal_x, robot.goal_y = 30.0, 0.0  # far off: the goal's marker sits at the frame's edge
    forward = np.array([np.cos(0.7), np.sin(0.7)])
    leftward = np.array([-np.sin(0.7), np.cos(0.7)])
    for ahead, left in ((1.5, 0.0), (0.0, -2.0), (-2.0, 1.0)):
        for person in people:
            person.x, person.y = ahead * forward + left * leftward
        blue = blue_pixels(env._draw())
        want = centre + ppm * np.array([-left, -ahead])
        np.testing.assert_allclose(blue.mean(axis=0), want, atol=1.0)
        area = np.pi * (socnav.PERSON_EGO_RADIUS * ppm) ** 2
        assert 0.7 * area < len(blue) < 1.3 * area, (len(blue), area)
    for person in people:
        person.x, person.y = 30 * forward  # out of the frame
    assert len(blue_pixels(env._draw())) == 0


@needs_socnavgym
def test_ego_salience_marks_the_goal_and_people_and_nothing_else(monkeypatch):
    """The goal-people mask, on V's 64x64 frames of several rooms: every pixel it marks is one the goal or
    a person changed (drawing them in the floor's grey instead shows which), their solid parts are all
    marked, and furniture never is; the coloured mask marks all that and furniture, never the floor or
    the outside; the graded mask is 1 where the first marks, a share where only the second does, else 0."""
    spec = get_env_spec("socnav-ego")
    env = make_env("socnav-ego").unwrapped

    def frame() -> torch.Tensor:
        view = spec.preprocess(env._draw(), spec.default_preprocessing)
        return torch.from_numpy(view).permute(2, 0, 1)[None].float() / 255

    furniture = 0
    for seed in range(6):
        env.reset(seed=seed)
        shown = frame()
        with monkeypatch.context() as patch:
            patch.setattr(socnav, "GOAL_EGO", (socnav.FLOOR,) * 3)
            patch.setattr(socnav, "PERSON_EGO", (socnav.FLOOR,) * 3)
            hidden = frame()
        changed = (shown - hidden).abs().amax(1, keepdim=True)
        marked = spec.salient["goal-people"](shown)
        assert marked.any() and not (marked & (changed == 0)).any(), seed
        assert marked[changed > 0.5].all(), seed
        assert marked.sum() >= 0.7 * (changed > 0).sum(), seed
        r, g, b = hidden[0]
        brown = (r - b > 0.3) & (g - b > 0.15)  # furniture, never marked (above)
        furniture += int(brown.sum())
        # "coloured" marks the same and furniture too, and never the greys of the floor and the outside.
        coloured = spec.salient["coloured"](shown)
        assert not (marked & ~coloured).any() and coloured[0, 0][brown].all(), seed
        # "graded" counts the goal and people fully, furniture at a share, nothing else.
        graded = spec.salient["graded"](shown)
        assert (graded[marked] == 1).all() and (graded[~coloured] == 0).all(), seed
        share = socnav.EGO_FURNITURE_SHARE
        assert (graded[coloured & ~marked] == share).all() and graded[0, 0][brown].all(), seed
        grey = (shown * 255).round().int()
        for level in (socnav.FLOOR, socnav.OUTSIDE):
            assert not coloured[(grey == level).all(1, keepdim=True)].any(), seed
    assert furniture > 0  # the rooms held some


@needs_socnavgym
def test_goal_mix_rollouts_head_for_the_goal_in_their_share_of_episodes(tmp_path):
    """--policy goal-mix reads the state: an episode is the brownian policy's own actions, or heads for
    the goal with brownian noise added (turning too) and reaches it far more often; through
    generation_script.py its files say so, and the error for an unknown policy lists it."""
    from data import generation_script
    from data.rollouts import load_rollout

    env = make_env(ENV)
    episodes = {"brownian": [], "goal": []}  # (outcome, distance to the goal at the end / at the start)
    for seed in range(10):
        policy = SPEC.state_policies["goal-mix"](np.random.default_rng(seed), SPEC.max_episode_steps)
        brownian = SPEC.policies["brownian"](np.random.default_rng(seed), SPEC.max_episode_steps)
        env.reset(seed=seed)
        start, taken = np.hypot(*env.unwrapped.goal_from_robot()), []
        for t in range(SPEC.max_episode_steps):
            taken.append(policy(env, t))
            *_, terminated, truncated, info = env.step(taken[-1])
            if terminated or truncated:
                break
        kind = "brownian" if np.array_equal(np.stack(taken), brownian[: len(taken)]) else "goal"
        episodes[kind].append((info["outcome"], np.hypot(*env.unwrapped.goal_from_robot()) / start))
    assert len(episodes["brownian"]) >= 2 and len(episodes["goal"]) >= 2, episodes
    assert all(outcome == "success" or nearer < 0.8 for outcome, nearer in episodes["goal"]), episodes
    successes = {kind: [outcome for outcome, _ in e].count("success") for kind, e in episodes.items()}
    assert successes["goal"] >= 1 and successes["brownian"] == 0, episodes

    parser = generation_script.build_parser()
    flags = ["--env", "socnav-ego", "--rollouts", "2", "--threads", "1", "--max-steps", "5"]
    generation_script.main(parser.parse_args([*flags, "--rootdir", str(tmp_path), "--policy", "goal-mix"]))
    assert json.loads((tmp_path / "generation.json").read_text())["policy"] == "goal-mix"
    assert {load_rollout(f).policy for f in tmp_path.glob("*.npz")} == {"goal-mix"}
    with pytest.raises(UserError, match="--policy no: socnav-ego has brownian, goal-mix or controller"):
        generation_script.main(parser.parse_args([*flags, "--rootdir", str(tmp_path), "--policy", "no"]))


def test_rollouts_record_the_state_labels_of_every_frame(tmp_path):
    """generation_script.py writes SocNavGym's state labels beside every frame (the first one after reset,
    then one after each action, the final frame's included): replaying a rollout's actions from its seed
    reads the same labels, row for row."""
    flags = ["--env", "socnav-ego", "--rollouts", "2", "--threads", "1", "--max-steps", "12"]
    generation_script.main(generation_script.build_parser().parse_args([*flags, "--rootdir", str(tmp_path)]))
    env = make_env("socnav-ego", max_episode_steps=12)
    for path in list_rollouts(tmp_path):
        rollout = load_rollout(path)
        assert rollout.labels.shape == (len(rollout) + 1, len(socnav.STATE_LABELS))
        env.reset(seed=rollout.track_seed)
        replayed = [socnav.state_labels(env)]
        for action in rollout.actions:
            env.step(action)
            replayed.append(socnav.state_labels(env))
        np.testing.assert_array_equal(rollout.labels, np.stack(replayed))
        assert len(np.unique(rollout.labels, axis=0)) > 1  # the state changes as the robot moves


def empty_room(env, people: list[tuple[float, float, float, float]]):
    """The robot at the origin facing +x with its goal 3 m ahead, no furniture or walls, and one person
    per (x, y, heading, speed) of ``people``; the simulator's people beyond those are dropped."""
    sim = env.unwrapped.sim
    robot = sim.robot
    robot.x, robot.y, robot.orientation, robot.goal_x, robot.goal_y = 0.0, 0.0, 0.0, 3.0, 0.0
    sim.plants, sim.tables, sim.laptops, sim.walls = [], [], [], []
    crowd = sim.static_humans + sim.dynamic_humans
    assert len(crowd) >= len(people)
    for person, (x, y, heading, speed) in zip(crowd[: len(people)], people, strict=True):
        person.x, person.y, person.orientation, person.speed = x, y, heading, speed
    sim.static_humans, sim.dynamic_humans = [], crowd[: len(people)]
    return sim


def clearance(action: np.ndarray, person: tuple[float, float, float, float], steps: int) -> float:
    """The least gap (m) between the robot holding ``action`` from the origin (facing +x) and the person
    (x, y, heading, speed) going straight on, over ``steps`` one-second steps."""
    x, y, heading, speed = person
    k = np.arange(1, steps + 1)[:, None]
    robot = k * action[:2] * 0.1  # max_advance_robot: 0.1 m a step at 1
    them = np.array([x, y]) + k * speed * np.array([np.cos(heading), np.sin(heading)])
    return float(np.linalg.norm(robot - them, axis=1).min() - 0.3 - 0.36)  # robot radius, half a person


@needs_socnavgym
def test_lookahead_steps_out_of_the_way_of_a_person_walking_at_it_and_else_heads_for_the_goal():
    """A person 1.5 m ahead walks straight at the robot, faster than it can go: go-to-goal walks into them
    within 4 steps; lookahead slides aside at full speed, a velocity that keeps its clearance for all of its
    steps ahead. With nobody there, it is go-to-goal's full-speed move; a plant on the way is avoided."""
    env = make_env("socnav-ego")
    env.reset(seed=3)
    walker = (1.5, 0.0, np.pi, 0.14)
    empty_room(env, [walker])
    straight = socnav.go_to_goal(env)
    assert clearance(straight, walker, 4) < 0
    action = socnav.lookahead(env)
    assert clearance(action, walker, socnav.LOOKAHEAD_STEPS) >= socnav.LOOKAHEAD_CLEARANCE["people"]
    assert abs(action[1]) > 0.9 and action[0] > -0.1 and action[2] == 0, action
    sim = empty_room(env, [(-3.0, 3.0, 0.0, 0.0)])  # someone far off, standing
    np.testing.assert_allclose(socnav.lookahead(env), straight, atol=1e-6)
    sim.plants = [types.SimpleNamespace(x=1.0, y=0.0, radius=0.4)]
    around = socnav.lookahead(env)
    assert abs(around[1]) > 0.3, around  # it slides sideways to pass the plant
    path = np.arange(1, socnav.LOOKAHEAD_STEPS + 1)[:, None] * around[:2] * 0.1
    gap = np.linalg.norm(path - [1.0, 0.0], axis=1).min() - 0.4 - 0.3  # less the plant's and robot's radii
    assert gap >= socnav.LOOKAHEAD_CLEARANCE["furniture"]


@needs_socnavgym
def test_potential_field_is_pushed_off_people_and_furniture_and_changes_smoothly():
    """Alone, the field is go-to-goal (the far person's push is e^-7 of its full strength); a person ahead
    and to the left pushes it back and to the right; a plant ahead slows it; and as the person moves off a
    centimetre at a time, the action changes by a hair each time, where lookahead's choice among its
    velocities can jump."""
    env = make_env("socnav-ego")
    env.reset(seed=3)
    empty_room(env, [(-3.0, 3.0, 0.0, 0.0)])
    np.testing.assert_allclose(socnav.potential_field(env), socnav.go_to_goal(env), atol=0.01)
    sim = empty_room(env, [(0.9, 0.3, 0.0, 0.0)])
    pushed = socnav.potential_field(env)
    assert pushed[0] < 0 and pushed[1] < -0.2 and pushed[2] == 0, pushed
    person, actions = sim.dynamic_humans[0], []
    for x in np.arange(0.6, 3.0, 0.01):  # the person from close by to far off, a centimetre at a time
        person.x = x
        actions.append(socnav.potential_field(env))
    assert np.abs(np.diff(actions, axis=0)).max() < 0.05
    sim = empty_room(env, [(-3.0, 3.0, 0.0, 0.0)])
    sim.plants = [types.SimpleNamespace(x=0.9, y=0.0, radius=0.4)]
    assert socnav.potential_field(env)[0] < 0.5 * socnav.go_to_goal(env)[0]


@needs_socnavgym
def test_references_reach_the_goal_and_an_unknown_one_is_one_line(tmp_path, monkeypatch):
    """The references read the simulator's state: go-to-goal, ORCA, lookahead and potential-field each
    reach the goal in half of 6 episodes, where the random policy does in 5%; standing still never moves
    the robot, so its episodes end only in the timeout or a person walking into it (the recipe's test runs
    them beside the agent, through test_controller.py --reference); an unknown name is one line."""
    import test_controller

    env = make_env(ENV)
    assert set(SPEC.references) == {"go-to-goal", "orca", "lookahead", "potential-field", "stand-still"}
    for name, reference in SPEC.references.items():
        outcomes = []
        for seed in range(6):
            env.reset(seed=seed)
            robot = env.unwrapped.sim.robot
            start = robot.x, robot.y, robot.orientation
            for _ in range(SPEC.max_episode_steps):
                *_, terminated, truncated, info = env.step(reference(env))
                if terminated or truncated:
                    break
            outcomes.append((info["outcome"], info["outcome_detail"]))
            if name == "stand-still":
                assert (robot.x, robot.y, robot.orientation) == start
        if name == "stand-still":
            assert set(outcomes) <= {("timeout", ""), ("collision", "person")}, outcomes
        else:
            assert [o for o, _ in outcomes].count("success") >= 3, (name, outcomes)
    # A SocNavGym run's logdir, as far as the check needs one: the env its V was trained on.
    monkeypatch.setattr(test_controller, "load_data_record", lambda logdir: types.SimpleNamespace(env=ENV))
    argv = ["--logdir", str(tmp_path), "--out", str(tmp_path), "--reference", "nope"]
    with pytest.raises(UserError, match="--reference nope: socnav has no such reference .*go-to-goal, orca"):
        test_controller.main(test_controller.build_parser().parse_args(argv))
