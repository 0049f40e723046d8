"""Faults a shared logdir, a cluster or a full disk bring: each ends in one clear line and loses nothing.

Crafted and old checkpoints, two runs on one stage, SIGTERM and Ctrl-C, a full or read-only disk, damaged
rollouts, a checkpoint in another stage's place, out-of-range flags. (Ray node loss: test_ray_cluster.py.)
"""

from __future__ import annotations

import errno
import importlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import traincontroller
from data.rollouts import list_rollouts, load_rollout, save_rollout
from experiment.logdir import load_agent_spec, load_vae
from tests.conftest import alive, copy_logdir, descendants, pool_workers, run_script
from utils.checkpoint import atomic_write, file_digest, load_checkpoint, save_checkpoint
from utils.cli import UserError
from utils.locking import exclusive

ROOT = Path(__file__).resolve().parent.parent


def _as_a_foreground_job() -> None:
    """Ctrl-C reaches a command run from a terminal, even when this suite runs as a background job (which
    starts with SIGINT ignored, and a stage leaves an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def script(name: str, *argv, **kw) -> subprocess.Popen:
    """Start a stage script in its own process group (as a shell would: Ctrl-C reaches the group)."""
    return subprocess.Popen(
        [sys.executable, name, *map(str, argv)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_a_foreground_job,
        **kw,
    )


def wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]  # tqdm bars share stderr: the script's own word comes last


# --- files that travel ---------------------------------------------------------------------------------


class Marker:
    """Unpickling this creates a file: what a crafted checkpoint could do (and much worse)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def agent_logdir(pipeline_logdir, tmp_path_factory) -> Path:
    """The pipeline fixture with a controller (one generation): a logdir test_controller.py can drive."""
    logdir = copy_logdir(pipeline_logdir, tmp_path_factory.mktemp("agent") / "exp")
    argv = ["--logdir", str(logdir), "--pop-size", "2", "--n-samples", "1", "--max-steps", "10"]
    argv += ["--generations", "1", "--eval-episodes", "1", "--max-workers", "1"]
    traincontroller.main(traincontroller.build_parser().parse_args(argv))
    return logdir


