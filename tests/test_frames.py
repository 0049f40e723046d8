"""The memory-mapped frame cache: contents, reuse, rebuilds, batches, split, and bad data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import data.frames
from data.frames import FrameCache
from data.rollouts import Rollout, list_rollouts, load_rollout, save_rollout, split_names
from tests.conftest import write_synthetic_rollouts
from utils.cli import UserError


@pytest.fixture
def rollouts(vae_rollouts, tmp_path):
    """A private copy of the session's rollouts, free to modify."""
    return shutil.copytree(vae_rollouts, tmp_path / "data", ignore=shutil.ignore_patterns(".cache"))


def source_frames(rootdir):
    parts = []
    for path in list_rollouts(rootdir):
        r = load_rollout(path)
        parts += [r.observations, r.final_observation[None]]
    return np.concatenate(parts)


def test_cache_holds_every_frame_in_order(rollouts):
    cache = FrameCache.open(rollouts, verbose=False)
    expected = source_frames(rollouts)
    assert isinstance(cache.frames, np.memmap) and cache.frames.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(cache.frames), expected)
    assert len(cache) == 6 * 16 and list(cache.lengths) == [16] * 6
    assert cache.preprocessing == "crop84"
    assert cache.path.parent == rollouts / ".cache"
    third = list_rollouts(rollouts)[2]
    r = load_rollout(third)
    np.testing.assert_array_equal(cache.rollout_frames(third)[:-1], r.observations)
    np.testing.assert_array_equal(cache.rollout_frames(third.name)[-1], r.final_observation)


def test_cache_built_once_then_reused(rollouts, monkeypatch):
    first = FrameCache.open(rollouts, verbose=False)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt an up-to-date cache")

    monkeypatch.setattr(data.frames, "_build", no_build)
    again = FrameCache.open(rollouts, verbose=False)
    assert again.path == first.path


def test_a_second_build_waits_for_the_first_and_keeps_its_temporary(rollouts):
    """Two V trainings on one dataset: while one builds the cache (holding the build lock, its
    half-written temporary on disk), the other waits instead of deleting that temporary and building
    beside it; once the first is done, the second opens the cache the first built."""
    import threading

    from utils.locking import waiting_for

    cache_dir = rollouts / ".cache"
    cache_dir.mkdir()
    half_written = cache_dir / ".frames-other-build.tmp"
    opened = {}
    with waiting_for(cache_dir / ".build.lock"):
        half_written.write_bytes(b"half a cache")
        second = threading.Thread(
            target=lambda: opened.update(cache=FrameCache.open(rollouts, verbose=False))
        )
        second.start()
        second.join(timeout=2)
        assert second.is_alive() and half_written.read_bytes() == b"half a cache"
        # the first build completes (here: in this thread, the lock's holder)
        data.frames._build(rollouts, list_rollouts(rollouts), *cache_paths(rollouts), False, 1, False)
    second.join(timeout=30)
    assert not second.is_alive() and opened["cache"].path == cache_paths(rollouts)[0]


def cache_paths(rootdir):
    """The cache's frames, index and labels files."""
    key = data.frames.cache_key(list_rollouts(rootdir), rootdir)
    return tuple(
        rootdir / ".cache" / f"{kind}-{key}.{ext}"
        for kind, ext in (("frames", "u8"), ("frames", "json"), ("labels", "f32"))
    )


def test_rollouts_still_being_generated_are_not_read(rollouts):
    from utils.locking import exclusive

    with exclusive(rollouts, f"rollout directory {rollouts}"):
        with pytest.raises(
            UserError, match=f"rollout directory {rollouts} is in use by pid .*wait for that run"
        ):
            FrameCache.open(rollouts, verbose=False)
    assert len(FrameCache.open(rollouts, verbose=False)) == 6 * 16


