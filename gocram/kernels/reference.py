"""Plain-torch twins of the Triton kernels, for tests and benchmarks.

`*_reference`: what each kernel must compute, the way it does (fp32 inside, one cast back to the
output dtype), so a test compares like with like and its tolerance only covers summation order and
the final rounding. (torch's own half-precision LayerNorm backward on CPU is less exact than that.)

`*_torch`: what the model runs without the kernel (gocram.models.layers), in the input dtype: the
baseline the benchmarks time, eager and under torch.compile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gocram.core.tokens import IGNORE_INDEX


def layernorm_reference(
    x: torch.Tensor,  # (..., D)
    weight: torch.Tensor | None,  # (D,)
    bias: torch.Tensor | None,  # (D,)
    eps: float = 1e-5,
) -> torch.Tensor:
    """LayerNorm over the last dim in fp32, returned in x's dtype."""
    width = x.shape[-1]
    y = F.layer_norm(
        x.float(), (width,),
        None if weight is None else weight.float(),
        None if bias is None else bias.float(),
        eps,
    )
    return y.to(x.dtype)


def layernorm_torch(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                    eps: float = 1e-5) -> torch.Tensor:
    """torch's fused LayerNorm in x's dtype, as gocram.models.layers.LayerNorm runs it."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def bias_gelu_reference(
    h: torch.Tensor,  # (..., W)
    bias: torch.Tensor | None,  # (W,)
    approximate: str = "none",
) -> torch.Tensor:
    """GELU(h + bias) in fp32, returned in the dtype torch's promotion gives h + bias."""
    out_dtype = h.dtype if bias is None else torch.promote_types(h.dtype, bias.dtype)
    pre = h.float() if bias is None else h.float() + bias.float()
    return F.gelu(pre, approximate=approximate).to(out_dtype)


def bias_gelu_torch(h: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """GELU(h + bias) as gocram.models.layers.GELU runs it (h + bias is rounded first)."""
    return F.gelu(h if bias is None else h + bias, approximate=approximate)


def linear_cross_entropy_reference(
    hidden: torch.Tensor,  # (N, d)
    weight: torch.Tensor,  # (V, d)
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Full (N, V) logits, then cross-entropy in fp32: the memory the fused loss avoids.

    This is also exactly the model's `cross_entropy` loss, so it doubles as the benchmark baseline.
    """
    logits = hidden @ weight.t()  # (N, V)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction=reduction)
