"""What the gradient-trained stages (V, M) share: early stopping, the plateau schedule, full-state
checkpoints and their restoration."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch


class EarlyStopping:
    """Stop after ``patience`` epochs without a new best (lower) test loss."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, loss: float) -> bool:
        """Record an epoch's test loss; True when it is a new best."""
        if loss < self.best:
            self.best, self.bad_epochs = loss, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


def plateau_scheduler(
    optimizer: torch.optim.Optimizer, patience: int = 5, factor: float = 0.5
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Halve the learning rate after ``patience`` epochs without improvement of the test loss."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch random states, saved so a resumed run continues the same streams."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    early: EarlyStopping,
    epoch: int,
    **extra: Any,
) -> dict[str, Any]:
    """The full checkpoint of an epoch: everything :func:`resume` restores, plus ``extra`` keys."""
    return {
        "model": model.state_dict(),
        "model_config": model.config,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "early_stopping": early.state_dict(),
        "epoch": epoch,
        "best_loss": early.best,
        "rng": rng_state(),
        **extra,
    }


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    early: EarlyStopping,
) -> int:
    """Load a :func:`training_state` checkpoint into the live objects; returns the epoch to run next.

    The optimizer's state (learning rate included) comes from the checkpoint; the early-stopping
    patience stays the one given now, so it can be changed on resume.
    """
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    early.load_state_dict(ckpt["early_stopping"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1
