"""C, the controller: one linear layer from what it reads of V and M ([z, h] for CarRacing, [z, c, h] for
the paper's Doom agent) to the env's actions. Its raw outputs become actions through the env spec's
``squash`` (CarRacing: the paper's tanh squashing), applied by whoever drives it.

raw = W [inputs] (+ b), W (action, in_features): 3 x (32 + 256) + 3 = 867 parameters for CarRacing.

CMA-ES searches over flat vectors. The flat order, used by :class:`Controller` and
:class:`ControllerBatch` alike, is W row-major (one row per action; within a row the inputs in their
order, e.g. the L latent columns, then the H hidden columns), then b if there is one:
``vec = [W[0, :], W[1, :], ..., b]`` (the same as ``parameters_to_vector(controller.parameters())``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ControllerConfig:
    """C's shape: ``latent`` z, ``hidden`` h and c sizes, ``action`` outputs, what it reads, its bias."""

    latent: int = 32
    hidden: int = 256
    action: int = 3
    inputs: tuple[str, ...] = ("z", "h")
    bias: bool = True

    @property
    def in_features(self) -> int:
        return sum(self.latent if name == "z" else self.hidden for name in self.inputs)

    @property
    def vector_size(self) -> int:
        """Length of a flat controller vector (867 for CarRacing, 1,088 for the paper's Doom C)."""
        return self.action * self.in_features + (self.action if self.bias else 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControllerConfig:
        """From :meth:`to_dict`; checkpoints written before inputs and bias were recorded read [z, h] + b."""
        return cls(
            latent=int(d["latent"]),
            hidden=int(d["hidden"]),
            action=int(d["action"]),
            inputs=tuple(d.get("inputs", ("z", "h"))),
            bias=bool(d.get("bias", True)),
        )

    def gather(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """C's input: the tensors named in :attr:`inputs`, concatenated along the last dimension."""
        parts = {"z": z, "h": h, "c": c}
        return torch.cat([parts[name] for name in self.inputs], dim=-1)


class ControllerBatch:
    """N controllers as batched tensors, one row per flat vector: what CMA-ES candidates become.

    weights: (N, action, in_features); biases: (N, action) or None.
    """

    def __init__(
        self,
        config: ControllerConfig,
        vectors: np.ndarray | torch.Tensor,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        vectors = torch.as_tensor(vectors).to(device=device, dtype=dtype)
        if vectors.dim() != 2 or vectors.shape[1] != config.vector_size:
            raise ValueError(
                f"expected controller vectors of shape (N, {config.vector_size}), got {tuple(vectors.shape)}"
            )
        n_weights = config.action * config.in_features
        self.config = config
        self.weights = vectors[:, :n_weights].reshape(-1, config.action, config.in_features)
        self.biases = vectors[:, n_weights:] if config.bias else None

    def __len__(self) -> int:
        return self.weights.shape[0]

    def rows(self, index: torch.Tensor) -> ControllerBatch:
        """The controllers of rows ``index`` (no copy of the config)."""
        out = object.__new__(ControllerBatch)
        out.config, out.weights = self.config, self.weights[index]
        out.biases = None if self.biases is None else self.biases[index]
        return out

    def raw(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Raw outputs of each controller on its own batch of B states.

        z: (N, B, L); h, c: (N, B, H). Returns (N, B, action), before the env's squash.
        """
        inputs = self.config.gather(z, h, c)
        if self.biases is None:
            return torch.bmm(inputs, self.weights.transpose(1, 2))
        return torch.baddbmm(self.biases.unsqueeze(1), inputs, self.weights.transpose(1, 2))

    def raw_rows(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Row i's controller on row i's state: z (N, L), h and c (N, H) -> (N, action) raw outputs."""
        return self.raw(z[:, None], h[:, None], c[:, None])[:, 0]


class Controller(nn.Module):
    """One controller as a module, for checkpoints: ``raw = fc([inputs])``."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.layout = config
        self.fc = nn.Linear(config.in_features, config.action, bias=config.bias)

    @property
    def config(self) -> dict[str, Any]:
        """Stored in checkpoints as ``model_config``."""
        return self.layout.to_dict()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Controller:
        return cls(ControllerConfig.from_dict(config))

    @property
    def vector_size(self) -> int:
        return self.layout.vector_size

    def forward(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, L); h, c: (B, H) -> raw outputs (B, action)."""
        return self.fc(self.layout.gather(z, h, c if c is not None else torch.zeros_like(h)))

    def parameters_to_vector(self) -> np.ndarray:
        """Flat float64 copy of the parameters (length :attr:`vector_size`, the module docstring's order)."""
        parts = [self.fc.weight.detach().reshape(-1)]
        if self.fc.bias is not None:
            parts.append(self.fc.bias.detach())
        return torch.cat(parts).cpu().double().numpy()

    @torch.no_grad()
    def load_vector(self, vec: np.ndarray | torch.Tensor) -> None:
        """Set the parameters from a flat vector of length :attr:`vector_size` (the same order)."""
        vec = torch.as_tensor(vec)
        if vec.shape != (self.vector_size,):
            raise ValueError(
                f"expected a flat controller vector of {self.vector_size}, got {tuple(vec.shape)}"
            )
        batch = ControllerBatch(self.layout, vec.unsqueeze(0), self.fc.weight.device, self.fc.weight.dtype)
        self.fc.weight.copy_(batch.weights[0])
        if batch.biases is not None:
            self.fc.bias.copy_(batch.biases[0])
