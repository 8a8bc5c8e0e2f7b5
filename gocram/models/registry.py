"""String-keyed registries of model parts.

The model never imports a kernel directly: it asks a registry for a builder by name. Entries that
live in optional or heavy modules (Triton kernels, flash-attn) are registered *lazily* with an
import path, so importing gocram never imports them and a missing package becomes a reason,
not an ImportError at start-up.

Contracts (what a builder returns):
- NORMS[name](d_model, *, bias, eps) -> nn.Module mapping (..., d) -> (..., d).
- ACTIVATIONS[name](width, *, bias) -> nn.Module owning the MLP's first bias:
  forward(h) = act(h + bias) for h of shape (..., width). Owning the bias lets a fused
  bias+activation kernel replace both at once.
- ATTENTIONS[name]() -> an AttentionBackend (see attention.py).
- LOSSES[name]() -> callable(hidden (N, d), weight (V, d), targets (N,), *, reduction)
  -> fp32 scalar; targets equal to IGNORE_INDEX are skipped. Taking hidden states and the output
  weight (not logits) lets a fused loss avoid materialising (N, V) fp32 logits.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from gocram.errors import ConfigError

IGNORE_INDEX = -1


class Registry:
    """Name -> builder. `register` for eager entries, `register_lazy` for 'module:attr' paths."""

    def __init__(self, kind: str):
        self.kind = kind
        self._eager: dict[str, Callable[..., Any]] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._check_free(name)
            self._eager[name] = builder
            return builder

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """Register `target` ('package.module:attribute'), imported on first use."""
        self._check_free(name)
        self._lazy[name] = target

    def _check_free(self, name: str) -> None:
        if name in self._eager or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def names(self) -> list[str]:
        return sorted([*self._eager, *self._lazy])

    def __contains__(self, name: str) -> bool:
        return name in self._eager or name in self._lazy

    def get(self, name: str) -> Callable[..., Any]:
        if name in self._eager:
            return self._eager[name]
        if name in self._lazy:
            module_name, _, attr = self._lazy[name].partition(":")
            builder = getattr(importlib.import_module(module_name), attr)
            self._eager[name] = builder
            del self._lazy[name]
            return builder
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown {self.kind} {name!r}{hint}; choose one of {self.names()}")

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)


NORMS = Registry("norm")
ACTIVATIONS = Registry("activation")
ATTENTIONS = Registry("attention")
LOSSES = Registry("loss")


def _register_builtin_parts() -> None:
    # Imported for their @register side effects; kept here so `registry` is the one entry point.
    from gocram.models import attention, layers  # noqa: F401


_register_builtin_parts()

# Triton kernels (gocram/kernels): imported on first use, so gocram imports without triton.
NORMS.register_lazy("triton_layernorm", "gocram.kernels.layernorm:TritonLayerNorm")
ACTIVATIONS.register_lazy("triton_bias_gelu", "gocram.kernels.bias_gelu:TritonBiasGELU")
ACTIVATIONS.register_lazy("triton_bias_gelu_tanh", "gocram.kernels.bias_gelu:TritonBiasGELUTanh")
LOSSES.register_lazy("fused_cross_entropy", "gocram.kernels.cross_entropy:fused_cross_entropy")
