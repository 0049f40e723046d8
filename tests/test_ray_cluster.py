"""A Ray cluster that loses a node mid-run (two nodes simulated on this machine with Ray's own
``ray.cluster_utils.Cluster``): episodes and rollouts are re-run elsewhere, nothing is lost or counted
twice, and the results equal an undisturbed run's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data import generation_script
from data.rollouts import ARRAY_KEYS, load_rollout, rollout_name
from driving.agent import random_agent_spec
from driving.episode import Episode, EpisodeSettings
from envs import get_env_spec

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from driving.ray_pool import RayPool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster():
    """A head node and one worker node, one CPU each, this process connected to them."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    ray.init(
        address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, log_to_driver=False
    )
    cluster.wait_for_nodes()
    yield cluster, node
    ray.shutdown()
    cluster.shutdown()


def losing_node(cluster, node):
    """An ``on_result`` callback that takes the worker node away when the first result comes back."""
    lost = []

    def on_result(*_):
        if not lost:
            lost.append(node)
            cluster.remove_node(node)

    return lost, on_result


def test_episode_pool_survives_a_lost_node(cluster):
    cluster, node = cluster
    rng = np.random.default_rng(0)
    episodes = [Episode(i, rng.standard_normal(867).astype(np.float32) * 0.1, 100 + i) for i in range(12)]
    with RayPool(
        random_agent_spec(), EpisodeSettings(60, "fast"), n_workers=2, n_envs=2, timeout=120
    ) as pool:
        undisturbed = {k: (r.episode_return, r.steps) for k, r in pool.evaluate(episodes).items()}
        lost, on_result = losing_node(cluster, node)
        counted = []
        results = pool.evaluate(episodes, on_result=lambda r: (counted.append(r.task_id), on_result()))
    assert lost and pool.retries > 0  # the node went while chunks were on it
    assert sorted(counted) == list(range(12))  # every episode once
    assert {k: (r.episode_return, r.steps) for k, r in results.items()} == undisturbed


def test_generation_survives_a_lost_node(cluster, tmp_path):
    cluster, node = cluster
    parser = generation_script.build_parser()
    args = parser.parse_args(["--rootdir", str(tmp_path / "ray"), "--rollouts", "6", "--max-steps", "40"])
    job = generation_script.make_job(args, get_env_spec("carracing"))
    (tmp_path / "ray").mkdir()
    lost, on_result = losing_node(cluster, node)
    written = []
    generation_script.generate_on_ray(
        list(range(6)), job, None, lambda i, n: (written.append(i), on_result())
    )
    assert lost and sorted(written) == list(range(6))
    local = parser.parse_args(["--rootdir", str(tmp_path / "local"), "--rollouts", "6", "--max-steps", "40"])
    generation_script.main(local)
    for i in range(6):
        a, b = (
            load_rollout(tmp_path / "ray" / rollout_name(i)),
            load_rollout(tmp_path / "local" / rollout_name(i)),
        )
        for key in ARRAY_KEYS:
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
