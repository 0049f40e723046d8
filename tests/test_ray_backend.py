"""The Ray backend on a real local Ray instance: same files and returns as the local backend, lost
actors retried, a clear line when Ray is missing."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import test_controller
import traincontroller
from data import generation_script
from data.rollouts import ARRAY_KEYS, load_rollout, rollout_name
from driving.agent import random_agent_spec
from driving.episode import Episode, EpisodeSettings, WorkerError
from tests.conftest import copy_logdir

ray = pytest.importorskip("ray")
from driving.ray_pool import RayPool  # noqa: E402  (needs Ray)

ROOT = Path(__file__).resolve().parent.parent
SHORT = EpisodeSettings(max_steps=30, renderer="fast")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module; the scripts find it initialised and join it."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec():
    return random_agent_spec(seed=0)


def episodes(n):
    rng = np.random.default_rng(0)
    return [Episode(i, rng.standard_normal(867).astype(np.float32), 100 + i) for i in range(n)]


def generate(rootdir, *flags):
    parser = generation_script.build_parser()
    args = ["--rootdir", str(rootdir), "--rollouts", "2", "--max-steps", "30", "--seed", "3", *flags]
    return generation_script.main(parser.parse_args(args))


def test_generation_on_ray_writes_the_local_files(tmp_path):
    assert generate(tmp_path / "ray", "--backend", "ray") == [0, 1]
    generate(tmp_path / "local", "--threads", "1")
    for i in range(2):
        a, b = (
            load_rollout(tmp_path / "ray" / rollout_name(i)),
            load_rollout(tmp_path / "local" / rollout_name(i)),
        )
        for key in ARRAY_KEYS:
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert generate(tmp_path / "ray", "--backend", "ray") == []  # resume: nothing left to do
    assert not list((tmp_path / "ray").glob(".*.tmp"))


def test_killed_actor_chunks_are_retried_and_counted_once(spec):
    eps = episodes(12)  # 6 chunks of 2: each actor has chunks queued when the first result comes
    with RayPool(spec, SHORT, n_workers=2, n_envs=2, timeout=120) as pool:
        expected = {k: (r.episode_return, r.steps) for k, r in pool.evaluate(eps).items()}
        pids = ray.get([a.pid.remote() for a in pool.actors])
        seen = []

        def on_result(r):
            if not seen:  # a worker process is lost mid-evaluation
                os.kill(pids[1], signal.SIGKILL)
            seen.append(r.task_id)

        results = pool.evaluate(eps, on_result=on_result)
        assert pool.retries >= 1
        assert sorted(seen) == list(range(12))  # every episode reported exactly once
        assert {k: (r.episode_return, r.steps) for k, r in results.items()} == expected
        # The replacement actor serves the next evaluation as well.
        again = pool.evaluate(eps[:4])
        assert {k: (r.episode_return, r.steps) for k, r in again.items()} == {
            k: expected[k] for k in range(4)
        }


def test_episode_code_error_fails_at_once_with_its_traceback(spec):
    with RayPool(spec, SHORT, n_workers=1, n_envs=1, timeout=120) as pool:
        with pytest.raises(WorkerError, match=r"(?s)episode actor 0 failed:.*drive_chunk.*ValueError"):
            pool.evaluate([Episode(0, np.zeros(5, np.float32), 1)])  # wrong controller size
        assert pool.retries == 0


def run_ctrl(logdir, *flags):
    parser = traincontroller.build_parser()
    args = ["--logdir", str(logdir), "--pop-size", "4", "--n-samples", "1", "--max-steps", "30"]
    args += ["--eval-every", "1", "--eval-episodes", "2", "--max-workers", "2", "--envs-per-worker", "2"]
    return traincontroller.main(parser.parse_args([*args, "--generations", "2", *flags]))


@pytest.fixture(scope="module")
def trained(pipeline_logdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_ctrl")
    local = copy_logdir(pipeline_logdir, root / "local")
    on_ray = copy_logdir(pipeline_logdir, root / "ray")
    return local, run_ctrl(local), run_ctrl(on_ray, "--backend", "ray")


def test_controller_history_is_the_same_on_ray(trained):
    _, local, on_ray = trained
    assert on_ray["generation"] == local["generation"] == 2
    assert on_ray["history"] == local["history"]  # every fitness and evaluation, to the last bit


def test_test_controller_returns_are_the_same_on_ray(trained):
    logdir = trained[0]
    parser = test_controller.build_parser()
    args = ["--logdir", str(logdir), "--episodes", "3", "--max-steps", "30", "--max-workers", "2"]
    args += ["--envs-per-worker", "2"]
    local = test_controller.main(parser.parse_args(args))
    on_ray = test_controller.main(parser.parse_args([*args, "--backend", "ray"]))
    assert on_ray["returns"] == local["returns"] and on_ray["steps"] == local["steps"]


def test_missing_ray_is_one_clear_line(tmp_path):
    code = (
        "import runpy, sys; sys.modules['ray'] = None; "  # `import ray` now raises ImportError
        f"sys.argv = ['generation_script.py', '--rootdir', {str(tmp_path)!r}, '--rollouts', '1', "
        "'--backend', 'ray']; runpy.run_path('data/generation_script.py', run_name='__main__')"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "--backend ray needs Ray: pip install -r requirements-ray.txt" in lines[0]
    assert not list(tmp_path.iterdir())
