"""Learning inside the dream: batched dreams, traincontroller --dream, --policy controller, the script."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import test_controller
import traincontroller
from data import generation_script
from data.rollouts import list_rollouts, load_rollout
from envs import get_env_spec
from models.controller import ControllerBatch, ControllerConfig
from models.dream import Dream, dream_returns, start_latents
from models.mdrnn import MDRNNCell, sample_latent
from tests.conftest import copy_logdir
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import UserError

L, H = 4, 16


def make_cell(seed=0, reward=None, termination=-20.0):
    """A small random M; ``reward``: constant reward head (zero weights, that bias) when given."""
    torch.manual_seed(seed)
    cell = MDRNNCell(latent=L, hidden=H, gaussians=3).eval()
    with torch.no_grad():
        if reward is not None:
            cell.reward_linear.weight.zero_()
            cell.reward_linear.bias.fill_(reward)
        cell.termination_linear.weight.zero_()
        cell.termination_linear.bias.fill_(termination)
    return cell


CONFIG = ControllerConfig(L, H, 3)
SQUASH = get_env_spec("carracing").squash


def controllers(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, CONFIG.vector_size)).astype(np.float32)


def run(cell, n=6, steps=7, tau=1.0, seed=0, start=None, params=None, done_mode="threshold", record=None):
    start = torch.randn(n, L, generator=torch.Generator().manual_seed(99)) if start is None else start
    params = controllers(n) if params is None else params
    dream = Dream(cell, tau, done_mode, torch.Generator().manual_seed(seed))
    return dream_returns(dream, ControllerBatch(CONFIG, params), SQUASH, start, steps, record)


def test_shapes_and_determinism():
    cell = make_cell()
    returns, lengths = run(cell)
    assert returns.shape == (6,) and returns.dtype == torch.float32
    assert lengths.shape == (6,) and lengths.dtype == torch.int64
    again, _ = run(cell)
    torch.testing.assert_close(returns, again, rtol=0, atol=0)
    other, _ = run(cell, seed=1)
    assert not torch.equal(returns, other)


def test_temperature_widens_the_spread_of_dreamed_latents():
    """Same start and controller on 256 rows: the rows differ only by M's draws, more so at high tau."""
    cell = make_cell()
    start = torch.zeros(256, L)
    params = np.repeat(controllers(1), 256, axis=0)

    def spread(tau):
        record = []
        run(cell, n=256, steps=4, tau=tau, start=start, params=params, record=record)
        return record[-1][0].var(dim=0).mean().item()

    assert spread(0.0) == 0.0
    assert spread(0.2) < spread(1.0) < spread(2.0)


def test_rewards_and_terminations_come_from_m():
    returns, lengths = run(make_cell(reward=0.5), steps=9)
    torch.testing.assert_close(returns, torch.full((6,), 4.5))
    assert lengths.tolist() == [9] * 6
    for mode in ("threshold", "sample"):
        returns, lengths = run(make_cell(reward=-2.0, termination=20.0), steps=9, done_mode=mode)
        assert lengths.tolist() == [1] * 6
        torch.testing.assert_close(returns, torch.full((6,), -2.0))


def test_one_step_under_given_actions_is_m_sampled():
    """Dream.step is M's cell followed by a draw of the mixture: the same generator state gives the same z."""
    cell = make_cell(reward=0.25)
    start, action = torch.randn(3, L, generator=torch.Generator().manual_seed(1)), torch.rand(3, 3)
    dream = Dream(cell, 0.7, generator=torch.Generator().manual_seed(4))
    dream.reset(start)
    z, reward, done = dream.step(action)
    out = cell(action, start, cell.initial_hidden(3))
    expected = sample_latent(out.mus, out.sigmas, out.logpi, 0.7, torch.Generator().manual_seed(4))
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
    torch.testing.assert_close(reward, torch.full((3,), 0.25))
    assert not done.any()
    # A latent given to step replaces the dream's own (real frames fed as context): from the state after
    # step 1, M steps on ``start`` rather than on the z it drew.
    hidden, state = dream.hidden, torch.get_rng_state()
    generator = torch.Generator().manual_seed(9)
    dream.generator = generator
    z2, _, _ = dream.step(action, z=start)
    out2 = cell(action, start, hidden)
    expected2 = sample_latent(out2.mus, out2.sigmas, out2.logpi, 0.7, torch.Generator().manual_seed(9))
    torch.testing.assert_close(z2, expected2, rtol=0, atol=0)
    assert torch.equal(state, torch.get_rng_state())  # the global stream is untouched


def test_start_latents_first_frames_of_rollouts():
    mu = np.arange(20, dtype=np.float32).reshape(10, 2)
    offsets = np.array([0, 4, 10])
    first = start_latents(mu, offsets, 8, np.random.default_rng(0), "first")
    assert set(first[:, 0].tolist()) <= {0.0, 8.0}
    anywhere = start_latents(mu, offsets, 64, np.random.default_rng(0), "random")
    assert anywhere.shape == (64, 2) and len(set(anywhere[:, 0].tolist())) > 2


