"""Driving episodes and the controller stage run for real: CMA-ES resume, failures, test_controller."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import test_controller
import traincontroller
from driving.agent import Agent, random_agent_spec
from driving.episode import Episode, EpisodeSettings, WorkerError, drive_chunk
from driving.pool import WorkerPool
from envs import get_env_spec, make_env
from experiment.logdir import load_controller_file, save_controller
from models.controller import Controller, ControllerConfig
from models.mdrnn import MDRNNCell
from models.vae import VAE, frames_to_tensor
from scripts import export_pretrained
from tests.conftest import copy_logdir, pool_workers, run_script
from utils.checkpoint import load_checkpoint
from utils.cli import UserError

ROOT = Path(__file__).resolve().parent.parent
SHORT = EpisodeSettings(max_steps=30, renderer="fast")


@pytest.fixture(scope="module")
def spec():
    return random_agent_spec(seed=0)


def episodes(n, steps_seed=0, cutoff=0, size=867):
    rng = np.random.default_rng(steps_seed)
    return [Episode(i, rng.standard_normal(size).astype(np.float32), 100 + i, cutoff) for i in range(n)]


def test_agent_spec_leaves_out_decoder_and_heads(spec):
    assert spec.encoder_state and all(not k.startswith(("fc_dec", "dec")) for k in spec.encoder_state)
    assert set(spec.rnn_state) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"}


def test_agent_matches_the_models_step_by_step(spec):
    """The batched step equals V.encode -> Controller -> squash -> MDRNNCell, one episode at a time."""
    agent = Agent(spec)
    vae = VAE.from_config(spec.vae_config)
    vae.load_state_dict(spec.encoder_state, strict=False)
    cell = MDRNNCell.from_config(spec.mdrnn_config)
    cell.load_state_dict(spec.rnn_state, strict=False)
    squash = get_env_spec("carracing").squash
    eps = episodes(3)
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    h, c = torch.randn(3, 256), torch.randn(3, 256)
    actions, (h2, c2) = agent.step(frames, agent.controllers(np.stack([e.params for e in eps])), (h, c))
    for i, e in enumerate(eps):
        ctrl = Controller(spec.controller)
        ctrl.load_vector(e.params)
        with torch.no_grad():
            mu, _ = vae.encode(frames_to_tensor(frames[i : i + 1]))
            a = squash(ctrl(mu, h[i : i + 1]))
            out = cell(a, mu, (h[i : i + 1], c[i : i + 1]))
        np.testing.assert_allclose(actions[i], a[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(h2[i].numpy(), out.hidden[0][0].numpy(), atol=1e-5)
    assert actions[:, 0].min() >= -1 and actions[:, 1:].min() >= 0 and actions.max() <= 1


def test_chunk_returns_do_not_depend_on_workers(spec):
    eps = episodes(6)
    with WorkerPool(spec, SHORT, n_workers=2, n_envs=3) as pool:
        two = pool.evaluate(eps)
    with WorkerPool(spec, SHORT, n_workers=1, n_envs=3) as pool:
        one = pool.evaluate(eps)
    assert {k: (r.episode_return, r.steps) for k, r in two.items()} == {
        k: (r.episode_return, r.steps) for k, r in one.items()
    }
    # In this process too: the same chunk gives the same returns.
    agent = Agent(spec)
    local = drive_chunk(agent, [make_env(max_episode_steps=30) for _ in range(3)], eps[:3], SHORT)
    assert local == [two[i] for i in range(3)]
    assert all(r.steps == 30 for r in two.values())


def test_negative_cutoff_ends_episodes_early(spec):
    agent = Agent(spec)
    # The first ~50 frames of CarRacing are a zoom-in where every step costs -0.1.
    (result,) = drive_chunk(
        agent, [make_env(max_episode_steps=100)], episodes(1, cutoff=10), EpisodeSettings(100, "fast")
    )
    assert result.steps < 100


def test_episode_length_cap_below_the_settings(spec):
    agent = Agent(spec)
    capped = [Episode(e.task_id, e.params, e.seed, 0, 12) for e in episodes(2)]
    results = drive_chunk(agent, [make_env(max_episode_steps=30) for _ in range(2)], capped, SHORT)
    assert [r.steps for r in results] == [12, 12]
    # A cap above the settings' limit does not lengthen the episode.
    long = [Episode(e.task_id, e.params, e.seed, 0, 500) for e in episodes(1)]
    (result,) = drive_chunk(agent, [make_env(max_episode_steps=30)], long, SHORT)
    assert result.steps == 30


def test_worker_killed_fails_fast_with_clear_message(spec):
    long = EpisodeSettings(1000, "fast")
    with WorkerPool(spec, long, n_workers=2, n_envs=1, timeout=60) as pool:
        time.sleep(0.5)
        victim = pool.processes[1].pid
        start = time.monotonic()
        threading_kill = __import__("threading").Timer(3.0, os.kill, (victim, signal.SIGKILL))
        threading_kill.start()
        with pytest.raises(WorkerError, match=r"episode worker 1 .* died with exit code -9"):
            pool.evaluate(episodes(4))
        assert time.monotonic() - start < 20
    assert not any(p.is_alive() for p in pool.processes)


def test_worker_exception_carries_its_traceback(spec):
    bad = [Episode(0, np.zeros(5, np.float32), 1)]  # wrong controller size
    with WorkerPool(spec, SHORT, n_workers=1, n_envs=1) as pool:
        with pytest.raises(WorkerError, match=r"(?s)episode worker 0 failed:.*Traceback"):
            pool.evaluate(bad)


def test_an_evaluation_cut_short_stops_its_workers_at_once(spec):
    """Ctrl-C in the middle of an evaluation (here from its progress callback): the workers would drive
    the queued chunks past the 2 s a polite stop waits for them; closing the pool kills them at once."""
    pool = WorkerPool(spec, EpisodeSettings(1000, "fast"), n_workers=2, n_envs=1, timeout=60)

    def interrupt(result):
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            pool.evaluate(episodes(8, steps_seed=1), on_result=interrupt)
    except BaseException:
        pool.close()  # a failure here must not leave the workers (which ignore SIGTERM) to hang pytest's exit
        raise
    start = time.monotonic()
    pool.close()
    assert time.monotonic() - start < 1.5  # the polite stop's deadline alone is 2 s
    assert all(p.exitcode == -signal.SIGKILL for p in pool.processes)


def test_hung_worker_times_out(spec):
    with WorkerPool(spec, EpisodeSettings(1000, "fast"), n_workers=1, n_envs=1, timeout=4) as pool:
        time.sleep(0.5)
        os.kill(pool.processes[0].pid, signal.SIGSTOP)
        try:
            with pytest.raises(WorkerError, match="no episode finished for 4 s"):
                pool.evaluate(episodes(1))
        finally:
            os.kill(pool.processes[0].pid, signal.SIGCONT)


def run_ctrl(logdir, *flags):
    parser = traincontroller.build_parser()
    return traincontroller.main(
        parser.parse_args(
            [
                "--logdir",
                str(logdir),
                "--pop-size",
                "4",
                "--n-samples",
                "1",
                "--max-steps",
                "30",
                "--eval-every",
                "1",
                "--eval-episodes",
                "2",
                "--max-workers",
                "2",
                "--envs-per-worker",
                "2",
                *flags,
            ]
        )
    )


def test_controller_training_resumes_the_search_exactly(pipeline_logdir, tmp_path):
    a = copy_logdir(pipeline_logdir, tmp_path / "a")
    straight = run_ctrl(a, "--generations", "3")
    assert straight["generation"] == 3 and len(straight["history"]) == 3
    best = load_checkpoint(a / "ctrl" / "best.tar")
    assert best["score"] == pytest.approx(straight["best_score"]) and len(best["returns"]) == 2
    b = copy_logdir(pipeline_logdir, tmp_path / "b")
    run_ctrl(b, "--generations", "2")
    resumed = run_ctrl(b, "--generations", "3")
    assert resumed["history"] == straight["history"]  # same seed, and resume continues the CMA-ES state
    fresh = run_ctrl(b, "--generations", "1", "--noreload")
    assert fresh["history"] == straight["history"][:1]
    assert (a / "ctrl" / "learning_curve.png").stat().st_size > 1000
    assert (a / "ctrl" / "args.json").is_file() and list((a / "ctrl").glob("events.out.tfevents.*"))


def test_noreload_keeps_the_previous_best_when_the_new_search_fails(pipeline_logdir, tmp_path, monkeypatch):
    """--noreload starts a new search, but a crash before its first best must not lose the agent it
    replaces: that best.tar is kept, byte for byte, under a name that says so."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "n")
    run_ctrl(logdir, "--generations", "1")
    old = (logdir / "ctrl" / "best.tar").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("the first generation crashed")

    with monkeypatch.context() as patch:
        patch.setattr(traincontroller, "evaluate", crash)
        with pytest.raises(RuntimeError, match="first generation crashed"):
            run_ctrl(logdir, "--generations", "1", "--noreload")
    kept = logdir / "ctrl" / "best.before-noreload.tar"
    assert kept.read_bytes() == old and not (logdir / "ctrl" / "best.tar").exists()
    run_ctrl(logdir, "--generations", "1", "--noreload")  # the new search's own best, the old one still kept
    assert (logdir / "ctrl" / "best.tar").is_file() and kept.read_bytes() == old


