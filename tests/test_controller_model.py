"""C: parameter count, squashing, flat-vector round trip, batched evaluation equal to a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.controller import (
    Controller,
    batched_controller_actions,
    squash_actions,
    unflatten_controller_vectors,
)

L, H = 32, 256


def test_parameter_count_is_the_papers() -> None:
    c = Controller()
    # (32 + 256) * 3 weights + 3 biases, as reported in the paper.
    assert sum(p.numel() for p in c.parameters()) == c.vector_size == 867


def test_forward_shape_and_squashing_applied() -> None:
    torch.manual_seed(0)
    c = Controller()
    z, h = torch.randn(5, L), torch.randn(5, H)
    a = c(z, h)
    assert a.shape == (5, 3)
    raw = z @ c.fc.weight[:, :L].T + h @ c.fc.weight[:, L:].T + c.fc.bias
    torch.testing.assert_close(a, squash_actions(raw))


def test_squash_ranges_over_extreme_inputs() -> None:
    values = torch.tensor([-math.inf, -1e30, -1e4, -3.0, -1e-3, 0.0, 1e-3, 3.0, 1e4, 1e30, math.inf])
    raw = torch.cartesian_prod(values, values, values)
    a = squash_actions(raw)
    assert a.shape == raw.shape
    assert torch.isfinite(a).all()
    steer, gas, brake = a.unbind(-1)
    assert steer.min() >= -1 and steer.max() <= 1
    assert gas.min() >= 0 and gas.max() <= 1
    assert brake.min() >= 0 and brake.max() <= 1
    # The extremes are reached, and each channel follows its own formula.
    assert steer.min() == -1 and steer.max() == 1 and gas.min() == 0 and gas.max() == 1
    for x in (-3.0, -1e-3, 0.0, 1e-3, 3.0):
        s, g, b = squash_actions(torch.tensor([x, x, x])).tolist()
        assert s == pytest.approx(math.tanh(x), abs=1e-6)
        assert g == pytest.approx((math.tanh(x) + 1) / 2, abs=1e-6)
        assert b == pytest.approx(min(max(math.tanh(x), 0.0), 1.0), abs=1e-6)


def test_vector_round_trip_and_documented_order() -> None:
    torch.manual_seed(1)
    c = Controller()
    vec = c.parameters_to_vector()
    assert isinstance(vec, np.ndarray) and vec.shape == (867,) and vec.dtype == np.float64
    # Order: weight row-major (steer, gas, brake rows; z then h columns), then bias.
    expected = torch.nn.utils.parameters_to_vector(c.parameters()).detach().double().numpy()
    np.testing.assert_array_equal(vec, expected)
    assert vec[L] == c.fc.weight[0, L].item()  # first hidden column of the steering row
    assert vec[-3] == c.fc.bias[0].item()

    new = np.random.default_rng(0).standard_normal(867)
    other = Controller()
    other.load_vector(new)
    np.testing.assert_allclose(other.parameters_to_vector(), new.astype(np.float32), rtol=0, atol=0)
    other.load_vector(torch.from_numpy(vec))
    for p, q in zip(c.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)

    with pytest.raises(ValueError, match="867"):
        other.load_vector(np.zeros(866))


def test_config_round_trip() -> None:
    c = Controller(latent=4, hidden=6)
    assert c.config == {"latent": 4, "hidden": 6, "action": 3}
    assert Controller.from_config(c.config).vector_size == 3 * 10 + 3
    with pytest.raises(ValueError, match="action"):
        Controller(action=2)


def test_batched_actions_equal_looped_controllers() -> None:
    n, b = 6, 4
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((n, 867)) * 0.1
    g = torch.Generator().manual_seed(2)
    z, h = torch.randn(n, b, L, generator=g), torch.randn(n, b, H, generator=g)

    weights, biases = unflatten_controller_vectors(vectors)
    assert weights.shape == (n, 3, L + H) and biases.shape == (n, 3)
    batched = batched_controller_actions(weights, biases, z, h)
    assert batched.shape == (n, b, 3)

    c = Controller()
    for i in range(n):
        c.load_vector(vectors[i])
        torch.testing.assert_close(batched[i], c(z[i], h[i]), atol=1e-6, rtol=0)
