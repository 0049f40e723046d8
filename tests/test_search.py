"""C's search state in plain tensors (experiment/search.py): what it keeps, and that a continued search
samples the distribution the saved one would have."""

import numpy as np
import pytest

from experiment.search import continue_search, new_search, portable_state
from utils.checkpoint import load_checkpoint, save_checkpoint

DIM, POP = 6, 8
SCALES = np.array([1.0, 3.0, 10.0, 0.3, 1.0, 30.0])


def ellipsoid(x) -> float:
    """A rotated, badly scaled quadratic: CMA-ES learns a covariance far from the identity on it."""
    rotation = np.linalg.qr(np.random.default_rng(0).standard_normal((DIM, DIM)))[0]
    return float(((SCALES * (rotation @ (np.asarray(x) - 1.0))) ** 2).sum())


@pytest.fixture(scope="module")
def searched():
    es = new_search(DIM, POP, 0.5, seed=3)
    for _ in range(40):
        candidates = es.ask()
        es.tell(candidates, [ellipsoid(x) for x in candidates])
    return es


def test_the_state_travels_weights_only(searched, tmp_path):
    path = tmp_path / "search.tar"
    save_checkpoint({"stage": "ctrl", "search": portable_state(searched)}, path)
    state = load_checkpoint(path)["search"]  # torch.load(weights_only=True) underneath
    es = continue_search(state, POP, seed=3)
    np.testing.assert_array_equal(es.mean, searched.mean)
    assert es.sigma == searched.sigma
    np.testing.assert_allclose(es.sm.C, searched.sm.C, rtol=1e-6)
    np.testing.assert_array_equal(es.pc, searched.pc)
    np.testing.assert_array_equal(es.adapt_sigma.ps, searched.adapt_sigma.ps)
    assert (es.countiter, es.countevals) == (searched.countiter, searched.countevals) == (40, 40 * POP)
    # What the search learned is not the identity (else the checks above prove little).
    assert np.linalg.cond(searched.sm.C) > 10


def test_a_continued_search_samples_the_saved_distribution(searched):
    es = continue_search(portable_state(searched), POP, seed=3)
    samples = np.asarray(es.ask(number=20000))
    expected = searched.sigma**2 * searched.sm.C
    covariance = np.cov(samples.T)
    # 20,000 samples: the empirical covariance is within a few percent (its own noise ~1%).
    assert np.linalg.norm(covariance - expected) < 0.05 * np.linalg.norm(expected)
    np.testing.assert_allclose(
        samples.mean(axis=0), searched.mean, atol=4 * np.sqrt(np.diag(expected).max() / 20000)
    )


def test_a_continued_search_keeps_what_it_learned(searched):
    """15 more generations: the continued search ends nearer the optimum than a new search from the same
    mean and step size (which must first learn the covariance again), with every seed tried."""
    for seed in (4, 5, 6, 7):
        continued = continue_search(portable_state(searched), POP, seed=seed)
        fresh = new_search(DIM, POP, searched.sigma, seed, mean=searched.mean)
        for _ in range(15):
            for es in (continued, fresh):
                candidates = es.ask()
                es.tell(candidates, [ellipsoid(x) for x in candidates])
        assert continued.countiter == 55
        assert ellipsoid(continued.mean) < ellipsoid(fresh.mean)


def test_two_point_step_size_adaptation_carries_over():
    """From 300 parameters on (CarRacing's C has 867) cma adapts the step size by two-point adaptation,
    whose state and first samples of the next generation (the last mean shift, both ways) come from the
    generations before: a continued search goes on as the uninterrupted one does."""

    def sphere(x) -> float:
        return float(((np.asarray(x) - 1.0) ** 2).sum())

    for pop in (4, 16):
        es = new_search(300, pop, 0.3, seed=0)
        for _ in range(10):
            candidates = es.ask()
            es.tell(candidates, [sphere(x) for x in candidates])
        continued = continue_search(portable_state(es), pop, seed=1)
        assert type(continued.adapt_sigma).__name__ == "CMAAdaptSigmaTPA"
        assert continued.adapt_sigma.s == es.adapt_sigma.s
        np.testing.assert_array_equal(continued.pop_injection_directions[0], es.mean - es.mean_old)
        for _ in range(10):
            for search in (es, continued):
                candidates = search.ask()
                search.tell(candidates, [sphere(x) for x in candidates])
        assert abs(np.log(continued.sigma / es.sigma)) < np.log(1.15)
        assert abs(np.log(sphere(continued.mean) / sphere(es.mean))) < np.log(1.05)
