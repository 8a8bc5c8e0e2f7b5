"""Where the Triton kernels can run, and the input checks every launcher makes before a launch.

Triton kernels run on CUDA, or on the CPU through Triton's interpreter. `triton.jit` picks
interpreted or compiled when a kernel is *defined*, i.e. when its module is imported, from
TRITON_INTERPRET at that moment: so the authority is the kernel object itself, not the
environment now.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from gocram.core.errors import GocramError

# Kernel modules whose kernels must all be runnable for the kernels to count as supported.
KERNEL_MODULES = ("gocram.kernels.layernorm", "gocram.kernels.bias_gelu", "gocram.kernels.cross_entropy")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INTERPRETER_HINT = "set TRITON_INTERPRET=1 before triton is imported to run them on the CPU"


class KernelInputError(GocramError):
    """A kernel was handed input it cannot take (device, layout, width or dtype)."""


def triton_missing() -> str | None:
    """Why triton cannot be imported, or None."""
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return f"triton is not installed ({err})"
    return None


def is_interpreted(kernel: Any) -> bool:
    """Whether a @triton.jit kernel was defined under the interpreter (runs on CPU tensors)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernel, InterpretedFunction)


def unsupported_reason(device: torch.device | str) -> str | None:
    """None when gocram's Triton kernels can run on `device`, else the reason (for result rows)."""
    device = torch.device(device)
    missing = triton_missing()
    if missing:
        return missing
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "needs CUDA: no CUDA device is available"
    if device.type != "cpu":
        return f"Triton kernels run on CUDA or (interpreted) on the CPU, not on {device.type}"
    kernels = [kernel for name in KERNEL_MODULES for kernel in importlib.import_module(name).KERNELS]
    if all(is_interpreted(kernel) for kernel in kernels):
        return None
    now = os.environ.get("TRITON_INTERPRET", "unset")
    return (f"needs CUDA: the kernels were compiled for the GPU (TRITON_INTERPRET is {now}); "
            f"{INTERPRETER_HINT}")


def check_tensors(what: str, kernel: Any, tensors: dict[str, torch.Tensor | None], *,
                  float_only: tuple[str, ...] = ()) -> None:
    """Raise KernelInputError naming the tensor unless each is launchable by `kernel`.

    Launchable: contiguous, on one device that the kernel runs on, and (for the names in
    float_only) fp32, fp16 or bf16. None entries (absent weight or bias) are skipped.
    """
    present = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        found = ", ".join(f"{name} on {t.device}" for name, t in present.items())
        raise KernelInputError(f"{what}: inputs are on different devices ({found})")
    for name, t in present.items():
        if t.device.type not in ("cuda", "cpu"):
            raise KernelInputError(f"{what}: {name} is on {t.device}; Triton kernels run on CUDA "
                                   f"or, interpreted, on the CPU")
        if t.device.type == "cpu" and not is_interpreted(kernel):
            raise KernelInputError(f"{what}: {name} is on the CPU but Triton's interpreter is off; "
                                   f"{INTERPRETER_HINT}, or use the reference")
        if not t.is_contiguous():
            raise KernelInputError(f"{what}: {name} must be contiguous, got shape {tuple(t.shape)} "
                                   f"with strides {t.stride()}")
        if name in float_only and t.dtype not in FLOAT_DTYPES:
            raise KernelInputError(f"{what}: {name} must be fp32, fp16 or bf16, got {t.dtype}")
