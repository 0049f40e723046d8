"""C, the controller: one linear layer from [z, h] to CarRacing's three actions, squashed as in the paper.

a = squash(W [z, h] + b) with W (3, L + H) and b (3,): 867 parameters for L = 32, H = 256.

CMA-ES searches over flat vectors. The flat order, used by :meth:`Controller.parameters_to_vector`,
:meth:`Controller.load_vector` and :func:`unflatten_controller_vectors`, is W row-major (row 0 steer,
row 1 gas, row 2 brake; within a row the L latent columns, then the H hidden columns), then b:
``vec = [W[0, :], W[1, :], W[2, :], b[0], b[1], b[2]]`` (the same as
``torch.nn.utils.parameters_to_vector(controller.parameters())``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

ACTIONS = 3  # CarRacing: steer in [-1, 1], gas in [0, 1], brake in [0, 1]


def squash_actions(raw: torch.Tensor) -> torch.Tensor:
    """Map raw outputs (..., 3) into CarRacing's action box (..., 3), as the paper's controller did.

    Steering tanh, gas (tanh + 1) / 2, brake clip(tanh, 0, 1). CarRacing does not clip continuous actions
    itself, so raw values would drive it outside its intended range.
    """
    if raw.shape[-1] != ACTIONS:
        raise ValueError(f"squash_actions expects (..., {ACTIONS}) raw actions, got {tuple(raw.shape)}")
    t = torch.tanh(raw)
    steer, gas, brake = t.unbind(-1)
    return torch.stack([steer, (gas + 1.0) / 2.0, brake.clamp(0.0, 1.0)], dim=-1)


def controller_vector_size(latent: int = 32, hidden: int = 256, action: int = ACTIONS) -> int:
    """Length of a flat controller vector: action * (latent + hidden) + action (867 by default)."""
    return action * (latent + hidden) + action


def unflatten_controller_vectors(
    vectors: np.ndarray | torch.Tensor,
    latent: int = 32,
    hidden: int = 256,
    action: int = ACTIONS,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split N flat vectors (N, P) into weights (N, action, latent + hidden) and biases (N, action).

    Same order as :meth:`Controller.load_vector` (see the module docstring).
    """
    vectors = torch.as_tensor(vectors).to(device=device, dtype=dtype)
    size = controller_vector_size(latent, hidden, action)
    if vectors.dim() != 2 or vectors.shape[1] != size:
        raise ValueError(f"expected controller vectors of shape (N, {size}), got {tuple(vectors.shape)}")
    n_weights = action * (latent + hidden)
    weights = vectors[:, :n_weights].reshape(-1, action, latent + hidden)
    biases = vectors[:, n_weights:]
    return weights, biases


def batched_controller_actions(
    weights: torch.Tensor, biases: torch.Tensor, z: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    """Actions of N controllers at once, each on its own batch of B states.

    weights: (N, 3, L + H); biases: (N, 3); z: (N, B, L); h: (N, B, H). Returns squashed (N, B, 3).
    Equal to looping :class:`Controller` over the N candidates, in one batched matmul.
    """
    inputs = torch.cat([z, h], dim=-1)
    raw = torch.baddbmm(biases.unsqueeze(1), inputs, weights.transpose(1, 2))
    return squash_actions(raw)


class Controller(nn.Module):
    """C: a = squash(W [z, h] + b). 867 parameters for latent 32, hidden 256, 3 actions."""

    def __init__(self, latent: int = 32, hidden: int = 256, action: int = ACTIONS) -> None:
        super().__init__()
        if action != ACTIONS:
            raise ValueError(f"the controller squashes CarRacing's {ACTIONS} actions; got action={action}")
        self.latent = latent
        self.hidden = hidden
        self.action = action
        self.fc = nn.Linear(latent + hidden, action)

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, stored in checkpoints."""
        return {"latent": self.latent, "hidden": self.hidden, "action": self.action}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Controller:
        """Build a controller from :attr:`config`."""
        return cls(**{k: int(config[k]) for k in ("latent", "hidden", "action")})

    @property
    def vector_size(self) -> int:
        """Length of the flat parameter vector (867 by default)."""
        return controller_vector_size(self.latent, self.hidden, self.action)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z: (B, L); h: (B, H) -> squashed actions (B, 3): steer, gas, brake."""
        return squash_actions(self.fc(torch.cat([z, h], dim=-1)))

    def parameters_to_vector(self) -> np.ndarray:
        """Flat float64 copy of the parameters (length :attr:`vector_size`, the module docstring's order)."""
        flat = torch.cat([self.fc.weight.detach().reshape(-1), self.fc.bias.detach()])
        return flat.cpu().double().numpy()

    @torch.no_grad()
    def load_vector(self, vec: np.ndarray | torch.Tensor) -> None:
        """Set the parameters from a flat vector of length :attr:`vector_size` (the same order)."""
        vec = torch.as_tensor(vec)
        if vec.shape != (self.vector_size,):
            raise ValueError(
                f"expected a flat controller vector of {self.vector_size}, got {tuple(vec.shape)}"
            )
        weights, biases = unflatten_controller_vectors(
            vec.unsqueeze(0),
            self.latent,
            self.hidden,
            self.action,
            self.fc.weight.dtype,
            self.fc.weight.device,
        )
        self.fc.weight.copy_(weights[0])
        self.fc.bias.copy_(biases[0])