def test_a_new_best_must_also_win_on_the_confirmation_tracks(pipeline_logdir, tmp_path):
    """--confirm-episodes 3: a controller that beats the best on the 2 evaluation tracks is driven on 3
    more, and its mean over all 5 is what it is kept (or refused) by."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "c")
    summary = run_ctrl(logdir, "--generations", "3", "--confirm-episodes", "3")
    best = load_checkpoint(logdir / "ctrl" / "best.tar")
    assert len(best["returns"]) == 5 and best["score"] == pytest.approx(np.mean(best["returns"]))
    assert best["score"] == pytest.approx(summary["best_score"])
    confirmed = [h for h in summary["history"] if "eval_confirmed" in h]
    assert confirmed and confirmed[0]["generation"] == 1  # the first evaluation always beats -inf
    # Only a confirmed score ever becomes the best, and each one that beats the best does.
    assert summary["best_score"] == pytest.approx(max(h["eval_confirmed"] for h in confirmed))
    # The first two evaluation tracks are the same as without confirmation: the first evaluation agrees.
    plain = run_ctrl(copy_logdir(pipeline_logdir, tmp_path / "p"), "--generations", "1")
    assert plain["history"][0]["eval_mean"] == summary["history"][0]["eval_mean"]


def test_several_searches_keep_the_best_of_all(pipeline_logdir, tmp_path):
    """--searches 2: search 0 is the --seed 0 search, search 1 the --seed 1 search (fitness equal, generation
    by generation), both judged on seed 0's evaluation tracks; best.tar is the best of both; a run stopped
    after the first search resumes into the second."""
    both = run_ctrl(copy_logdir(pipeline_logdir, tmp_path / "both"), "--generations", "2", "--searches", "2")
    split = copy_logdir(pipeline_logdir, tmp_path / "split")
    seed0 = run_ctrl(split, "--generations", "2")  # one search; the same logdir continues below
    seed1 = run_ctrl(copy_logdir(pipeline_logdir, tmp_path / "s1"), "--generations", "2", "--seed", "1")
    history = both["history"]
    assert [(h["search"], h["generation"]) for h in history] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    fitness = [(h["best"], h["mean"], h["worst"]) for h in history]
    assert fitness[:2] == [(h["best"], h["mean"], h["worst"]) for h in seed0["history"]]
    assert fitness[2:] == [(h["best"], h["mean"], h["worst"]) for h in seed1["history"]]
    assert history[:2] == seed0["history"]  # the same evaluation tracks too
    evaluated = [max(h["eval_mean"], h["eval_best"]) for h in history]
    assert both["best_score"] == pytest.approx(max(evaluated))
    assert traincontroller.generation_steps(history) == [1, 2, 3, 4]
    # The checkpoint names the search that found best.tar, and keeps the final CMA-ES state of the search
    # that held the best when it ended (search 0 here: an export ships it if that is still the best's).
    state = torch.load(tmp_path / "both" / "ctrl" / "checkpoint.tar", weights_only=True)
    assert state["best_search"] == history[int(np.argmax(evaluated))]["search"]
    assert state["winner"]["search"] == 0 and state["winner"]["generation"] == 2
    assert run_ctrl(split, "--generations", "2", "--searches", "2")["history"] == history  # one, then more
    assert (split / "ctrl" / "learning_curve.png").stat().st_size > 1000


def test_a_search_starts_from_a_given_controller_evaluated_first(pipeline_logdir, tmp_path):
    """--start-from: generation 0 evaluates the given controller on the evaluation tracks (the same tracks
    its own run measured it on, so the same score), it is the best until beaten, and CMA-ES's mean starts
    there; a rerun resumes without evaluating it again, and a mismatched or misshapen start is one line."""
    source = copy_logdir(pipeline_logdir, tmp_path / "source")
    found = run_ctrl(source, "--generations", "2")
    start_file = source / "ctrl" / "best.tar"
    start, _, checkpoint = load_controller_file(start_file)
    logdir = copy_logdir(pipeline_logdir, tmp_path / "from")
    flags = ["--start-from", str(start_file), "--sigma", "1e-6"]
    summary = run_ctrl(logdir, "--generations", "1", *flags)
    first, second = summary["history"]
    assert (first["generation"], first["search"]) == (0, 0) and "best" not in first
    assert first["eval_mean"] == pytest.approx(found["best_score"]) == pytest.approx(checkpoint["score"])
    best = load_checkpoint(logdir / "ctrl" / "best.tar")
    assert best["generation"] in (0, 1) and best["score"] >= first["eval_mean"]
    if best["generation"] == 0:
        assert best["source"] == "start_from"
    # A step size of 1e-6 keeps every candidate, and the mean after one generation, on the start.
    state = torch.load(logdir / "ctrl" / "checkpoint.tar", weights_only=True)
    np.testing.assert_allclose(traincontroller.resume_search(state["cma"]).mean, start, atol=1e-4)
    assert second["eval_mean"] == pytest.approx(first["eval_mean"])
    shutil.copy(source / "ctrl" / "best.tar", tmp_path / "start.tar")
    start_file.unlink()  # a resumed search keeps its start itself, whatever became of the file
    resumed = run_ctrl(logdir, "--generations", "2", *flags)
    assert [h["generation"] for h in resumed["history"]] == [0, 1, 2]
    state = torch.load(logdir / "ctrl" / "checkpoint.tar", weights_only=True)
    np.testing.assert_array_equal(state["start"].numpy(), start)
    shutil.copy(tmp_path / "start.tar", start_file)
    # Its export continues without the flag; with it, one line (the flag starts new searches only).
    export = tmp_path / "export"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(logdir), "--out", str(export)])
    )
    with pytest.raises(
        UserError, match="--start-from starts a new search, and .*search.tar holds an exported one"
    ):
        run_ctrl(export, "--generations", "3", *flags)
    assert run_ctrl(export, "--generations", "3")["generation"] == 3
    with pytest.raises(UserError, match="started with --start-from .*best.tar; rerun with --start-from"):
        run_ctrl(logdir, "--generations", "3")
    with pytest.raises(UserError, match="started with no --start-from; rerun with no --start-from"):
        run_ctrl(source, "--generations", "3", *flags)
    small = tmp_path / "small.tar"
    save_controller(small, np.zeros(6), ControllerConfig(latent=1, hidden=1, action=3, bias=False))
    with pytest.raises(UserError, match=r"small.tar: a controller of 6 parameters, this V and M need 867"):
        run_ctrl(logdir, "--noreload", "--start-from", str(small))
    with pytest.raises(UserError, match="nothing.tar: no such controller checkpoint"):
        run_ctrl(logdir, "--noreload", "--start-from", str(tmp_path / "nothing.tar"))
    network = tmp_path / "network.tar"  # a C with a hidden layer is fitted, not searched
    config = ControllerConfig(latent=32, hidden=256, action=3, units=4)
    save_controller(network, np.zeros(config.vector_size), config)
    with pytest.raises(
        UserError, match=r"network.tar: a C with a hidden layer of 4 units \(1,171 parameters"
    ):
        run_ctrl(logdir, "--noreload", "--start-from", str(network))


def test_test_controller_measures_and_records(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    run_ctrl(logdir, "--generations", "1")
    gif = tmp_path / "drive.gif"
    parser = test_controller.build_parser()
    stats = test_controller.main(
        parser.parse_args(
            [
                "--logdir",
                str(logdir),
                "--episodes",
                "4",
                "--max-steps",
                "30",
                "--max-workers",
                "2",
                "--envs-per-worker",
                "2",
                "--record",
                str(gif),
            ]
        )
    )
    saved = json.loads((logdir / "ctrl" / "test_returns.json").read_text())
    assert saved["episodes"] == 4 and len(saved["returns"]) == 4
    assert saved["mean"] == pytest.approx(np.mean(saved["returns"])) == pytest.approx(stats["mean"])
    assert saved["std"] == pytest.approx(np.std(saved["returns"]))
    assert (logdir / "ctrl" / "test_histogram.png").stat().st_size > 1000
    import imageio.v3 as iio

    assert iio.imread(gif).shape[0] == 15  # 30 steps, every other frame


@pytest.mark.parametrize(
    "missing,stage", [("vae", "trainvae.py"), ("mdrnn", "trainmdrnn.py"), ("ctrl", "traincontroller.py")]
)
def test_missing_stage_is_named(pipeline_logdir, tmp_path, missing, stage, capsys, monkeypatch):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    shutil.rmtree(logdir / missing, ignore_errors=True)
    script = "test_controller.py" if missing == "ctrl" else "traincontroller.py"
    code, stderr = run_script(monkeypatch, capsys, script, "--logdir", logdir)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and stage in lines[0], stderr


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed (CI installs it)")
def test_display_under_xvfb(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    run_ctrl(logdir, "--generations", "1")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SDL_VIDEODRIVER")}
    res = subprocess.run(
        [
            "xvfb-run",
            "-a",
            sys.executable,
            "test_controller.py",
            "--logdir",
            str(logdir),
            "--episodes",
            "1",
            "--max-steps",
            "20",
            "--display",
            "--max-workers",
            "1",
            "--record",
            str(tmp_path / "shown.gif"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "shown.gif").stat().st_size > 0


def test_a_killed_worker_ends_the_run_with_one_line_and_how_to_resume(pipeline_logdir, tmp_path):
    """SIGKILL of an episode worker mid-generation: the script ends at once, its last stderr line names
    the worker and how to resume, and no traceback (chained or not) is printed."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    cmd = [
        sys.executable,
        "traincontroller.py",
        "--logdir",
        str(logdir),
        "--pop-size",
        "8",
        "--n-samples",
        "2",
    ]
    cmd += ["--max-workers", "2", "--envs-per-worker", "2", "--generations", "50"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = []
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            workers = pool_workers(proc.pid)
        time.sleep(3)  # well into the first generation
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    last = stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert "died with exit code -9" in last and "rerun the same command to resume" in last


def test_random_policy_baseline_on_the_test_episodes(pipeline_logdir, tmp_path):
    """--random-policy: the env's random policy on the test's own episodes, reproducible, no C needed."""
    argv = ["--logdir", str(pipeline_logdir), "--random-policy", "--episodes", "2", "--max-steps", "20"]
    first = test_controller.main(
        test_controller.build_parser().parse_args([*argv, "--out", str(tmp_path / "a")])
    )
    again = test_controller.main(
        test_controller.build_parser().parse_args([*argv, "--out", str(tmp_path / "b")])
    )
    saved = json.loads((tmp_path / "a" / "random_returns.json").read_text())
    assert saved["policy"] == "brown" and saved["steps"] == [20, 20] and saved["returns"] == again["returns"]
    assert first["returns"][0] != first["returns"][1]  # two tracks, two different episodes
    assert (tmp_path / "a" / "random_histogram.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "env,flags,target",
    [
        ("carracing", [], 950.0),
        ("carracing-repeat2", [], 950.0),
        ("doom-takecover", [], float("inf")),  # survival frames: a Doom search runs every generation
        ("doom-takecover", ["--target-return", "1500"], 1500.0),
        ("carracing", ["--target-return", "900"], 900.0),
    ],
)
def test_the_target_return_is_the_games_unless_given(env, flags, target):
    args = traincontroller.build_parser().parse_args(flags)
    assert traincontroller.target_return(args, get_env_spec(env)) == target