def test_cache_rebuilt_when_rollouts_change(rollouts):
    old = FrameCache.open(rollouts, verbose=False)
    write_synthetic_rollouts(rollouts, n=1, steps=9, seed=1, start=6)
    new = FrameCache.open(rollouts, verbose=False)
    assert new.path != old.path and not old.path.exists()  # the stale cache is deleted
    assert len(new) == 6 * 16 + 10
    np.testing.assert_array_equal(np.asarray(new.frames), source_frames(rollouts))
    # rewriting a file in place (new size or mtime) also invalidates the cache
    write_synthetic_rollouts(rollouts, n=1, steps=4, seed=2, start=0)
    third = FrameCache.open(rollouts, verbose=False)
    assert third.path != new.path
    np.testing.assert_array_equal(np.asarray(third.frames), source_frames(rollouts))


def test_batches_equal_source_frames_and_cover_an_epoch(rollouts):
    cache = FrameCache.open(rollouts, verbose=False)
    expected = source_frames(rollouts)
    train, test = cache.split(0.3)
    seen = []
    for batch in cache.batches(train, 7, rng=np.random.default_rng(0)):
        frames = batch.numpy()
        assert batch.dtype.is_floating_point is False and frames.shape[1:] == (64, 64, 3)
        # each frame of the batch is one of the train frames, and they arrive once per epoch
        matches = [np.flatnonzero((expected == f).all(axis=(1, 2, 3))) for f in frames]
        seen += [int(m[0]) for m in matches]
    assert sorted(seen) == sorted(train.tolist())
    assert len(list(cache.batches(train, 7, max_batches=2))) == 2
    first = next(cache.batches(test, 5))
    np.testing.assert_array_equal(first.numpy(), expected[np.sort(test[:5])])


def test_split_matches_split_names(rollouts):
    cache = FrameCache.open(rollouts, verbose=False)
    train, test = cache.split(0.3)
    names = [str(p.relative_to(rollouts)) for p in list_rollouts(rollouts)]
    train_files, test_files = split_names(names, 0.3)
    assert len(test_files) >= 1 and len(train) + len(test) == len(cache)
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(test, cache.frame_indices(test_files))
    np.testing.assert_array_equal(train, cache.frame_indices(train_files))


def test_a_linked_rollout_set_is_read_through_its_link(rollouts, tmp_path):
    """A rollout set linked into a dataset counts as a copy would; a link back up (a loop) ends."""
    dataset = tmp_path / "dataset"
    shutil.copytree(rollouts, dataset / "round1", ignore=shutil.ignore_patterns(".cache"))
    (dataset / "round0").symlink_to(rollouts, target_is_directory=True)
    (dataset / "round1" / "loop").symlink_to(dataset, target_is_directory=True)
    names = [str(p.relative_to(dataset)) for p in list_rollouts(dataset)]
    assert names == [f"round{k}/{p.name}" for k in (0, 1) for p in list_rollouts(rollouts)]
    cache = FrameCache.open(dataset, verbose=False)
    np.testing.assert_array_equal(np.asarray(cache.frames), np.concatenate([source_frames(rollouts)] * 2))


