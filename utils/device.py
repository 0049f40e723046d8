"""``--device auto|cpu|cuda[:n]`` resolved in one place."""

from __future__ import annotations

import argparse

import torch

from utils.cli import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` takes the first CUDA device when there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise UserError(f"--device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def add_device_flag(parser: argparse.ArgumentParser, default: str, where: str) -> None:
    """``--device``, one definition for every script: the same values and check (:func:`resolve_device`);
    ``where`` says what runs on it, and why its default is what it is."""
    parser.add_argument("--device", default=default, help=f"auto, cpu, cuda or cuda:N: {where}")
