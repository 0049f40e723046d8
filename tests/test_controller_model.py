"""C: parameter counts (the paper's two controllers), flat-vector round trip and order, batches equal
to a loop, configs of old checkpoints, a C with a hidden layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.controller import Controller, ControllerBatch, ControllerConfig

L, H = 32, 256
CARRACING = ControllerConfig(L, H, 3)


def test_parameter_counts_are_the_papers() -> None:
    # CarRacing: (32 + 256) * 3 weights + 3 biases. Doom: [z, c, h] = 64 + 512 + 512 inputs, 1 output.
    c = Controller(CARRACING)
    assert sum(p.numel() for p in c.parameters()) == c.vector_size == 867
    doom = Controller(ControllerConfig(64, 512, 1, ("z", "c", "h"), bias=False))
    assert sum(p.numel() for p in doom.parameters()) == doom.vector_size == 1088
    assert doom.fc.bias is None


def test_forward_reads_its_inputs_in_order() -> None:
    torch.manual_seed(0)
    z, h, c = torch.randn(5, L), torch.randn(5, H), torch.randn(5, H)
    zh = Controller(CARRACING)
    raw = z @ zh.fc.weight[:, :L].T + h @ zh.fc.weight[:, L:].T + zh.fc.bias
    torch.testing.assert_close(zh(z, h, c), raw)
    zch = Controller(ControllerConfig(L, H, 1, ("z", "c", "h"), bias=False))
    w = zch.fc.weight
    torch.testing.assert_close(zch(z, h, c), z @ w[:, :L].T + c @ w[:, L : L + H].T + h @ w[:, L + H :].T)


def test_vector_round_trip_and_documented_order() -> None:
    torch.manual_seed(1)
    c = Controller(CARRACING)
    vec = c.parameters_to_vector()
    assert isinstance(vec, np.ndarray) and vec.shape == (867,) and vec.dtype == np.float64
    # Order: weight row-major (steer, gas, brake rows; z then h columns), then bias.
    expected = torch.nn.utils.parameters_to_vector(c.parameters()).detach().double().numpy()
    np.testing.assert_array_equal(vec, expected)
    assert vec[L] == c.fc.weight[0, L].item()  # first hidden column of the steering row
    assert vec[-3] == c.fc.bias[0].item()

    new = np.random.default_rng(0).standard_normal(867)
    other = Controller(CARRACING)
    other.load_vector(new)
    np.testing.assert_allclose(other.parameters_to_vector(), new.astype(np.float32), rtol=0, atol=0)
    other.load_vector(torch.from_numpy(vec))
    for p, q in zip(c.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    with pytest.raises(ValueError, match="867"):
        other.load_vector(np.zeros(866))


def test_config_round_trip_and_old_checkpoints() -> None:
    config = ControllerConfig(4, 6, 1, ("z", "c", "h"), bias=False)
    c = Controller(config)
    assert Controller.from_config(c.config).layout == config
    assert config.vector_size == 1 * (4 + 6 + 6)
    # Checkpoints written before inputs and bias were recorded: [z, h] with a bias.
    old = Controller.from_config({"latent": 4, "hidden": 6, "action": 3})
    assert old.layout == ControllerConfig(4, 6, 3, ("z", "h"), True) and old.vector_size == 3 * 10 + 3


def test_a_hidden_layer_computes_and_orders_as_documented() -> None:
    """units > 0: raw = W tanh(U [z, h] + u) + b, the flat vector [U row-major, u, W row-major, b]; its
    config says units, a linear C's does not (its checkpoints read as they always did)."""
    config = ControllerConfig(L, H, 3, units=8)
    assert config.vector_size == 8 * (L + H) + 8 + 3 * 8 + 3
    c = Controller(config)
    assert sum(p.numel() for p in c.parameters()) == c.vector_size
    vec = np.random.default_rng(3).standard_normal(config.vector_size)
    c.load_vector(vec)
    np.testing.assert_array_equal(c.parameters_to_vector(), vec.astype(np.float32))
    u = vec[: 8 * (L + H)].reshape(8, L + H)
    u_bias = vec[8 * (L + H) : config.layer_size]
    w = vec[config.layer_size : config.layer_size + 24].reshape(3, 8)
    b = vec[-3:]
    rng = np.random.default_rng(4)
    z, h = rng.standard_normal((5, L)), rng.standard_normal((5, H))
    expected = np.tanh(np.c_[z, h] @ u.T + u_bias) @ w.T + b
    with torch.no_grad():
        raw = c(torch.as_tensor(z).float(), torch.as_tensor(h).float())
    np.testing.assert_allclose(raw.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert Controller.from_config(c.config).layout == config and c.config["units"] == 8
    assert "units" not in Controller(CARRACING).config


@pytest.mark.parametrize(
    "config",
    [CARRACING, ControllerConfig(L, H, 2, ("z", "c", "h"), bias=False), ControllerConfig(L, H, 3, units=8)],
)
def test_batch_equals_looped_controllers(config: ControllerConfig) -> None:
    n, b = 6, 4
    vectors = np.random.default_rng(2).standard_normal((n, config.vector_size)) * 0.1
    g = torch.Generator().manual_seed(2)
    z, h, c = (
        torch.randn(n, b, L, generator=g),
        torch.randn(n, b, H, generator=g),
        torch.randn(n, b, H, generator=g),
    )
    batch = ControllerBatch(config, vectors)
    assert len(batch) == n and batch.weights.shape == (n, config.action, config.units or config.in_features)
    raw = batch.raw(z, h, c)
    assert raw.shape == (n, b, config.action)
    single = Controller(config)
    for i in range(n):
        single.load_vector(vectors[i])
        torch.testing.assert_close(raw[i], single(z[i], h[i], c[i]), atol=1e-6, rtol=0)
    # One state per row, and a subset of rows.
    rows = batch.rows(torch.tensor([4, 1]))
    torch.testing.assert_close(rows.raw_rows(z[[4, 1], 0], h[[4, 1], 0], c[[4, 1], 0]), raw[[4, 1], 0])
    with pytest.raises(ValueError, match=str(config.vector_size)):
        ControllerBatch(config, vectors[:, :-1])
