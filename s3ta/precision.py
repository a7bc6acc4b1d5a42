"""Number formats of the arithmetic: fp32, or bf16 under autocast (weights, optimizer state and the
loss stay fp32), and whether this machine runs bf16 natively. Training and acting share it.
"""

from __future__ import annotations

import contextlib
import platform
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (AVX-512 BF16, AMX) and aarch64 (FEAT_BF16)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo ("flags" on x86, "Features" on ARM); None where the
    file does not exist (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


@lru_cache(maxsize=None)
def bf16_support(device_type: str) -> tuple[bool, str]:
    """(whether ``device_type`` runs bf16 arithmetic natively, the reason in words). On CPU both
    oneDNN's bf16 kernels and a CPU flag for bf16 instructions are needed: without the instructions
    oneDNN emulates bf16, which is slower than fp32. Where the flags cannot be read, oneDNN decides."""
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device"
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name()} supports bf16"
        return False, f"{torch.cuda.get_device_name()} has no native bf16 (compute capability below 8.0)"
    if device_type != "cpu":
        return False, f"no bf16 check for device type {device_type!r}"
    try:
        onednn = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    if not onednn:
        return False, "this torch build's oneDNN has no bf16 kernels for this CPU"
    flags = cpu_flags()
    if flags is None:
        return True, f"oneDNN supports bf16 on this {platform.machine()} CPU (its flags cannot be read)"
    native = sorted(flags & NATIVE_BF16_FLAGS)
    if native:
        return True, f"the CPU has {', '.join(native)}"
    return False, "the CPU has no bf16 instructions (no avx512_bf16, amx_bf16 or bf16 flag)"


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision to use for ``precision`` on ``device`` and a one-line note when it falls back to
    fp32 (None otherwise)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return "fp32", None
    supported, reason = bf16_support(device.type)
    if supported:
        return "bf16", None
    return "fp32", f"bf16 was asked for but {reason}: training in fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The forward pass's context: bf16 autocast (convolutions and matmuls in bf16, fp32 weights) or
    nothing for fp32. Backward passes run outside it, as torch recommends."""
    device_type = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(reference: torch.Tensor) -> contextlib.AbstractContextManager:
    """Turn autocast off for a block on ``reference``'s device: for the small, precision-sensitive
    parts of a bf16 forward pass (attention logits and softmax, policy and baseline heads)."""
    return torch.autocast(reference.device.type, enabled=False)


def compute_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype that convolutions on ``reference``'s device compute in: the autocast dtype while
    autocast is on there, else ``reference``'s (a weight's) dtype. Inputs made in it need no cast."""
    device_type = reference.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return reference.dtype


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32 if it is in a 16-bit format, unchanged otherwise (fp32, or fp64 in tests)."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
