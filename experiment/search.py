"""C's CMA-ES search: a new one, and its state in plain tensors so that a search can travel.

A run's own ``ctrl/checkpoint.tar`` keeps the whole ``cma`` object (pickled bytes, ~19 MB for CarRacing's
867 parameters) and resumes it exactly. An exported agent ships :func:`portable_state` instead: what
defines the search distribution and its adaptation (mean, step size, covariance, the evolution paths
and the step-size adaptation's state, the iteration count), ~1.5 MB, loadable weights-only, so that
whoever has the agent can go on searching from where its run stopped (:func:`continue_search`). The
continuation is the same search distribution, not the same random numbers: the covariance is stored in
float32 and re-decomposed, and the continued search draws from a stream of its own.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import torch

from utils.seeding import derive_seed

_CMA_STREAM = 0xC3A


def import_cma():
    """The cma package, imported without its warning that matplotlib is missing (no plotting here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import cma
    return cma


def new_search(
    dim: int, pop_size: int, sigma: float, seed: int, *, mean: np.ndarray | None = None, stream: int = 0
):
    """A CMA-ES search over ``dim`` parameters from ``mean`` (default zeros) with step size ``sigma``.

    It draws from its own random stream (``seed``, ``stream``), pickled with it, so that a resumed search
    draws what an uninterrupted one would.
    """
    cma = import_cma()
    rng = np.random.RandomState(derive_seed(seed, _CMA_STREAM, *((stream,) if stream else ())))
    opts = {
        "popsize": pop_size,
        "seed": derive_seed(seed, _CMA_STREAM) + 1,
        "verbose": -9,
        "randn": rng.randn,
    }
    x0 = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    return cma.CMAEvolutionStrategy(x0, sigma, opts)


def resume_search(pickled: bytes):
    """The search a run's own ``ctrl/checkpoint.tar`` pickled (its ``cma`` bytes), exactly as it was.

    The one unpickling of the project: CMA-ES's full state has no plain form. The checkpoint itself is
    loaded weights-only; these bytes are read only from the owner's own run (to resume it, or to export
    it as :func:`portable_state`), never from an exported agent.
    """
    import_cma()  # unpickling imports cma: without its warning
    return pickle.loads(pickled)


def portable_state(es) -> dict[str, Any]:
    """The search distribution of ``es`` as tensors and numbers: mean (P,), sigma, the covariance's upper
    triangle (P (P + 1) / 2,) in float32, the evolution paths pc and ps (P,), the step-size adaptation's
    state, the previous mean (P,), iterations and evaluations."""
    cov = np.asarray(es.sm.C)
    rows, cols = np.triu_indices(len(cov))
    return {
        "mean": torch.from_numpy(np.array(es.mean, dtype=np.float64)),
        "sigma": float(es.sigma),
        "cov_upper": torch.from_numpy(cov[rows, cols].astype(np.float32)),
        "pc": torch.from_numpy(np.array(es.pc, dtype=np.float64)),
        "ps": torch.from_numpy(np.array(es.adapt_sigma.ps, dtype=np.float64)),
        # Two-point step-size adaptation (cma's choice from 300 parameters on): its cumulated rank
        # statistic, and the previous mean, whose shift the next generation samples in both directions.
        "tpa_s": float(getattr(es.adapt_sigma, "s", 0.0)),
        "mean_old": torch.from_numpy(np.array(getattr(es, "mean_old", es.mean), dtype=np.float64)),
        "iterations": int(es.countiter),
        "evaluations": int(es.countevals),
    }


def continue_search(state: dict[str, Any], pop_size: int, seed: int):
    """A search that goes on from :func:`portable_state`'s ``state`` with population ``pop_size``; its random
    stream is (``seed``, iterations done), so a continuation does not replay the first generations' draws."""
    mean = state["mean"].numpy()
    dim = len(mean)
    es = new_search(dim, pop_size, state["sigma"], seed, mean=mean, stream=state["iterations"])
    cov = np.zeros((dim, dim))
    cov[np.triu_indices(dim)] = state["cov_upper"].double().numpy()
    es.sm.C = cov + np.triu(cov, 1).T
    es.sm._decompose_C()  # B and D, which sampling uses, from the restored C
    es.pc = state["pc"].numpy().copy()
    es.adapt_sigma.ps = state["ps"].numpy().copy()
    es.countiter, es.countevals = state["iterations"], state["evaluations"]
    if hasattr(es.adapt_sigma, "s"):
        es.adapt_sigma.s = state["tpa_s"]
    if es.countiter:  # what the generations so far would have left behind
        es.timer = import_cma().utilities.utils.ElapsedWCTime()
        es.mean_old = state["mean_old"].numpy().copy()
        if es.mean_shift_samples:
            shift = es.mean - es.mean_old
            es.pop_injection_directions = [shift, -shift]
    return es
