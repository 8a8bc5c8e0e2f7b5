"""Plain-torch norms, activations and losses: the reference entries of the registries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gocram.core.tokens import IGNORE_INDEX


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's cannot drop only the bias before 2.1)."""

    def __init__(self, d_model: int, *, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm (no centring, no bias); `bias` is accepted for a uniform builder signature."""

    def __init__(self, d_model: int, *, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        del bias
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class BiasActivation(nn.Module):
    """act(h + bias): the bias of the MLP's first projection lives here (see registry.py)."""

    def __init__(self, width: int, *, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.activation(h if self.bias is None else h + self.bias)


class GELU(BiasActivation):
    """Exact (erf) GELU."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h)


class GELUTanh(BiasActivation):
    """GELU with the tanh approximation (GPT-2's)."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h, approximate="tanh")


class ReLU(BiasActivation):
    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h)


class ReLU2(BiasActivation):
    """ReLU squared (Primer; modded-nanogpt's MLP): sparse like ReLU, smooth at 0."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h).square()


class SiLU(BiasActivation):
    """x * sigmoid(x): with model.mlp=gated this is SwiGLU."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.silu(h)


def softcap_logits(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap) (Gemma 2, modded-nanogpt): logits stay within (-cap, cap); 0 = off."""
    if not cap:
        return logits
    return cap * torch.tanh(logits / cap)


def cross_entropy_loss():
    """The reference loss: full logits, then torch's cross-entropy in fp32."""

    def loss(
        hidden: torch.Tensor,  # (N, d)
        weight: torch.Tensor,  # (V, d)
        targets: torch.Tensor,  # (N,)
        *,
        reduction: str = "mean",
        softcap: float = 0.0,
    ) -> torch.Tensor:
        logits = softcap_logits((hidden @ weight.t()).float(), softcap)  # (N, V)
        return F.cross_entropy(
            logits.float(), targets, ignore_index=IGNORE_INDEX, reduction=reduction
        )

    return loss
