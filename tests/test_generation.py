"""The generation script run for real on CarRacing with tiny settings."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data import generation_script
from data.rollouts import ARRAY_KEYS, load_rollout, rollout_name
from envs import make_env
from envs.carracing import preprocess
from tests.conftest import alive, descendants, pool_workers, run_script
from utils.cli import UserError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "data" / "generation_script.py"


def generate(rootdir, *flags):
    parser = generation_script.build_parser()
    return generation_script.main(parser.parse_args(["--rootdir", str(rootdir), *flags]))


@pytest.fixture(scope="module")
def two_threads(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen2")
    generate(root, "--rollouts", "3", "--threads", "2", "--max-steps", "40", "--seed", "7")
    return root


def test_files_keys_dtypes_shapes(two_threads):
    files = sorted(two_threads.glob("*.npz"))
    assert [f.name for f in files] == [rollout_name(i) for i in range(3)]
    for i, f in enumerate(files):
        with np.load(f) as npz:
            assert set(ARRAY_KEYS) <= set(npz.files)
        r = load_rollout(f)
        assert len(r) == 40
        assert r.observations.shape == (40, 64, 64, 3) and r.observations.dtype == np.uint8
        assert r.actions.shape == (40, 3) and r.actions.dtype == np.float32
        assert r.rewards.shape == (40,) and r.rewards.dtype == np.float32
        assert r.terminals.shape == (40,) and r.terminals.dtype == np.bool_
        assert r.final_observation.shape == (64, 64, 3)
        # The time limit is a truncation, never a death.
        assert r.truncated and not r.terminals.any()
        assert (r.index, r.seed, r.policy, r.preprocessing) == (i, 7, "brown", "crop84")
        assert (r.actions >= [-1, 0, 0]).all() and (r.actions <= 1).all()
    # Different rollouts drive different tracks.
    assert load_rollout(files[0]).track_seed != load_rollout(files[1]).track_seed


def test_alignment_by_replay(two_threads):
    """Replaying the stored actions on the stored track reproduces every stored frame:
    observations[t] is the frame action t was taken on, final_observation the frame after the last."""
    r = load_rollout(two_threads / rollout_name(1))
    env = make_env()
    obs, _ = env.reset(seed=r.track_seed)
    frames, rewards = [preprocess(obs)], []
    for a in r.actions:
        obs, reward, *_ = env.step(a)
        frames.append(preprocess(obs))
        rewards.append(reward)
    env.close()
    np.testing.assert_array_equal(np.stack(frames[:-1]), r.observations)
    np.testing.assert_array_equal(frames[-1], r.final_observation)
    np.testing.assert_array_equal(np.asarray(rewards, np.float32), r.rewards)
    np.testing.assert_array_equal(r.next_observations[-1], r.final_observation)


def test_same_seed_same_arrays_whatever_threads(two_threads, tmp_path):
    generate(tmp_path, "--rollouts", "3", "--threads", "1", "--max-steps", "40", "--seed", "7")
    for i in range(3):
        a, b = load_rollout(two_threads / rollout_name(i)), load_rollout(tmp_path / rollout_name(i))
        for key in ARRAY_KEYS:
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_resume_skips_finished_rollouts(two_threads, tmp_path, capsys):
    for i in (0, 2):
        (tmp_path / rollout_name(i)).write_bytes((two_threads / rollout_name(i)).read_bytes())
    written = generate(tmp_path, "--rollouts", "3", "--threads", "1", "--max-steps", "40", "--seed", "7")
    assert written == [1]
    assert "2 of 3 rollouts already there" in capsys.readouterr().out
    np.testing.assert_array_equal(
        load_rollout(tmp_path / rollout_name(1)).observations,
        load_rollout(two_threads / rollout_name(1)).observations,
    )
    assert generate(tmp_path, "--rollouts", "3", "--threads", "1", "--max-steps", "40", "--seed", "7") == []


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--seed", "8"], "made with --seed 7, not 8"),
        (["--max-steps", "41"], "made with --max-steps 40, not 41"),
        (["--policy", "white"], "made with --policy brown, not white"),
        (["--preprocessing", "full"], "made with --preprocessing crop84, not full"),
        (["--renderer", "stock"], "made with --renderer fast, not stock"),
    ],
)
def test_other_settings_into_the_same_rootdir_are_refused(two_threads, tmp_path, flags, message):
    """Rerunning into a --rootdir with other settings would mix two kinds of rollouts, or keep the old ones
    as if they were the new: one line, nothing written. More rollouts with the same settings are added."""
    rootdir = tmp_path / "rollouts"
    shutil.copytree(two_threads, rootdir)
    same = {"--seed": "7", "--max-steps": "40"}
    argv = [*flags]
    for flag, value in same.items():
        if flag not in flags:
            argv += [flag, value]
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--rootdir", str(rootdir), "--rollouts", "4", "--threads", "1", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in rootdir.glob("*.npz")) == [rollout_name(i) for i in range(3)]
    assert generate(rootdir, "--rollouts", "4", "--threads", "1", "--max-steps", "40", "--seed", "7") == [3]


def test_a_directory_made_before_the_record_is_checked_against_its_files(two_threads, tmp_path):
    rootdir = tmp_path / "rollouts"
    rootdir.mkdir()
    (rootdir / rollout_name(0)).write_bytes((two_threads / rollout_name(0)).read_bytes())
    with pytest.raises(UserError, match="made with --seed 7, not 0"):
        generate(rootdir, "--rollouts", "2", "--threads", "1", "--max-steps", "40")
    (rootdir / "generation.json").write_text("{not json")
    with pytest.raises(UserError, match="generation.json is damaged"):
        generate(rootdir, "--rollouts", "2", "--threads", "1", "--max-steps", "40", "--seed", "7")


def test_white_policy_and_full_frames(tmp_path):
    generate(
        tmp_path,
        "--rollouts",
        "1",
        "--threads",
        "1",
        "--max-steps",
        "20",
        "--policy",
        "white",
        "--preprocessing",
        "full",
    )
    r = load_rollout(tmp_path / rollout_name(0))
    assert (r.policy, r.preprocessing, len(r)) == ("white", "full", 20)
    # The full frame keeps the dashboard: the bottom rows are the black bar, unlike the playfield.
    assert r.observations[-1, -2:].mean() < 30 < r.observations[-1, :40].mean()


def test_killed_run_leaves_no_partial_file_and_resumes(tmp_path):
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--rootdir",
        str(tmp_path),
        "--rollouts",
        "4",
        "--threads",
        "2",
        "--max-steps",
        "150",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob("rollout_*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the script and its workers, mid-write of the next files
    proc.wait()
    finished = sorted(tmp_path.glob("rollout_*.npz"))
    assert 1 <= len(finished) < 4
    for f in finished:
        assert len(load_rollout(f)) == 150
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in (".lock", "generation.json")) == [
        rollout_name(i) for i in range(4)
    ]
    for i in range(4):
        assert len(load_rollout(tmp_path / rollout_name(i))) == 150


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--rootdir", str(tmp_path), "--rollouts", "6", "--threads", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(pool_workers(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(pool_workers(proc.pid)) == 2
    time.sleep(1.0)  # the workers are driving their first rollouts
    workers = descendants(proc.pid)  # the workers, their fork server, multiprocessing's tracker
    proc.kill()  # SIGKILL: the parent cannot stop them itself
    proc.wait()
    deadline = time.time() + 10
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--rollouts", "0"], "--rollouts: expected a positive integer"),
        (["--threads", "-2"], "--threads/--workers: expected a positive integer"),
        (["--policy", "pink"], "--policy pink: carracing has brown, white or controller"),
        (["--max-steps", "ten"], "--max-steps: expected a positive integer"),
    ],
)
def test_bad_flags_one_clear_line(tmp_path, flags, message, capsys, monkeypatch):
    code, stderr = run_script(monkeypatch, capsys, "data/generation_script.py", "--rootdir", tmp_path, *flags)
    assert code == 2
    assert message in stderr and "Traceback" not in stderr


def test_unwritable_rootdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--rootdir", str(blocker / "sub"), "--rollouts", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--rootdir" in lines[0] and "not writable" in lines[0]


def test_fast_renderer_writes_the_stock_files(two_threads, tmp_path):
    """The default renderer (FastCarRacing) is pixel-identical: the stock env gives the same rollouts."""
    generate(
        tmp_path,
        "--rollouts",
        "1",
        "--threads",
        "1",
        "--max-steps",
        "40",
        "--seed",
        "7",
        "--renderer",
        "stock",
    )
    a, b = load_rollout(two_threads / rollout_name(0)), load_rollout(tmp_path / rollout_name(0))
    for key in ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
