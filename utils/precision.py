"""``--precision`` and ``--memory-format`` resolved in one place: the numerics a model trains with.

``auto`` picks the fastest numerics measured to leave the VAE's loss curve unchanged: bf16 autocast
where the hardware computes bf16 natively (CUDA with bf16 support; CPUs with AVX-512 BF16 or AMX),
fp32 elsewhere (without native support oneDNN emulates bf16 and it is many times slower than fp32);
channels_last on CPU always, and on CUDA with bf16. V on CUDA is the exception (``auto_bf16_on_cuda``
False): on an H100 its training ran at 0.77-0.79x of fp32 under bf16 autocast (bench/bench_vae.py,
batches 32 and 128; trainvae.py's epochs alike): the model is too small for bf16's faster products
to pay for the casts, and cuDNN's fp32 convolutions already use TF32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache

import torch

PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when oneDNN supports bf16 here and the CPU advertises AVX-512 BF16 or AMX BF16 (Linux)."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except (OSError, AttributeError, RuntimeError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Numerics:
    """Autocast dtype (None: plain fp32) and memory format of a model's training."""

    device_type: str
    dtype: torch.dtype | None
    memory_format: torch.memory_format

    def autocast(self):
        """Context of the forward pass; compute the loss outside it."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        dtype = "bf16 autocast" if self.dtype is torch.bfloat16 else "fp32"
        layout = "channels_last" if self.memory_format is torch.channels_last else "contiguous"
        return f"{dtype}, {layout}"


def resolve_numerics(
    precision: str, memory_format: str, device: torch.device, *, auto_bf16_on_cuda: bool = True
) -> Numerics:
    """``precision`` in :data:`PRECISIONS`, ``memory_format`` in :data:`MEMORY_FORMATS`; with
    ``auto_bf16_on_cuda`` False, ``auto`` means fp32 on CUDA (V: the module docstring)."""
    if device.type == "cuda":
        native = auto_bf16_on_cuda and torch.cuda.is_bf16_supported()
    else:
        native = cpu_has_native_bf16()
    bf16 = precision == "bf16" or (precision == "auto" and native)
    if memory_format == "auto":
        channels_last = device.type == "cpu" or bf16
    else:
        channels_last = memory_format == "channels_last"
    return Numerics(
        device_type=device.type,
        dtype=torch.bfloat16 if bf16 else None,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
    )
