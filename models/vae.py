"""V: the paper's convolutional VAE on 64x64 RGB frames, its loss, and loading it from a checkpoint.

Encoder: conv 32, 64, 128, 256 (kernel 4, stride 2, ReLU) -> 2x2x256 = 1024 -> mu, logsigma (latent).
Decoder: dense latent -> 1024 (linear), seen as 1024x1x1, deconv 128, 64, 32, 3 (kernels 5, 5, 6, 6,
stride 2, ReLU; sigmoid out). 4,348,547 parameters at latent 32.

With ``labels`` K > 0, V also has a state head: a linear map from mu to K labels of the simulator's
state, standardised by the training frames' mean and spread (kept as buffers), trained beside the loss
(``trainvae.py --label-weight``) so that z holds what the labels say. Training only: acting, M and C
never run it.

Later stages rebuild V from its checkpoint (experiment/logdir.py); the latent size comes from the
checkpoint's ``model_config``, never from a flag.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class VAE(nn.Module):
    """Convolutional VAE; ``latent`` is the size of z (32 in the paper), ``labels`` the size of the state
    head (0: none)."""

    def __init__(self, latent: int = 32, labels: int = 0):
        super().__init__()
        self.latent, self.labels = latent, labels
        self.enc1 = nn.Conv2d(3, 32, 4, stride=2)
        self.enc2 = nn.Conv2d(32, 64, 4, stride=2)
        self.enc3 = nn.Conv2d(64, 128, 4, stride=2)
        self.enc4 = nn.Conv2d(128, 256, 4, stride=2)
        self.fc_mu = nn.Linear(2 * 2 * 256, latent)
        self.fc_logsigma = nn.Linear(2 * 2 * 256, latent)
        self.fc_dec = nn.Linear(latent, 1024)
        self.dec1 = nn.ConvTranspose2d(1024, 128, 5, stride=2)
        self.dec2 = nn.ConvTranspose2d(128, 64, 5, stride=2)
        self.dec3 = nn.ConvTranspose2d(64, 32, 6, stride=2)
        self.dec4 = nn.ConvTranspose2d(32, 3, 6, stride=2)
        if labels:
            self.fc_label = nn.Linear(latent, labels)
            self.register_buffer("label_mean", torch.zeros(labels))
            self.register_buffer("label_std", torch.ones(labels))

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, stored in checkpoints as ``model_config``."""
        return {"latent": self.latent, **({"labels": self.labels} if self.labels else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        return cls(**config)

    def acting_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights :meth:`encode` uses, the only part of V an agent acting in an env needs."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("enc", "fc_mu.", "fc_logsigma."))}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) float in [0, 1] -> mu, logsigma, each (B, latent) float32. Runs no decoder."""
        h = F.relu(self.enc1(x))
        h = F.relu(self.enc2(h))
        h = F.relu(self.enc3(h))
        h = F.relu(self.enc4(h))
        h = h.flatten(1)  # (B, 256, 2, 2) -> (B, 1024)
        # float(): under bf16 autocast the latent statistics (and the KL and z drawn from them) stay fp32
        return self.fc_mu(h).float(), self.fc_logsigma(h).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, 3, 64, 64) float32 in (0, 1)."""
        h = self.fc_dec(z)[:, :, None, None]  # (B, 1024, 1, 1)
        h = F.relu(self.dec1(h))
        h = F.relu(self.dec2(h))
        h = F.relu(self.dec3(h))
        return torch.sigmoid(self.dec4(h).float())

    def label_error(self, mu: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) the state head's squared error on ``labels`` (B, K), standardised, summed over the K."""
        target = (labels.float() - self.label_mean) / self.label_std
        return (self.fc_label(mu.float()) - target).pow(2).sum(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) -> recon (B, 3, 64, 64), mu (B, latent), logsigma (B, latent); z is sampled."""
        mu, logsigma = self.encode(x)
        z = mu + logsigma.exp() * torch.randn_like(mu)
        return self.decode(z), mu, logsigma


def vae_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    kl_tolerance: float = 0.5,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's loss, averaged over the batch: summed squared error + max(KL, kl_tolerance * latent).

    Args:
        recon, x: (B, 3, 64, 64) in [0, 1].
        mu, logsigma: (B, latent), the posterior N(mu, exp(logsigma)^2).
        kl_tolerance: free bits per latent dimension; the KL of each image is floored at
            ``kl_tolerance * latent`` nats (0.5 * 32 = 16 in the paper), so below the floor it gives no
            gradient.
        weights: (B, 1, 64, 64), what each pixel's squared error counts (all three channels); None: 1.
    Returns:
        (loss, recon_loss, kl), scalars; ``recon_loss`` is weighted as the loss is; ``kl`` is the mean KL
        before the floor.
    """
    error = (recon.float() - x.float()).pow(2)
    if weights is not None:
        error = error * weights
    recon_loss = error.flatten(1).sum(1)  # (B,)
    mu, logsigma = mu.float(), logsigma.float()
    # KL(N(mu, sigma^2) || N(0, 1)) = 0.5 * sum(mu^2 + sigma^2 - 1 - 2 log sigma)
    kl = 0.5 * (mu.pow(2) + (2 * logsigma).exp() - 1 - 2 * logsigma).sum(1)  # (B,)
    floored = kl.clamp(min=kl_tolerance * mu.shape[1])
    return (recon_loss + floored).mean(), recon_loss.mean(), kl.mean()


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 frames (B, 64, 64, 3) -> float (B, 3, 64, 64) in [0, 1] on ``device``, contiguous NCHW.

    The uint8 batch is moved first (4x less to copy to a GPU than floats). The result is contiguous in
    the default layout: at the small batches of acting and encoding, a channels_last input to a model
    in the default layout runs the encoder ~2x slower on CPU (measured: 6.5 vs 2.8 ms at batch 4);
    trainvae.py converts to its own memory format.
    """
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (B, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    device = torch.device(device)
    if device.type == "cuda":
        frames = frames.pin_memory().to(device, non_blocking=True)
    return frames.to(device).permute(0, 3, 1, 2).float().div_(255).contiguous()
