"""Frame preprocessing against an exact area-average reference, and the random action processes."""

import numpy as np
import pytest

from envs.carracing import preprocess
from envs.policies import BROWNIAN_DT, brownian_actions, discrete_held_actions, held_actions, white_actions
from envs.preprocess import area_matrix, area_resize


def reference_area_resize(img: np.ndarray, out: int = 64) -> np.ndarray:
    """Area averaging by upsampling to a common multiple and block-averaging (slow, obviously right)."""
    h, w = img.shape[:2]
    lh, lw = np.lcm(h, out), np.lcm(w, out)
    up = img.astype(np.float64).repeat(lh // h, axis=0).repeat(lw // w, axis=1)
    return up.reshape(out, lh // out, out, lw // out, -1).mean(axis=(1, 3))


@pytest.mark.parametrize("n_in", [84, 96, 64, 100])
def test_area_matrix_rows_sum_to_one(n_in):
    m = area_matrix(n_in, 64)
    assert m.shape == (64, n_in)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    assert (m >= 0).all()


@pytest.mark.parametrize("mode,rows", [("crop84", 84), ("full", 96)])
def test_preprocess_matches_reference(mode, rows):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    out = preprocess(frame, mode)
    ref = reference_area_resize(frame[:rows])
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # Rounding of float32 vs float64 sums may differ by one level where the exact value is near .5.
    diff = np.abs(out.astype(np.int64) - np.rint(ref).astype(np.int64))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_crop_drops_dashboard_full_keeps_it():
    frame = np.zeros((96, 96, 3), np.uint8)
    frame[84:] = 255  # the dashboard rows only
    assert preprocess(frame, "crop84").max() == 0
    full = preprocess(frame, "full")
    assert full[-1].min() == 255 and full[:50].max() == 0


def test_batch_equals_single_frames():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(5, 96, 96, 3), dtype=np.uint8)
    batch = preprocess(frames)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], preprocess(frames[i]))


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="96, 96, 3"):
        preprocess(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown preprocessing"):
        preprocess(np.zeros((96, 96, 3), np.uint8), "half")


LOW, HIGH = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])


def test_brownian_bounds_increments_and_determinism():
    rng = np.random.default_rng(0)
    a = brownian_actions(rng, LOW, HIGH, 20000)
    assert a.shape == (20000, 3) and a.dtype == np.float32
    assert (a >= LOW).all() and (a <= HIGH).all()
    steps = np.diff(a.astype(np.float64), axis=0)
    inside = (a[:-1] > LOW + 0.5) & (a[:-1] < HIGH - 0.5) & (a[1:] > LOW) & (a[1:] < HIGH)
    # Away from the bounds the increments are N(0, dt): check their spread and centre.
    assert abs(steps[inside].std() - np.sqrt(BROWNIAN_DT)) < 0.01
    assert abs(steps[inside].mean()) < 0.01
    # Consecutive actions are strongly correlated (what makes rollouts drivable).
    assert np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1] > 0.9
    np.testing.assert_array_equal(a, brownian_actions(np.random.default_rng(0), LOW, HIGH, 20000))


def test_white_is_uniform_and_uncorrelated():
    a = white_actions(np.random.default_rng(0), LOW, HIGH, 20000)
    assert (a >= LOW).all() and (a <= HIGH).all()
    np.testing.assert_allclose(a.mean(axis=0), (LOW + HIGH) / 2, atol=0.02)
    np.testing.assert_allclose(a.var(axis=0), (HIGH - LOW) ** 2 / 12, rtol=0.05)
    assert abs(np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]) < 0.05


def test_held_actions_are_runs_of_1_to_max_hold():
    a = held_actions(np.random.default_rng(0), np.array([-1.0]), np.array([1.0]), 5000, max_hold=10)
    assert a.shape == (5000, 1) and a.dtype == np.float32 and (np.abs(a) <= 1).all()
    change = np.flatnonzero(np.diff(a[:, 0]) != 0)
    runs = np.diff(np.concatenate([[-1], change]))
    assert runs.min() >= 1 and runs.max() <= 10 and 4.5 < runs.mean() < 6.5  # uniform 1..10: mean 5.5
    np.testing.assert_allclose(a[:, 0].mean(), 0.0, atol=0.05)


def test_discrete_held_actions_are_one_hot_runs():
    a = discrete_held_actions(np.random.default_rng(0), 5, 3000, max_hold=4)
    assert a.shape == (3000, 5) and set(np.unique(a)) == {0.0, 1.0} and (a.sum(axis=1) == 1).all()
    counts = a.sum(axis=0)
    assert counts.min() > 0.15 * 3000  # every action is used, about equally
    labels = a.argmax(axis=1)
    assert (np.diff(labels) == 0).mean() > 0.5  # held, not redrawn every step


def test_area_resize_of_a_non_carracing_frame():
    frame = np.random.default_rng(3).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    out = area_resize(frame)
    diff = np.abs(out.astype(np.int64) - np.rint(reference_area_resize(frame)).astype(np.int64))
    assert out.shape == (64, 64, 3) and diff.max() <= 1
