"""V: shapes and contracts of the VAE, its loss against references, frames_to_tensor, load_vae."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from experiment.logdir import load_vae
from models.vae import VAE, frames_to_tensor, vae_loss
from utils.cli import UserError


def test_shapes_and_parameter_count():
    vae = VAE()
    assert sum(p.numel() for p in vae.parameters()) == 4_348_547
    x = torch.rand(5, 3, 64, 64)
    mu, logsigma = vae.encode(x)
    assert mu.shape == logsigma.shape == (5, 32)
    assert vae.decode(mu).shape == (5, 3, 64, 64)
    recon, mu, logsigma = vae(x)
    assert recon.shape == x.shape and mu.shape == (5, 32)
    assert 0 < recon.min() and recon.max() < 1


def test_config_roundtrip_and_other_latent():
    vae = VAE(latent=8)
    assert vae.config == {"latent": 8}
    clone = VAE.from_config(vae.config)
    clone.load_state_dict(vae.state_dict())
    assert clone.encode(torch.rand(2, 3, 64, 64))[0].shape == (2, 8)


def test_encode_does_not_run_the_decoder():
    vae = VAE()
    calls = []
    for module in (vae.fc_dec, vae.dec1, vae.dec2, vae.dec3, vae.dec4):
        module.register_forward_hook(lambda *a: calls.append(1))
    vae.encode(torch.rand(2, 3, 64, 64))
    assert calls == []
    vae(torch.rand(2, 3, 64, 64))
    assert len(calls) == 5


def test_loss_against_references():
    torch.manual_seed(0)
    b, latent = 6, 32
    x, recon = torch.rand(b, 3, 64, 64), torch.rand(b, 3, 64, 64)
    mu, logsigma = 2 * torch.randn(b, latent), torch.randn(b, latent)
    loss, recon_loss, kl = vae_loss(recon, x, mu, logsigma, kl_tolerance=0.5)
    ref_kl = kl_divergence(Normal(mu, logsigma.exp()), Normal(0.0, 1.0)).sum(1)
    ref_recon = ((recon - x) ** 2).sum(dim=(1, 2, 3))
    assert ref_kl.min() > 16  # above the floor: the loss is the plain ELBO
    torch.testing.assert_close(kl, ref_kl.mean())
    torch.testing.assert_close(recon_loss, ref_recon.mean())
    torch.testing.assert_close(loss, (ref_recon + ref_kl).mean())


def test_loss_weights_each_pixels_squared_error():
    """``weights`` scale each pixel's squared error (all three channels); weights of 1 are the plain loss."""
    torch.manual_seed(1)
    b, latent = 3, 32
    x, recon = torch.rand(b, 3, 64, 64), torch.rand(b, 3, 64, 64)
    mu, logsigma = torch.randn(b, latent), torch.randn(b, latent)
    weights = 1 + 9 * (torch.rand(b, 1, 64, 64) < 0.05).float()
    loss, recon_loss, kl = vae_loss(recon, x, mu, logsigma, 0.5, weights)
    ref_recon = (weights.expand(b, 3, 64, 64) * (recon - x) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(recon_loss, ref_recon.mean())
    plain = vae_loss(recon, x, mu, logsigma, 0.5)
    torch.testing.assert_close(loss - recon_loss, plain[0] - plain[1])  # the KL term is untouched
    ones = vae_loss(recon, x, mu, logsigma, 0.5, torch.ones(b, 1, 64, 64))
    torch.testing.assert_close(ones, plain)


def test_kl_floor_is_per_sample_and_stops_gradients():
    b, latent = 4, 32
    x = recon = torch.full((b, 3, 64, 64), 0.5)
    mu = torch.zeros(b, latent, requires_grad=True)
    logsigma = torch.zeros(b, latent)
    with torch.no_grad():
        mu[0] = 2.0  # sample 0: KL = 0.5 * 32 * 4 = 64 nats, above the 16-nat floor; the rest are at 0
    loss, recon_loss, kl = vae_loss(recon, x, mu, logsigma, kl_tolerance=0.5)
    assert recon_loss.item() == 0
    assert kl.item() == pytest.approx(64 / 4)
    assert loss.item() == pytest.approx((64 + 3 * 16) / 4)
    loss.backward()
    assert mu.grad[1:].abs().max() == 0  # below the floor: no gradient
    torch.testing.assert_close(mu.grad[0], torch.full((latent,), 2.0 / b))
    plain, _, _ = vae_loss(recon, x, mu, logsigma, kl_tolerance=0.0)
    assert plain.item() == pytest.approx(64 / 4)


def test_frames_to_tensor():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    x = frames_to_tensor(frames, "cpu")
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(frames_to_tensor(torch.from_numpy(frames), "cpu"), x)
    with pytest.raises(ValueError):
        frames_to_tensor(frames.astype(np.float32), "cpu")


def test_load_vae_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match=r"no VAE checkpoint at .*best\.tar: run trainvae\.py --logdir"):
        load_vae(tmp_path / "nowhere", "cpu")


def test_auto_precision_falls_back_to_fp32_without_native_bf16(monkeypatch):
    import utils.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    auto = precision.resolve_numerics("auto", "auto", cpu)
    assert auto.dtype is None and auto.memory_format is torch.channels_last
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_numerics("auto", "auto", cpu).dtype is torch.bfloat16
    assert precision.resolve_numerics("fp32", "contiguous", cpu).memory_format is torch.contiguous_format


def test_auto_precision_of_v_on_cuda_is_fp32(monkeypatch):
    import utils.precision as precision

    cuda = torch.device("cuda")  # resolving touches no GPU: only whether it has bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    v = precision.resolve_numerics("auto", "auto", cuda, auto_bf16_on_cuda=False)
    assert v.dtype is None and v.memory_format is torch.contiguous_format
    dream = precision.resolve_numerics("auto", "contiguous", cuda)  # M's dream keeps bf16 there
    assert dream.dtype is torch.bfloat16
    forced = precision.resolve_numerics("bf16", "auto", cuda, auto_bf16_on_cuda=False)
    assert forced.dtype is torch.bfloat16 and forced.memory_format is torch.channels_last


def test_bf16_autocast_loss_close_to_fp32():
    import utils.precision as precision

    torch.manual_seed(0)
    vae = VAE().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    results = []
    for name in ("fp32", "bf16"):
        numerics = precision.resolve_numerics(name, "channels_last", torch.device("cpu"))
        torch.manual_seed(1)
        with numerics.autocast():
            recon, mu, logsigma = vae(x)
        assert recon.dtype == mu.dtype == torch.float32  # the loss is always computed in fp32
        results.append(vae_loss(recon, x, mu, logsigma)[0].item())
    assert results[1] == pytest.approx(results[0], rel=1e-2)