def dream_args(logdir, *extra):
    return traincontroller.build_parser().parse_args(
        [
            "--logdir", str(logdir), "--dream", "--pop-size", "4", "--n-samples", "2", "--dream-steps", "12",
            "--generations", "2", "--eval-every", "1", "--eval-episodes", "1", "--max-steps", "30",
            "--max-workers", "1", "--envs-per-worker", "2", "--device", "cpu", *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def dream_logdir(pipeline_logdir, tmp_path_factory):
    """A copy of the pipeline with a controller trained 2 generations in the dream."""
    logdir = copy_logdir(pipeline_logdir, tmp_path_factory.mktemp("dream") / "exp")
    summary = traincontroller.main(dream_args(logdir))
    return logdir, summary


def test_traincontroller_dream_logs_dream_and_real_scores(dream_logdir):
    logdir, summary = dream_logdir
    assert summary["generation"] == 2
    for record in summary["history"]:
        assert {"best", "mean", "worst", "eval_mean", "eval_best"} <= set(record)
        # dream returns are sums of M's predicted rewards over <= 12 steps; real ones come from 30 env steps
        assert np.isfinite(record["best"]) and np.isfinite(record["eval_mean"])
    assert (logdir / "ctrl" / "best.tar").is_file()
    assert load_checkpoint(logdir / "ctrl" / "best.tar")["score"] == summary["best_score"]
    gif = logdir / "ctrl" / "dream_gen_002.gif"
    assert gif.is_file() and gif.stat().st_size > 0


def test_dream_training_resumes_exactly(dream_logdir, pipeline_logdir, tmp_path):
    _, straight = dream_logdir
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    traincontroller.main(dream_args(logdir, "--generations", "1"))
    resumed = traincontroller.main(dream_args(logdir))  # the fixture's 2 generations, in 1 + 1
    assert resumed["history"] == straight["history"]


def test_dream_fitness_is_deterministic(dream_logdir):
    logdir, _ = dream_logdir
    args = dream_args(logdir, "--dream-steps", "8", "--seed", "3")
    dream = traincontroller.DreamFitness(args, ControllerConfig(32, 256, 3), get_env_spec("carracing"))
    cands = np.random.default_rng(0).standard_normal((3, 867)) * 0.1
    a = dream.fitness(cands, generation=5, seed=3)
    b = dream.fitness(cands, generation=5, seed=3)
    assert a.shape == (3, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, dream.fitness(cands, generation=6, seed=3))
    assert not np.array_equal(a, dream.fitness(cands, generation=5, seed=4))  # another search's streams


def reward_for_steering_right(logdir: Path) -> None:
    """Replace M's weights in ``logdir`` with a hand-made M whose dream rewards steering right: LSTM unit 0
    holds tanh(2 a_steer) (input and output gates open, forget gate shut), the reward is that unit's
    output (in (-0.76, 0.76) a step), latents are N(0, 1) noise and no dream ever ends."""
    path = logdir / "mdrnn" / "best.tar"
    ckpt = load_checkpoint(path)
    state = {k: torch.zeros_like(v) for k, v in ckpt["model"].items()}
    hidden, latent = ckpt["model_config"]["hidden"], ckpt["model_config"]["latent"]
    i, f, g, o = (gate * hidden for gate in range(4))  # nn.LSTM's gate order, unit 0 of each
    state["rnn.bias_ih_l0"][[i, f, o]] = torch.tensor([10.0, -10.0, 10.0])
    state["rnn.weight_ih_l0"][g, latent] = 2.0  # the input [z, a]: a_steer is column `latent`
    state["reward_linear.weight"][0, 0] = 1.0
    state["termination_linear.bias"][0] = -20.0
    save_checkpoint({**ckpt, "model": state}, path)


def test_the_search_learns_what_the_dream_rewards(pipeline_logdir, tmp_path):
    """CMA-ES must improve C: in a dream that pays for steering right, the population's mean fitness
    climbs over 6 generations. It falls if the search minimised fitness, and stays flat if it ignored it.
    At tau 0.01 the dreamed latents are about M's means (0): steering is C's bias and M's unit 0 alone."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    reward_for_steering_right(logdir)
    flags = ["--pop-size", "8", "--dream-steps", "20", "--generations", "6", "--eval-every", "6"]
    history = traincontroller.main(dream_args(logdir, *flags, "--sigma", "0.5", "--temperature", "0.01"))[
        "history"
    ]
    mean = [h["mean"] for h in history]
    assert mean[-1] > mean[0] + 4 and mean[-1] > 8, mean  # 20 steps of at most 0.76


def test_m_without_reward_head_is_one_clear_error(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    path = logdir / "mdrnn" / "best.tar"
    ckpt = load_checkpoint(path)
    ckpt["reward_head"] = False
    save_checkpoint(ckpt, path)
    with pytest.raises(UserError, match="without --no-reward"):
        traincontroller.main(dream_args(logdir))


def generate(logdir: Path, rootdir: Path, *extra):
    args = generation_script.build_parser().parse_args(
        ["--policy", "controller", "--logdir", str(logdir), "--rootdir", str(rootdir), "--rollouts", "2",
         "--threads", "1", "--max-steps", "20", "--seed", "5", *extra]
    )  # fmt: skip
    return generation_script.main(args)


def test_generation_with_the_controller(dream_logdir, tmp_path):
    logdir, _ = dream_logdir
    assert generate(logdir, tmp_path / "a") == [0, 1]
    generate(logdir, tmp_path / "b")
    files_a, files_b = list_rollouts(tmp_path / "a"), list_rollouts(tmp_path / "b")
    assert len(files_a) == 2
    for fa, fb in zip(files_a, files_b, strict=True):
        ra, rb = load_rollout(fa), load_rollout(fb)
        assert ra.policy == "controller" and len(ra) == 20
        assert np.array_equal(ra.actions, rb.actions) and np.array_equal(ra.observations, rb.observations)
        assert (ra.actions[:, 1:] >= 0).all() and (np.abs(ra.actions) <= 1).all()
    generate(logdir, tmp_path / "c", "--noise", "0", "--rollouts", "1")
    noiseless = load_rollout(list_rollouts(tmp_path / "c")[0])
    assert not np.array_equal(noiseless.actions, load_rollout(files_a[0]).actions)


def test_generation_controller_policy_needs_a_controller(pipeline_logdir, tmp_path):
    with pytest.raises(UserError, match="traincontroller.py"):
        generate(pipeline_logdir, tmp_path / "r")


def test_dream_script_writes_an_animation(dream_logdir, tmp_path):
    import imageio.v3 as iio

    from scripts import dream as dream_script

    logdir, _ = dream_logdir
    for extra in ([], ["--controller"]):
        out = tmp_path / f"dream{len(extra)}.gif"
        argv = ["--logdir", str(logdir), "--out", str(out), "--steps", "6", "--scale", "1", *extra]
        dream_script.main(dream_script.build_parser().parse_args(argv))
        frames = iio.imread(out)
        assert frames.shape[1:3] == (64, 64) and 1 <= len(frames) <= 6


def test_keyboard_mode_without_a_display_is_one_clear_error(dream_logdir, monkeypatch):
    from scripts import dream as dream_script

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    logdir, _ = dream_logdir
    args = dream_script.build_parser().parse_args(["--logdir", str(logdir), "--keyboard"])
    with pytest.raises(UserError, match="needs a display"):
        dream_script.main(args)


def test_keyboard_mode_plays_with_the_games_own_keys(dream_logdir, monkeypatch):
    """--keyboard reads the arrow keys held and acts in the dream through the env's own mapping of them
    (EnvSpec.keyboard, here replaced by one no game has, so that nothing else could produce its actions)."""
    pygame = pytest.importorskip("pygame")
    from scripts import dream as dream_script

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # asked for by name: allowed, as under a test harness
    held, polls, actions = {pygame.K_LEFT, pygame.K_UP}, [], []
    keys = type("Keys", (), {"__getitem__": lambda _, k: k in held})()
    monkeypatch.setattr(pygame.key, "get_pressed", lambda: keys)
    quit_event = [pygame.event.Event(pygame.QUIT)]
    monkeypatch.setattr(pygame.event, "get", lambda: quit_event if polls.append(1) or len(polls) > 4 else [])
    mapping = {frozenset({"left", "up"}): np.array([0.25, 0.5, 0.125], np.float32)}
    spec = dataclasses.replace(get_env_spec("carracing"), keyboard=mapping.__getitem__)
    monkeypatch.setattr(dream_script, "get_env_spec", lambda name: spec)
    step = dream_script.OneDream.step
    monkeypatch.setattr(dream_script.OneDream, "step", lambda self, a: actions.append(a) or step(self, a))
    logdir, _ = dream_logdir
    argv = ["--logdir", str(logdir), "--keyboard", "--fps", "1000"]
    dream_script.main(dream_script.build_parser().parse_args(argv))
    assert len(actions) == 5 and all(np.array_equal(a, [0.25, 0.5, 0.125]) for a in actions)  # a step a poll


def test_test_controller_scores_the_agent_in_the_dream(dream_logdir, tmp_path):
    """--in-dream: the paper's 'dream score', one dream per episode, reproducible for a seed."""
    logdir, _ = dream_logdir
    argv = [
        "--logdir",
        str(logdir),
        "--in-dream",
        "--episodes",
        "6",
        "--max-steps",
        "12",
        "--temperature",
        "1.3",
    ]
    a = test_controller.main(test_controller.build_parser().parse_args([*argv, "--out", str(tmp_path / "a")]))
    b = test_controller.main(test_controller.build_parser().parse_args([*argv, "--out", str(tmp_path / "b")]))
    saved = (tmp_path / "a" / "dream_returns.json").read_text()
    assert a["returns"] == b["returns"] and len(a["returns"]) == 6 and '"temperature": 1.3' in saved
    assert all(1 <= n <= 12 for n in a["steps"])
