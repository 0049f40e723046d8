"""M: shapes, MDRNN/MDRNNCell equivalence, gmm_loss against torch.distributions, sampling temperature."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from models.mdrnn import MDRNN, MDRNNCell, gmm_loss, sample_latent

L, A, H, G = 32, 3, 256, 5


def _inputs(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, A, generator=g), torch.randn(b, t, L, generator=g)


def test_parameter_count_matches_paper_plus_our_extras() -> None:
    # Paper: 4*256*(35+256) + 1024 + 257*480 = 422,368 (TensorFlow's LSTM has one bias vector).
    # Ours adds PyTorch's second LSTM bias (+1024) and the reward and termination heads (+2*257).
    paper = 4 * 256 * (35 + 256) + 1024 + 257 * 480
    assert paper == 422_368
    for cls in (MDRNN, MDRNNCell):
        n = sum(p.numel() for p in cls().parameters())
        assert n == paper + 1024 + 2 * 257 == 423_906


def test_forward_shapes_and_output_contracts() -> None:
    torch.manual_seed(0)
    m = MDRNN()
    actions, latents = _inputs(4, 7)
    out = m(actions, latents)
    for x in (out.mus, out.sigmas, out.logpi):
        assert x.shape == (4, 7, L, G)
    assert out.rewards.shape == out.terminations.shape == (4, 7)
    assert out.hidden[0].shape == out.hidden[1].shape == (4, H)
    assert (out.sigmas > 0).all()
    torch.testing.assert_close(out.logpi.logsumexp(-1), torch.zeros(4, 7, L), atol=1e-5, rtol=0)
    # Each latent dimension has its own mixture weights (the earlier port shared one set across L).
    assert not torch.allclose(out.logpi[..., 0, :], out.logpi[..., 1, :])

    cell = MDRNNCell()
    step = cell(actions[:, 0], latents[:, 0])
    for x in (step.mus, step.sigmas, step.logpi):
        assert x.shape == (4, L, G)
    assert step.rewards.shape == step.terminations.shape == (4,)
    assert step.hidden[0].shape == step.hidden[1].shape == (4, H)


def test_cell_and_sequence_share_parameters_and_outputs() -> None:
    torch.manual_seed(1)
    m = MDRNN()
    cell = MDRNNCell()
    assert set(m.state_dict()) == set(cell.state_dict())
    cell.load_state_dict(m.state_dict(), strict=True)
    MDRNN().load_state_dict(cell.state_dict(), strict=True)

    actions, latents = _inputs(3, 6, seed=1)
    h0 = (torch.randn(3, H), torch.randn(3, H))
    seq = m(actions, latents, h0)
    hidden = h0
    for t in range(actions.shape[1]):
        step = cell(actions[:, t], latents[:, t], hidden)
        for name in ("mus", "sigmas", "logpi", "rewards", "terminations"):
            torch.testing.assert_close(getattr(step, name), getattr(seq, name)[:, t], atol=1e-5, rtol=0)
        hidden = step.hidden
    for a, b in zip(hidden, seq.hidden, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_hidden_carries_across_calls() -> None:
    torch.manual_seed(2)
    m = MDRNN()
    actions, latents = _inputs(2, 8, seed=2)
    full = m(actions, latents)
    first = m(actions[:, :5], latents[:, :5])
    second = m(actions[:, 5:], latents[:, 5:], first.hidden)
    torch.testing.assert_close(second.mus, full.mus[:, 5:], atol=1e-5, rtol=0)
    torch.testing.assert_close(second.hidden[1], full.hidden[1], atol=1e-5, rtol=0)


def test_config_round_trip() -> None:
    m = MDRNN(latent=4, action=2, hidden=8, gaussians=3)
    assert m.config == {"latent": 4, "action": 2, "hidden": 8, "gaussians": 3}
    cell = MDRNNCell.from_config(m.config)
    assert isinstance(cell, MDRNNCell)
    cell.load_state_dict(m.state_dict(), strict=True)
    out = cell(torch.zeros(5, 2), torch.zeros(5, 4))
    assert out.mus.shape == (5, 4, 3)


def _reference_nll(batch, mus, sigmas, logpi) -> torch.Tensor:
    mixture = MixtureSameFamily(Categorical(logits=logpi), Normal(mus, sigmas))
    return -mixture.log_prob(batch).sum(-1)


@pytest.mark.parametrize("lead", [(), (7,), (3, 5), (2, 3, 4)])
def test_gmm_loss_matches_torch_distributions(lead: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(len(lead))
    latent, gaussians = 6, 4
    batch = torch.randn(*lead, latent, generator=g, dtype=torch.float64)
    mus = torch.randn(*lead, latent, gaussians, generator=g, dtype=torch.float64)
    sigmas = torch.rand(*lead, latent, gaussians, generator=g, dtype=torch.float64) + 0.1
    logpi = torch.log_softmax(torch.randn(*lead, latent, gaussians, generator=g, dtype=torch.float64), -1)
    expected = _reference_nll(batch, mus, sigmas, logpi)
    per_sample = gmm_loss(batch, mus, sigmas, logpi, reduce=False)
    assert per_sample.shape == lead
    torch.testing.assert_close(per_sample, expected)
    torch.testing.assert_close(gmm_loss(batch, mus, sigmas, logpi), expected.mean())


def test_gmm_loss_stays_finite_where_naive_exp_underflows() -> None:
    g = torch.Generator().manual_seed(3)
    latent, gaussians = 8, 5
    batch = torch.full((10, latent), 60.0)  # ~60 sigmas from every mean: each density underflows float32
    mus = torch.randn(10, latent, gaussians, generator=g)
    sigmas = torch.rand(10, latent, gaussians, generator=g) * 0.5 + 0.5
    logpi = torch.log_softmax(torch.randn(10, latent, gaussians, generator=g) * 5, -1)

    naive = -(logpi.exp() * Normal(mus, sigmas).log_prob(batch.unsqueeze(-1)).exp()).sum(-1).log().sum(-1)
    assert torch.isinf(naive).all()  # the case really is extreme

    loss = gmm_loss(batch, mus, sigmas, logpi, reduce=False)
    expected = _reference_nll(batch.double(), mus.double(), sigmas.double(), logpi.double())
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=0)

    mus.requires_grad_(True)
    gmm_loss(batch, mus, sigmas, logpi).backward()
    assert torch.isfinite(mus.grad).all()


def test_gmm_loss_of_model_outputs_backpropagates() -> None:
    torch.manual_seed(4)
    m = MDRNN(latent=4, action=2, hidden=8, gaussians=3)
    actions, latents = torch.randn(2, 5, 2), torch.randn(2, 5, 4)
    out = m(actions, latents)
    gmm_loss(latents, out.mus, out.sigmas, out.logpi).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.gmm_linear.parameters())


def _mixture(gaussians: int, latent: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mus = torch.randn(latent, gaussians, generator=g) * 3
    sigmas = torch.rand(latent, gaussians, generator=g) + 0.2
    logpi = torch.log_softmax(torch.randn(latent, gaussians, generator=g), -1)
    return mus, sigmas, logpi


def test_sample_latent_is_deterministic_with_a_generator() -> None:
    mus, sigmas, logpi = _mixture(5)
    a = sample_latent(mus, sigmas, logpi, 1.15, torch.Generator().manual_seed(7))
    b = sample_latent(mus, sigmas, logpi, 1.15, torch.Generator().manual_seed(7))
    c = sample_latent(mus, sigmas, logpi, 1.15, torch.Generator().manual_seed(8))
    assert a.shape == (4,)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


def test_sample_latent_zero_temperature_is_most_likely_mean() -> None:
    mus, sigmas, logpi = _mixture(5)
    z = sample_latent(mus, sigmas, logpi, 0.0)
    expected = mus[torch.arange(4), logpi.argmax(-1)]
    torch.testing.assert_close(z, expected, atol=0, rtol=0)
    # And the limit is continuous: a tiny temperature lands next to it.
    z_small = sample_latent(mus, sigmas, logpi, 1e-6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z_small, expected, atol=1e-2, rtol=0)


def test_sample_latent_spread_grows_with_temperature() -> None:
    n = 4000
    mus, sigmas, logpi = (x.expand(n, -1, -1) for x in _mixture(5, seed=1))
    variances = []
    for tau in (0.3, 1.0, 2.0):
        z = sample_latent(mus, sigmas, logpi, tau, torch.Generator().manual_seed(0))
        assert z.shape == (n, 4)
        variances.append(z.var(0).mean().item())
    assert variances[0] < variances[1] < variances[2]


def test_sample_latent_component_frequencies_follow_tempered_softmax() -> None:
    n, tau = 20000, 0.5
    mus = torch.tensor([[-10.0, 0.0, 10.0]]).expand(n, 1, 3)
    sigmas = torch.full((n, 1, 3), 1e-3)
    logpi = torch.log_softmax(torch.tensor([[0.0, 0.5, 1.0]]), -1).expand(n, 1, 3)
    z = sample_latent(mus, sigmas, logpi, tau, torch.Generator().manual_seed(0)).squeeze(-1)
    observed = torch.stack([(z - m).abs().lt(1).float().mean() for m in (-10.0, 0.0, 10.0)])
    expected = torch.softmax(logpi[0, 0] / tau, -1)
    # Binomial standard error at n = 20000 is <= 0.0036; 0.015 is > 4 of them.
    torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


@pytest.mark.parametrize("tau", [0.25, 1.0, 1.15])
def test_sample_latent_single_component_matches_normal(tau: float) -> None:
    n = 20000
    mu, sigma = torch.tensor([1.5, -2.0]), torch.tensor([0.5, 2.0])
    mus = mu.view(1, 2, 1).expand(n, 2, 1)
    sigmas = sigma.view(1, 2, 1).expand(n, 2, 1)
    logpi = torch.zeros(n, 2, 1)
    z = sample_latent(mus, sigmas, logpi, tau, torch.Generator().manual_seed(1))
    std = sigma * math.sqrt(tau)
    # Mean: 5 standard errors; std: relative standard error of a sample std is ~1/sqrt(2n) = 0.005.
    torch.testing.assert_close(z.mean(0), mu, atol=(5 * std / math.sqrt(n)).max().item(), rtol=0)
    torch.testing.assert_close(z.std(0), std, rtol=0.025, atol=0)


def test_sample_latent_rejects_negative_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        sample_latent(*_mixture(2), temperature=-0.1)


def test_low_precision_step_is_the_same_lstm() -> None:
    """The dream's fast path (its own gate arithmetic around lower-precision products) is nn.LSTM's step:
    exact up to float32 rounding when the products run in float32 on a float64 cell, and within bf16
    rounding when they run in bfloat16."""
    torch.manual_seed(0)
    cell = MDRNNCell(latent=8, action=1, hidden=32, gaussians=3).eval().double()
    a, z = torch.rand(5, 1).double(), torch.randn(5, 8).double()
    hidden = (torch.randn(5, 32).double(), torch.randn(5, 32).double())
    with torch.no_grad():
        ref = cell(a, z, hidden)
        fast = cell(a, z, hidden, matmul_dtype=torch.float32)
        torch.testing.assert_close(fast.hidden[1].double(), ref.hidden[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(fast.mus.double(), ref.mus, atol=1e-6, rtol=0)
        cell = cell.float()
        ref = cell(a.float(), z.float(), (hidden[0].float(), hidden[1].float()))
        low = cell(a.float(), z.float(), (hidden[0].float(), hidden[1].float()), matmul_dtype=torch.bfloat16)
    assert low.hidden[0].dtype == torch.float32 and low.mus.dtype == torch.float32
    torch.testing.assert_close(low.hidden[0], ref.hidden[0], atol=2e-2, rtol=0)
    torch.testing.assert_close(low.logpi, ref.logpi, atol=5e-2, rtol=0)