@pytest.mark.parametrize("stage", ["vae", "mdrnn", "ctrl"])
def test_a_crafted_checkpoint_is_refused_without_running_it(agent_logdir, tmp_path, stage):
    logdir = copy_logdir(agent_logdir, tmp_path / "exp")
    marker = tmp_path / "pwned"
    path = logdir / stage / "best.tar"
    torch.save({"stage": stage, "model": {"w": torch.zeros(1)}, "payload": Marker(marker)}, path)
    res = subprocess.run(
        [sys.executable, "test_controller.py", "--logdir", str(logdir), "--episodes", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and not marker.exists(), res.stderr
    assert f"refused to load {path}" in last_line(res.stderr) and "Traceback" not in res.stderr


def test_resume_never_unpickles_a_crafted_training_checkpoint(pipeline_logdir, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    marker = tmp_path / "pwned"
    torch.save({"stage": "mdrnn", "payload": Marker(marker)}, logdir / "mdrnn" / "checkpoint.tar")
    res = subprocess.run(
        [sys.executable, "trainmdrnn.py", "--logdir", str(logdir), "--epochs", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and not marker.exists() and "refused to load" in last_line(res.stderr)


def test_an_exported_search_is_never_unpickled(pipeline_logdir, tmp_path):
    """ctrl/search.tar travels with exported agents: pickled bytes put in it are not read."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    marker = tmp_path / "pwned"
    save_checkpoint(
        {
            "stage": "ctrl",
            "cma": pickle.dumps(Marker(marker)),
            "generation": 3,
            "best_score": 0.0,
            "history": [],
        },
        logdir / "ctrl" / "search.tar",
    )
    (logdir / "ctrl" / "checkpoint.tar").unlink(missing_ok=True)
    args = traincontroller.build_parser().parse_args(["--logdir", str(logdir), "--generations", "4"])
    with pytest.raises(UserError, match="search.tar holds no search state"):
        traincontroller.main(args)
    assert not marker.exists()


def test_old_checkpoints_are_refused_then_converted_by_their_owner(pipeline_logdir, tmp_path):
    """Checkpoints of earlier versions held Path objects and NumPy's random state: refused with the way
    out, which converts them with the same weights and M's record of V's digest following."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    weights = {stage: load_checkpoint(logdir / stage / "best.tar")["model"] for stage in ("vae", "mdrnn")}
    for stage in ("vae", "mdrnn"):
        ckpt = load_checkpoint(logdir / stage / "best.tar")
        old = {k: v for k, v in ckpt.items() if k != "stage"}
        old["args"] = {**ckpt["args"], "logdir": logdir}  # a PosixPath, as argparse gave it
        old["rng"] = {**ckpt["rng"], "numpy": np.random.get_state()}
        if stage == "mdrnn":
            old["vae_id"] = file_digest(logdir / "vae" / "best.tar")
        torch.save(old, logdir / stage / "best.tar")
    with pytest.raises(UserError, match="upgrade_checkpoint.py"):
        load_vae(logdir)
    res = subprocess.run(
        [sys.executable, "scripts/upgrade_checkpoint.py", "--logdir", str(logdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "2 file(s) converted" in res.stdout, res.stderr
    load_agent_spec(logdir)  # loads, and M's vae_id matches the rewritten V
    for stage, before in weights.items():
        after = load_checkpoint(logdir / stage / "best.tar")
        assert after["stage"] == stage and isinstance(after["args"]["logdir"], str)
        assert all(torch.equal(before[k], after["model"][k]) for k in before)


def test_a_checkpoint_in_another_stages_place_is_named(pipeline_logdir, vae_rollouts, tmp_path):
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    shutil.copy(logdir / "mdrnn" / "best.tar", logdir / "vae" / "best.tar")
    with pytest.raises(UserError, match=r"vae/best\.tar is a MDN-RNN checkpoint, not a VAE one"):
        load_vae(logdir)
    shutil.copy(logdir / "mdrnn" / "best.tar", logdir / "vae" / "checkpoint.tar")
    res = subprocess.run(
        [
            sys.executable,
            "trainvae.py",
            "--logdir",
            str(logdir),
            "--dataset",
            str(vae_rollouts),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--epochs",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "vae/checkpoint.tar is a MDN-RNN checkpoint, not a VAE one" in last_line(res.stderr)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("nan_actions", "'actions' holds NaN or infinite values"),
        ("inf_rewards", "'rewards' holds NaN or infinite values"),
        ("float64_actions", "'actions' is float64"),
        ("wrong_action_size", r"'actions' is float32\[15, 2\], expected float32\[15, 3\]"),
        ("random_bytes", "corrupt or truncated rollout file"),
        ("truncated", "corrupt or truncated rollout file"),
    ],
)
def test_damaged_rollouts_are_named_in_one_line(vae_rollouts, tmp_path, damage, message):
    path = tmp_path / "rollout_000000.npz"
    shutil.copy(list_rollouts(vae_rollouts)[0], path)
    r = load_rollout(path)
    if damage == "nan_actions":
        r.actions[3, 1] = np.nan
    elif damage == "inf_rewards":
        r.rewards[-1] = np.inf
    elif damage == "float64_actions":
        r.actions = r.actions.astype(np.float64)
    elif damage == "wrong_action_size":
        r.actions = r.actions[:, :2].copy()
    if damage in ("random_bytes", "truncated"):
        data = path.read_bytes()
        path.write_bytes(os.urandom(4096) if damage == "random_bytes" else data[: len(data) // 3])
    else:
        save_rollout(path, r)
    with pytest.raises(UserError, match=message) as err:
        load_rollout(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["trainvae.py", "--test-fraction", "1.5"], "expected a number in [0, 1)"),
        (["trainmdrnn.py", "--max-batches", "0"], "expected a positive integer"),
        (["traincontroller.py", "--pop-size", "0"], "expected a positive integer"),
        (["traincontroller.py", "--sigma", "-0.1"], "expected a positive number"),
        (["traincontroller.py", "--temperature", "0"], "expected a positive number"),
        (["trainmdrnn.py", "--temperature", "0"], "expected a positive number"),  # one check everywhere
        (["scripts/dream.py", "--temperature", "-1"], "expected a positive number"),
        (["test_controller.py", "--episodes", "0"], "expected a positive integer"),
        (["test_controller.py", "--worker-timeout", "-1"], "expected a positive number"),
        (["data/generation_script.py", "--rollouts", "-3"], "expected a positive integer"),
        # checked before the dream or the episodes are computed, not after
        (["scripts/dream.py", "--out", "x.png"], "expected a .gif or .mp4 file name, got 'x.png'"),
        (["test_controller.py", "--record", "drive.png"], "expected a .gif or .mp4 file name"),
        (["scripts/export_pretrained.py", "--logdir", "x"], "the following arguments are required: --out"),
        (["scripts/probe_socnav.py", "--logdir", "x", "--episodes", "2"], "at least 3, one for each fold"),
    ],
)
def test_out_of_range_flags_are_one_error_line(argv, message, capsys, monkeypatch):
    """A flag is refused while it is read, before any work."""
    code, stderr = run_script(monkeypatch, capsys, *argv)
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr


WORKER_FLAGS = {  # each stage's own spelling of its worker count, kept for its users
    "data/generation_script.py": "threads",
    "trainvae.py": "workers",
    "traincontroller.py": "max_workers",
    "test_controller.py": "max_workers",
    "scripts/demo.py": "threads",
    "scripts/tau_sweep.py": "threads",
}
REQUIRED = {"scripts/tau_sweep.py": ["--logdir", "a", "--out", "b"]}


def stage_parser(script: str):
    path = ROOT / script
    module = importlib.import_module(str(path.relative_to(ROOT).with_suffix("")).replace("/", "."))
    return module.build_parser()


def test_one_concept_is_one_flag_in_every_script():
    """A worker count is --workers in every stage (old spellings kept), and an episode's length cap is
    --max-steps, each with one check and one help wherever it appears."""
    helps = set()
    for script, dest in WORKER_FLAGS.items():
        parser, required = stage_parser(script), REQUIRED.get(script, [])
        assert getattr(parser.parse_args([*required, "--workers", "3"]), dest) == 3, script
        assert getattr(parser.parse_args([*required, f"--{dest.replace('_', '-')}", "5"]), dest) == 5, script
        with pytest.raises(SystemExit):
            parser.parse_args([*required, "--workers", "0"])
        action = next(a for a in parser._actions if "--workers" in a.option_strings)
        assert action.default == (os.cpu_count() or 1), script
        helps.add(action.help.split(" run at once")[1])
    assert len(helps) == 1
    caps = {
        next(a for a in stage_parser(script)._actions if "--max-steps" in a.option_strings).help
        for script in ("data/generation_script.py", "traincontroller.py", "test_controller.py")
    }
    assert len(caps) == 1


# --- one run per stage ---------------------------------------------------------------------------------


def tiny_vae_argv(rollouts: Path, tmp_path: Path) -> list:
    """Flags of a VAE run on the tiny rollouts whose epochs take a fraction of a second."""
    logdir, cache = tmp_path / "exp", tmp_path / "cache"
    return [
        "--logdir",
        logdir,
        "--dataset",
        rollouts,
        "--cache-dir",
        cache,
        "--batch-size",
        8,
        "--max-batches",
        2,
        "--device",
        "cpu",
        "--nosamples",
        "--latent",
        4,
    ]


def test_a_second_run_on_a_stage_stops_at_once_naming_the_first(vae_rollouts, tmp_path):
    logdir = tmp_path / "exp"
    argv = [*tiny_vae_argv(vae_rollouts, tmp_path), "--epochs", 10_000]
    first = script("trainvae.py", *argv)
    try:
        wait_for(
            lambda: (logdir / "vae" / ".lock").is_file() and "pid" in (logdir / "vae" / ".lock").read_text()
        )
        start = time.monotonic()
        second = subprocess.run(
            [sys.executable, "trainvae.py", *map(str, argv)], cwd=ROOT, capture_output=True, text=True
        )
        assert time.monotonic() - start < 30 and second.returncode == 2
        line = last_line(second.stderr)
        assert f"the VAE stage of {logdir} is in use by pid {first.pid}" in line and "trainvae.py" in line
        assert first.poll() is None  # the first run goes on
    finally:
        os.kill(first.pid, signal.SIGKILL)  # no chance to clean up: the lock must die with it
        first.communicate()
    with exclusive(logdir / "vae", "the VAE stage"):  # free again at once
        pass


def test_lock_is_per_directory_and_per_process(tmp_path):
    with exclusive(tmp_path / "a", "a"), exclusive(tmp_path / "b", "b"):
        code = "from utils.locking import exclusive; exclusive(__import__('sys').argv[1], 'a').__enter__()"
        res = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "a")], cwd=ROOT, capture_output=True, text=True
        )
        assert res.returncode == 1 and "a is in use by pid" in res.stderr


# --- signals -------------------------------------------------------------------------------------------


def test_sigterm_stops_vae_training_with_its_last_epoch_saved(vae_rollouts, tmp_path):
    logdir = tmp_path / "exp"
    argv = tiny_vae_argv(vae_rollouts, tmp_path)
    proc = script("trainvae.py", *argv, "--epochs", 10_000)
    checkpoint = logdir / "vae" / "checkpoint.tar"
    wait_for(checkpoint.is_file)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - start < 15 and proc.returncode == 143
    assert "stopped by SIGTERM" in last_line(stderr) and "rerun the same command to resume" in last_line(
        stderr
    )
    done = load_checkpoint(checkpoint)["epoch"]
    assert done >= 1 and not list((logdir / "vae").glob(".*.tmp"))
    res = subprocess.run(
        [sys.executable, "trainvae.py", *map(str, argv), "--epochs", str(done + 1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and load_checkpoint(checkpoint)["epoch"] == done + 1, res.stderr


def start_endless_search(pipeline_logdir: Path, tmp_path: Path, *flags) -> tuple[Path, subprocess.Popen]:
    """traincontroller.py with 2 workers and 1000 generations on a copy of the tiny pipeline, to be
    stopped by the test; ``flags`` set the rest. Returns the copy and the process."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    argv = ["--logdir", logdir, "--generations", 1000, "--max-workers", 2, *flags]
    return logdir, script("traincontroller.py", *argv)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_controller_stage_stops_its_workers_and_keeps_its_search(pipeline_logdir, tmp_path, how):
    flags = ("--pop-size", 6, "--n-samples", 2, "--max-steps", 100, "--envs-per-worker", 2)
    logdir, proc = start_endless_search(pipeline_logdir, tmp_path, *flags, "--eval-every", 1000)
    wait_for(lambda: (logdir / "ctrl" / "checkpoint.tar").is_file())
    wait_for(lambda: len(pool_workers(proc.pid)) == 2)
    workers = descendants(proc.pid)  # the workers, their fork server, multiprocessing's tracker
    if how == "SIGTERM":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (143 if how == "SIGTERM" else 130), stderr[-2000:]
    assert f"stopped by {how}" in last_line(stderr) and "Traceback" not in stderr
    wait_for(lambda: not any(alive(w) for w in workers), timeout=10)  # no orphans
    assert load_checkpoint(logdir / "ctrl" / "checkpoint.tar")["generation"] >= 1


# traincontroller.py with cma's tell wrapped in a bare except that swallows a Ctrl-C arriving in it, as
# cma's own code can (several bare excepts on paths run every generation).
SWALLOWING_TELL = """
import os, runpy, signal, sys, time
import cma
tell = cma.CMAEvolutionStrategy.tell
def swallowing_tell(self, *args, **kwargs):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    except:
        pass
    return tell(self, *args, **kwargs)
cma.CMAEvolutionStrategy.tell = swallowing_tell
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_stop_swallowed_by_a_library_still_stops_the_run(pipeline_logdir, tmp_path):
    """The Ctrl-C lands inside a library that swallows it: the run still stops with its usual line and
    status, instead of running on with every later signal ignored (as a search once did for over 60 s)."""
    logdir = copy_logdir(pipeline_logdir, tmp_path / "exp")
    argv = ["--logdir", logdir, "--generations", 1000, "--max-workers", 2, "--pop-size", 4, "--n-samples", 1]
    argv += ["--max-steps", 30, "--envs-per-worker", 2, "--eval-every", 1000]
    proc = script("-c", SWALLOWING_TELL, "traincontroller.py", *argv)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "stopped by Ctrl-C" in last_line(stderr), stderr[-2000:]
    assert "Traceback" not in stderr
    assert load_checkpoint(logdir / "ctrl" / "checkpoint.tar")["generation"] == 1  # the one it was in


def test_a_second_stop_signal_does_not_cut_the_stop_short(pipeline_logdir, tmp_path):
    """Ctrl-C pressed twice: the second arrives while the pool is stopping its workers. It must not
    interrupt that, or the process would wait at exit for daemon workers that ignore SIGTERM, until
    they have driven every episode still queued (here a generation of 64 full episodes, ~40 s)."""
    flags = ("--pop-size", 16, "--n-samples", 4, "--envs-per-worker", 1)
    _, proc = start_endless_search(pipeline_logdir, tmp_path, *flags)
    wait_for(lambda: len(pool_workers(proc.pid)) == 2)
    time.sleep(5.0)  # the workers are driving the first generation's episodes, 62 more queued
    workers = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.5)  # within the pool's 2 s of waiting for its workers to stop
    os.kill(proc.pid, signal.SIGTERM)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - start < 20, "the second signal left the workers driving the whole queue"
    assert proc.returncode == 143 and "stopped by SIGTERM" in last_line(stderr) and "Traceback" not in stderr
    wait_for(lambda: not any(alive(w) for w in workers), timeout=10)


def test_sigterm_stops_generation_without_partial_files_or_orphans(tmp_path):
    rootdir = tmp_path / "rollouts"
    argv = ["--rootdir", rootdir, "--rollouts", 40, "--max-steps", 200, "--threads", 2]
    proc = script("data/generation_script.py", *argv)
    wait_for(lambda: len(list(rootdir.glob("*.npz"))) >= 1)
    workers = descendants(proc.pid)
    assert pool_workers(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "stopped by SIGTERM" in last_line(stderr) and "Traceback" not in stderr
    wait_for(lambda: not any(alive(w) for w in workers), timeout=10)
    assert not list(rootdir.glob(".*.tmp"))
    for path in rootdir.glob("*.npz"):
        load_rollout(path)  # every file there is whole


# --- full and read-only disks --------------------------------------------------------------------------


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.tar"
    save_checkpoint({"epoch": 1}, path)

    def full(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match=r"state\.tar \(No space left on device\): free some space"):
        atomic_write(path, full)
    assert load_checkpoint(path) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == ["state.tar"]


@pytest.fixture
def small_disk(tmp_path):
    """A 120 MB tmpfs (a real full disk); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_mid_training_keeps_the_last_checkpoint(vae_rollouts, small_disk, tmp_path):
    """V's checkpoints are ~50 MB each: epoch 1 fits (best.tar + checkpoint.tar), epoch 2 does not."""
    logdir = small_disk / "exp"
    argv = ["trainvae.py", "--logdir", logdir, "--dataset", vae_rollouts, "--cache-dir", tmp_path / "cache"]
    argv += ["--epochs", 5, "--batch-size", 8, "--max-batches", 1, "--device", "cpu", "--nosamples"]
    res = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
    line = last_line(res.stderr)
    assert res.returncode == 2 and "No space left on device" in line and "free some space" in line, res.stderr
    assert load_checkpoint(logdir / "vae" / "checkpoint.tar")["epoch"] >= 1
    assert not list((logdir / "vae").glob(".*.tmp"))


def test_a_read_only_logdir_is_one_line(pipeline_logdir, small_disk):
    logdir = copy_logdir(pipeline_logdir, small_disk / "exp")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    res = subprocess.run(
        [sys.executable, "trainmdrnn.py", "--logdir", str(logdir), "--epochs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Read-only file system" in last_line(res.stderr), res.stderr
    assert "Traceback" not in res.stderr


def test_a_full_disk_during_generation_is_one_line(small_disk):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (120 * 2**20 - 200 * 2**10))  # leave ~200 KB: a rollout of 60 frames is more
    res = subprocess.run(
        [
            sys.executable,
            "data/generation_script.py",
            "--rootdir",
            str(small_disk / "r"),
            "--rollouts",
            "3",
            "--max-steps",
            "300",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "No space left on device" in last_line(res.stderr), res.stderr
    assert not list((small_disk / "r").glob(".*.tmp"))


def test_a_damaged_record_is_one_line_naming_it(tmp_path):
    """A record cut short or edited by hand (a stage's args.json, the pipelines' pick.json) is one line
    naming the file and what to do, not a JSON traceback."""
    from scripts import demo
    from utils.logging import load_args

    (tmp_path / "ctrl").mkdir()
    (tmp_path / "ctrl" / "args.json").write_text('{"searches": 2')
    with pytest.raises(UserError, match=r"ctrl/args.json is damaged \(not readable JSON\): delete it"):
        load_args(tmp_path / "ctrl")
    (tmp_path / demo.PICK_RESULTS).write_bytes(b"\xff\xfe")
    args = demo.resolve(demo.build_parser().parse_args(["--logdir", str(tmp_path), "--pipelines", "2"]))
    with pytest.raises(UserError, match=r"pick.json is damaged .*delete it and rerun to redo the pick"):
        demo.check_pipelines(args)


@pytest.mark.parametrize(
    "argv",
    [
        ["test_controller.py", "--random-policy", "--episodes", "1", "--max-steps", "5", "--out", "{file}"],
        ["scripts/dream.py", "--steps", "3", "--out", "{file}/dream.gif"],
    ],
)
def test_an_out_that_is_a_file_is_one_line(pipeline_logdir, tmp_path, argv, capsys, monkeypatch):
    taken = tmp_path / "results"
    taken.write_text("a user's file")
    argv = [a.replace("{file}", str(taken)) for a in argv]
    code, stderr = run_script(monkeypatch, capsys, argv[0], "--logdir", pipeline_logdir, *argv[1:])
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert f"{taken} is a file, not a directory; choose another path" in stderr.strip().splitlines()[-1]
    assert taken.read_text() == "a user's file"


STAGE = """
import argparse, torch
from utils.cli import UserError

def build_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--then", choices=["finish", "fail", "stop"])
    return parser

def main(args):
    torch.set_num_threads(1)  # as an episode worker's set-up does, were it run in the main process
    if args.then == "fail":
        raise UserError("the stage's own line")
    if args.then == "stop":
        raise KeyboardInterrupt
"""


def test_a_stage_run_in_process_fails_as_it_would_alone(tmp_path, monkeypatch, capsys):
    """utils.cli.run_stage (demo.py's and tau_sweep.py's stages): the stage's own error line under its
    script's name, then the runner's line; a stopped stage ends the run with its status; what the stage
    set in the process (torch's threads) is put back."""
    from utils.cli import run_stage

    (tmp_path / "my_stage.py").write_text(STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    threads = torch.get_num_threads()
    run_stage(["my_stage.py", "--then", "finish"], "unused")
    assert torch.get_num_threads() == threads
    with pytest.raises(UserError, match="^stage 'x' failed: rerun$"):
        run_stage(["my_stage.py", "--then", "fail"], "stage 'x' failed: rerun")
    assert capsys.readouterr().err.strip() == "my_stage.py: error: the stage's own line"
    with pytest.raises(UserError, match="bad flag"):
        run_stage(["my_stage.py", "--then", "never"], "bad flag")
    assert "my_stage.py: error: argument --then: invalid choice" in capsys.readouterr().err
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped:
            run_stage(["my_stage.py", "--then", "stop"], "unused")
    finally:  # a stopped run leaves its handlers in place until it exits; this process goes on
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert stopped.value.code == 130 and "my_stage.py: stopped by Ctrl-C" in capsys.readouterr().err
    assert torch.get_num_threads() == threads
