"""Plain-torch twins of the Triton kernels: what each kernel must compute, for tests and benchmarks.

Each twin computes the way its kernel does (fp32 inside, one cast back to the output dtype), so a
test compares like with like and the tolerance only has to cover summation order and the final
rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gocram.models.registry import IGNORE_INDEX


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


def gelu_reference(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return F.gelu(x, approximate=approximate)


def bias_gelu_reference(
    h: torch.Tensor,  # (..., W)
    bias: torch.Tensor | None,  # (W,)
    approximate: str = "none",
) -> torch.Tensor:
    """GELU(h + bias) in fp32, returned in the dtype torch's promotion gives h + bias."""
    out_dtype = h.dtype if bias is None else torch.promote_types(h.dtype, bias.dtype)
    pre = h.float() if bias is None else h.float() + bias.float()
    return F.gelu(pre, approximate=approximate).to(out_dtype)


def linear_cross_entropy_reference(
    hidden: torch.Tensor,  # (N, d)
    weight: torch.Tensor,  # (V, d)
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Full (N, V) logits, then cross-entropy in fp32: the memory the fused loss avoids."""
    logits = hidden @ weight.t()  # (N, V)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction=reduction)