def test_state_labels_are_read_and_cached_beside_their_frames(tmp_path):
    """A rollout's state labels (one row per frame) load with it and sit in the cache in the frames' order;
    batches pair each frame with its own row; a dataset with one unlabelled file has none in its cache;
    labels of the wrong shape, or in a game that records none, are named in one line."""
    rootdir = tmp_path / "labelled"
    paths = write_synthetic_rollouts(rootdir, n=4, steps=6, preprocessing="full", env="socnav-ego", labels=7)
    rollout = load_rollout(paths[1])
    assert rollout.labels.shape == (7, 7) and rollout.labels.dtype == np.float32
    np.testing.assert_allclose(rollout.labels[:, 0], rollout.frames[..., 0].mean((1, 2)) / 255, rtol=1e-6)
    cache = FrameCache.open(rootdir, verbose=False)
    assert cache.labels.shape == (len(cache), 7) and cache.unlabelled == 0
    for path in paths:
        np.testing.assert_array_equal(cache.labels[cache.frame_indices([path])], load_rollout(path).labels)
    seen = 0
    for frames, labels in cache.batches(np.arange(len(cache)), 5, np.random.default_rng(0), with_labels=True):
        np.testing.assert_allclose(labels[:, 0], frames[..., 0].double().mean((1, 2)) / 255, rtol=1e-5)
        seen += len(frames)
    assert seen == len(cache)
    write_synthetic_rollouts(rootdir, n=1, steps=6, preprocessing="full", env="socnav-ego", start=4)
    cache = FrameCache.open(rootdir, verbose=False)  # rebuilt: one file has no labels
    assert cache.labels is None and cache.unlabelled == 1 and not list(cache.path.parent.glob("labels-*"))
    with pytest.raises(ValueError, match="carry no labels"):
        next(cache.batches(np.arange(3), 2, with_labels=True))
    bad = rootdir / "rollout_000009.npz"
    save_rollout(bad, Rollout(**{**rollout.__dict__, "labels": rollout.labels[:, :5]}))
    with pytest.raises(
        UserError, match=f"{bad.name}: 'labels' is float32\\[7, 5\\], expected float32\\[7, 7\\]"
    ):
        load_rollout(bad)
    car = write_synthetic_rollouts(tmp_path / "car", n=1, steps=6, labels=7)[0]
    with pytest.raises(UserError, match=f"{car.name}: 'labels'.*one column per label carracing records"):
        load_rollout(car)
    assert load_rollout(write_synthetic_rollouts(tmp_path / "plain", n=1)[0]).labels is None


def test_empty_directory(tmp_path):
    with pytest.raises(UserError, match="no rollout files"):
        FrameCache.open(tmp_path, verbose=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_is_named(rollouts, damage):
    path = list_rollouts(rollouts)[2]
    data = path.read_bytes()
    path.write_bytes(b"not a zip file" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(UserError, match=path.name):
        FrameCache.open(rollouts, verbose=False)
    with pytest.warns(UserWarning, match=path.name):
        cache = FrameCache.open(rollouts, skip_bad_files=True, verbose=False)
    assert len(cache.files) == 5 and cache.skipped == [path.name]
    with pytest.raises(UserError, match="skip-bad-files"):  # a cache built with skips needs the flag
        FrameCache.open(rollouts, verbose=False)


def test_wrong_frame_shape_is_named(rollouts):
    good = load_rollout(list_rollouts(rollouts)[0])
    path = rollouts / "rollout_000099.npz"
    small = np.zeros((len(good), 32, 32, 3), np.uint8)
    save_rollout(path, Rollout(**{**good.__dict__, "observations": small}))
    with pytest.raises(UserError, match=f"{path.name}.*observations"):
        FrameCache.open(rollouts, verbose=False)


def test_mixed_preprocessing_is_named(rollouts):
    path = write_synthetic_rollouts(rollouts, n=1, preprocessing="full", start=7)[0]
    with pytest.raises(UserError, match=f"{path.name}: preprocessing 'full' differs from 'crop84'"):
        FrameCache.open(rollouts, verbose=False)


def test_relative_dataset_path(vae_rollouts, tmp_path, monkeypatch):
    """A dataset given relative to the working directory splits like an absolute one."""
    import shutil

    from data.frames import FrameCache

    shutil.copytree(vae_rollouts, tmp_path / "data" / "rollouts")
    monkeypatch.chdir(tmp_path)
    relative = FrameCache.open("data/rollouts", verbose=False)
    absolute = FrameCache.open(tmp_path / "data" / "rollouts", verbose=False)
    train, test = relative.split(0.3)
    assert len(train) and len(test)
    for a, b in zip((train, test), absolute.split(0.3), strict=True):
        np.testing.assert_array_equal(a, b)
