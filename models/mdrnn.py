"""M, the MDN-RNN: an LSTM over [z_t, a_t] predicting a Gaussian mixture for z_{t+1}, the reward and the end.

Two modules share one set of parameters (a state dict of one loads into the other, strictly):

* :class:`MDRNN` runs whole sequences (training), through ``nn.LSTM`` (cuDNN on a GPU).
* :class:`MDRNNCell` runs one step (control and dreams), through ``torch.lstm_cell`` on the same weights.

Every latent dimension has its own mixture of ``gaussians`` components, as in the paper: the mixture head
outputs ``3 * latent * gaussians`` numbers (480 for 32 x 5). The recurrent state ``(h, c)`` is passed in
and returned as two ``(B, hidden)`` tensors by both modules, so a state from one continues in the other.

Parameter count for the defaults (latent 32, action 3, hidden 256, gaussians 5): 423,906. The paper
reports 422,368 = 4*256*(35+256) + 1024 + 257*480 (TensorFlow's LSTM has one bias vector). PyTorch's LSTM
has two bias vectors (+1024), and we add the reward and termination heads (+2 * 257):
422,368 + 1,024 + 514 = 423,906.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

# sigma = exp(clamp(log_sigma)): a component that collapses onto one training point would drive the NLL
# to -inf; the bounds keep sigma in [4.5e-5, 148] so the loss and its gradients stay finite.
LOG_SIGMA_MIN = -10.0
LOG_SIGMA_MAX = 5.0

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

_M = TypeVar("_M", bound="_MDRNNBase")


class MDRNNOutput(NamedTuple):
    """What :class:`MDRNN` (shapes with ``T``) and :class:`MDRNNCell` (without ``T``) return.

    mus, sigmas, logpi: (B, T, L, G) per-dimension mixture of the next latent; sigmas > 0, logpi is
        log-softmax over G.
    rewards: (B, T) predicted reward (regression).
    terminations: (B, T) logit of the episode ending at this step.
    hidden: the new (h, c), each (B, H).
    """

    mus: torch.Tensor
    sigmas: torch.Tensor
    logpi: torch.Tensor
    rewards: torch.Tensor
    terminations: torch.Tensor
    hidden: tuple[torch.Tensor, torch.Tensor]


class _MDRNNBase(nn.Module):
    """Parameters and output heads shared by :class:`MDRNN` and :class:`MDRNNCell`."""

    def __init__(self, latent: int = 32, action: int = 3, hidden: int = 256, gaussians: int = 5) -> None:
        super().__init__()
        self.latent = latent
        self.action = action
        self.hidden = hidden
        self.gaussians = gaussians
        # Both classes keep nn.LSTM's layout (rnn.weight_ih_l0, ...), so their state dicts are identical;
        # the cell steps those same tensors with torch.lstm_cell.
        self.rnn = nn.LSTM(latent + action, hidden, batch_first=True)
        # Per latent dimension and component: mu, log-sigma, mixture logit.
        self.gmm_linear = nn.Linear(hidden, 3 * latent * gaussians)
        self.reward_linear = nn.Linear(hidden, 1)
        self.termination_linear = nn.Linear(hidden, 1)
        # A death is at most one step of an episode of up to 1000: start the head at that rate, so a
        # briefly trained M does not predict p ~ 0.5 and end every dream at its first step.
        nn.init.constant_(self.termination_linear.bias, -math.log(999.0))

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, stored in checkpoints so later stages rebuild M without flags."""
        return {
            "latent": self.latent,
            "action": self.action,
            "hidden": self.hidden,
            "gaussians": self.gaussians,
        }

    @classmethod
    def from_config(cls: type[_M], config: dict[str, Any]) -> _M:
        """Build a module from :attr:`config` (of either class)."""
        return cls(**{k: int(config[k]) for k in ("latent", "action", "hidden", "gaussians")})

    def acting_state_dict(self) -> dict[str, torch.Tensor]:
        """The LSTM's weights: all an agent acting in a real env needs of M (no mixture, reward or
        termination head)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("rnn.")}

    def initial_hidden(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c), each (batch, H)."""
        h = torch.zeros(batch, self.hidden, device=device, dtype=dtype)
        return h, h.clone()

    def _check_inputs(self, actions: torch.Tensor, latents: torch.Tensor) -> None:
        if actions.shape[-1] != self.action or latents.shape[-1] != self.latent:
            raise ValueError(
                f"expected actions (..., {self.action}) and latents (..., {self.latent}), "
                f"got {tuple(actions.shape)} and {tuple(latents.shape)}"
            )
        if actions.shape[:-1] != latents.shape[:-1]:
            raise ValueError(
                f"actions {tuple(actions.shape)} and latents {tuple(latents.shape)} differ in leading dims"
            )

    def _heads(self, outs: torch.Tensor, gmm: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """LSTM outputs (..., H) -> mus, sigmas, logpi (..., L, G), rewards (...), terminations (...).

        ``gmm``: the mixture head's output when the caller computed it (in lower precision)."""
        gmm = (self.gmm_linear(outs) if gmm is None else gmm).unflatten(-1, (3, self.latent, self.gaussians))
        mus, log_sigmas, logits = gmm.unbind(-3)
        sigmas = log_sigmas.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp()
        logpi = F.log_softmax(logits, dim=-1)
        rewards = self.reward_linear(outs).squeeze(-1)
        terminations = self.termination_linear(outs).squeeze(-1)
        return mus, sigmas, logpi, rewards, terminations


class MDRNN(_MDRNNBase):
    """M over whole sequences, batch first. See the module docstring for the parameter count."""

    def forward(
        self,
        actions: torch.Tensor,
        latents: torch.Tensor,
        hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> MDRNNOutput:
        """Predict, for every step t, the mixture of z_{t+1}, the reward and the termination logit.

        actions: (B, T, A); latents: (B, T, L); hidden: initial (h, c), each (B, H), or None for zeros.
        Returns an :class:`MDRNNOutput`: mus/sigmas/logpi (B, T, L, G), rewards (B, T),
        terminations (B, T), and the final (h, c), each (B, H).
        """
        self._check_inputs(actions, latents)
        if latents.dim() != 3:
            raise ValueError(f"MDRNN expects (B, T, {self.latent}) latents, got {tuple(latents.shape)}")
        if hidden is None:
            hidden = self.initial_hidden(latents.shape[0], latents.device, latents.dtype)
        h0, c0 = hidden
        outs, (h, c) = self.rnn(torch.cat([latents, actions], dim=-1), (h0.unsqueeze(0), c0.unsqueeze(0)))
        return MDRNNOutput(*self._heads(outs), (h.squeeze(0), c.squeeze(0)))


class MDRNNCell(_MDRNNBase):
    """M for one step at a time; same parameters, names and outputs as :class:`MDRNN`."""

    def forward(
        self,
        action: torch.Tensor,
        latent: torch.Tensor,
        hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
        matmul_dtype: torch.dtype | None = None,
    ) -> MDRNNOutput:
        """One step. action: (B, A); latent: (B, L); hidden: (h, c), each (B, H), or None for zeros.

        ``matmul_dtype`` (e.g. bfloat16) runs the three large matrix products in that type, the state,
        gates and outputs staying float32: ~2x faster on hardware with native bf16, for dreams.
        Returns an :class:`MDRNNOutput`: mus/sigmas/logpi (B, L, G), rewards (B,), terminations (B,),
        and the new (h, c), each (B, H).
        """
        self._check_inputs(action, latent)
        if latent.dim() != 2:
            raise ValueError(f"MDRNNCell expects (B, {self.latent}) latents, got {tuple(latent.shape)}")
        if hidden is None:
            hidden = self.initial_hidden(latent.shape[0], latent.device, latent.dtype)
        if matmul_dtype is None or matmul_dtype == latent.dtype:
            h, c = self.recurrent_step(action, latent, hidden)
            return MDRNNOutput(*self._heads(h), (h, c))
        w_ih, w_hh, w_gmm = self._low_precision_weights(matmul_dtype)
        rnn, dt = self.rnn, matmul_dtype
        x = torch.cat([latent, action], dim=-1)
        gates = (x.to(dt) @ w_ih.T + hidden[0].to(dt) @ w_hh.T).float() + rnn.bias_ih_l0 + rnn.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)  # PyTorch's gate order
        c = torch.sigmoid(f) * hidden[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        gmm = (h.to(dt) @ w_gmm.T).float() + self.gmm_linear.bias
        return MDRNNOutput(*self._heads(h, gmm), (h, c))

    def _low_precision_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``dtype`` copies of the LSTM's and the mixture head's weights, made once (a dreaming cell is
        not trained)."""
        cached = getattr(self, "_low_precision", None)
        if cached is None or cached[0] != dtype:
            weights = (self.rnn.weight_ih_l0, self.rnn.weight_hh_l0, self.gmm_linear.weight)
            self._low_precision = (dtype, *(w.detach().to(dtype) for w in weights))
        return self._low_precision[1:]

    def recurrent_step(
        self, action: torch.Tensor, latent: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM step alone, (B, A), (B, L), ((B, H), (B, H)) -> new (h, c): what the controller needs
        when acting in the real environment, where the mixture, reward and termination heads go unused."""
        rnn = self.rnn
        # The same kernel nn.LSTMCell uses, fed nn.LSTM's weights (~10x less overhead than a 1-step nn.LSTM).
        return torch.lstm_cell(
            torch.cat([latent, action], dim=-1),
            hidden,
            rnn.weight_ih_l0,
            rnn.weight_hh_l0,
            rnn.bias_ih_l0,
            rnn.bias_hh_l0,
        )


def gmm_loss(
    batch: torch.Tensor,
    mus: torch.Tensor,
    sigmas: torch.Tensor,
    logpi: torch.Tensor,
    reduce: bool = True,
) -> torch.Tensor:
    """Negative log-likelihood of ``batch`` under per-dimension Gaussian mixtures, summed over L.

    batch: (..., L); mus, sigmas, logpi: (..., L, G), logpi normalised over G.
    Returns the NLL of each whole latent vector, (...), or its mean over all leading dims if ``reduce``.

    Computed in log space (logsumexp over G): far from every mean each component's density underflows
    float32 to 0, and a sum of exps would give an infinite loss and NaN gradients.
    """
    batch = batch.unsqueeze(-1)
    normal_log_prob = -0.5 * ((batch - mus) / sigmas) ** 2 - sigmas.log() - _LOG_SQRT_2PI
    log_prob = torch.logsumexp(logpi + normal_log_prob, dim=-1).sum(dim=-1)
    nll = -log_prob
    return nll.mean() if reduce else nll


def sample_latent(
    mus: torch.Tensor,
    sigmas: torch.Tensor,
    logpi: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample a latent from per-dimension mixtures with the paper's temperature tau.

    mus, sigmas, logpi: (..., L, G). Returns (..., L). Each dimension picks its component from
    softmax(logpi / tau), then z = mu + sigma * sqrt(tau) * eps. tau = 0 is the limit: the most likely
    component's mean, with no randomness. ``generator`` must live on the tensors' device.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        index = logpi.argmax(dim=-1, keepdim=True)
        return mus.gather(-1, index).squeeze(-1)
    # The component by inverse CDF: one uniform per dimension against the cumulative probabilities,
    # ~5x faster than torch.multinomial on the (rows x latent) small categoricals of a batched dream.
    cdf = F.softmax(logpi / temperature, dim=-1).cumsum(dim=-1)
    u = torch.rand(cdf.shape[:-1], generator=generator, device=cdf.device, dtype=cdf.dtype).unsqueeze(-1)
    index = (cdf < u).sum(dim=-1, keepdim=True).clamp_(max=logpi.shape[-1] - 1)  # clamp: rounding of cdf[-1]
    mu = mus.gather(-1, index).squeeze(-1)
    sigma = sigmas.gather(-1, index).squeeze(-1)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + sigma * math.sqrt(temperature) * eps
