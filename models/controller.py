"""C, the controller: one linear layer from what it reads of V and M ([z, h] for CarRacing, [z, c, h] for
the paper's Doom agent) to the env's actions. Its raw outputs become actions through the env spec's
``squash`` (CarRacing: the paper's tanh squashing), applied by whoever drives it.

raw = W [inputs] (+ b), W (action, in_features): 3 x (32 + 256) + 3 = 867 parameters for CarRacing.

With ``units`` > 0, C has a hidden layer first: raw = W tanh(U [inputs] + u) (+ b), U (units,
in_features), W (action, units). Such a C is fitted (scripts/probe_socnav.py --units --save-c), not
searched: its parameters (18,691 for 64 units on [z, h] of 32 + 256) are too many for CMA-ES's covariance.

CMA-ES searches over flat vectors. The flat order, used by :class:`Controller` and
:class:`ControllerBatch` alike, is W row-major (one row per action; within a row the inputs in their
order, e.g. the L latent columns, then the H hidden columns), then b if there is one:
``vec = [W[0, :], W[1, :], ..., b]`` (the same as ``parameters_to_vector(controller.parameters())``).
With a hidden layer, U row-major and u come first: ``vec = [U[0, :], ..., u, W[0, :], ..., b]``.
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
    """C's shape: ``latent`` z, ``hidden`` h and c sizes, ``action`` outputs, what it reads, its bias, and
    the ``units`` of its hidden tanh layer (0: none, the paper's linear C)."""

    latent: int = 32
    hidden: int = 256
    action: int = 3
    inputs: tuple[str, ...] = ("z", "h")
    bias: bool = True
    units: int = 0

    @property
    def in_features(self) -> int:
        return sum(self.latent if name == "z" else self.hidden for name in self.inputs)

    @property
    def vector_size(self) -> int:
        """Length of a flat controller vector (867 for CarRacing, 1,088 for the paper's Doom C)."""
        return (
            self.layer_size
            + self.action * (self.units or self.in_features)
            + (self.action if self.bias else 0)
        )

    @property
    def layer_size(self) -> int:
        """Parameters of the hidden layer (U and u; 0 without one), first in the flat vector."""
        return self.units * (self.in_features + 1)

    def to_dict(self) -> dict[str, Any]:
        """As stored in checkpoints; ``units`` only where there is a hidden layer, so that a linear C's
        checkpoint reads as it always did."""
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        if not self.units:
            del d["units"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControllerConfig:
        """From :meth:`to_dict`; checkpoints written before inputs and bias were recorded read [z, h] + b,
        those before a hidden layer could be, none."""
        return cls(
            latent=int(d["latent"]),
            hidden=int(d["hidden"]),
            action=int(d["action"]),
            inputs=tuple(d.get("inputs", ("z", "h"))),
            bias=bool(d.get("bias", True)),
            units=int(d.get("units", 0)),
        )

    def gather(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """C's input: the tensors named in :attr:`inputs`, concatenated along the last dimension."""
        parts = {"z": z, "h": h, "c": c}
        return torch.cat([parts[name] for name in self.inputs], dim=-1)


class ControllerBatch:
    """N controllers as batched tensors, one row per flat vector: what CMA-ES candidates become.

    weights: (N, action, in_features, or units with a hidden layer); biases: (N, action) or None; the
    hidden layer's layer_weights (N, units, in_features) and layer_biases (N, units), or None without one.
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
        self.config, self.layer_weights, self.layer_biases = config, None, None
        if config.units:
            n_layer = config.units * config.in_features
            self.layer_weights = vectors[:, :n_layer].reshape(-1, config.units, config.in_features)
            self.layer_biases = vectors[:, n_layer : config.layer_size]
        width = config.units or config.in_features
        n_weights = config.layer_size + config.action * width
        self.weights = vectors[:, config.layer_size : n_weights].reshape(-1, config.action, width)
        self.biases = vectors[:, n_weights:] if config.bias else None

    def __len__(self) -> int:
        return self.weights.shape[0]

    def rows(self, index: torch.Tensor) -> ControllerBatch:
        """The controllers of rows ``index`` (no copy of the config)."""
        out = object.__new__(ControllerBatch)
        out.config, out.weights = self.config, self.weights[index]
        out.biases = None if self.biases is None else self.biases[index]
        out.layer_weights = None if self.layer_weights is None else self.layer_weights[index]
        out.layer_biases = None if self.layer_biases is None else self.layer_biases[index]
        return out

    def raw(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Raw outputs of each controller on its own batch of B states.

        z: (N, B, L); h, c: (N, B, H). Returns (N, B, action), before the env's squash.
        """
        inputs = self.config.gather(z, h, c)
        if self.layer_weights is not None:
            inputs = torch.tanh(
                torch.baddbmm(self.layer_biases.unsqueeze(1), inputs, self.layer_weights.transpose(1, 2))
            )
        if self.biases is None:
            return torch.bmm(inputs, self.weights.transpose(1, 2))
        return torch.baddbmm(self.biases.unsqueeze(1), inputs, self.weights.transpose(1, 2))

    def raw_rows(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Row i's controller on row i's state: z (N, L), h and c (N, H) -> (N, action) raw outputs."""
        return self.raw(z[:, None], h[:, None], c[:, None])[:, 0]


class Controller(nn.Module):
    """One controller as a module, for checkpoints: ``raw = fc([inputs])``, or with a hidden layer
    ``raw = fc(tanh(layer([inputs])))``."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.layout = config
        self.layer = nn.Linear(config.in_features, config.units) if config.units else None
        self.fc = nn.Linear(config.units or config.in_features, config.action, bias=config.bias)

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
        inputs = self.layout.gather(z, h, c if c is not None else torch.zeros_like(h))
        return self.fc(inputs if self.layer is None else torch.tanh(self.layer(inputs)))

    def parameters_to_vector(self) -> np.ndarray:
        """Flat float64 copy of the parameters (length :attr:`vector_size`, the module docstring's order)."""
        layers = [self.fc] if self.layer is None else [self.layer, self.fc]
        parts = [
            p.detach().reshape(-1) for layer in layers for p in (layer.weight, layer.bias) if p is not None
        ]
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
        if self.layer is not None:
            self.layer.weight.copy_(batch.layer_weights[0])
            self.layer.bias.copy_(batch.layer_biases[0])
