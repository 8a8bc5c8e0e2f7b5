"""Attention backends: `math` (explicit softmax, the reference) and `sdpa` (torch chooses).

A backend maps q, k, v of shape (B, nh, T, hs) to (B, nh, T, hs), causally. When
`document_ids` (B, T) is given, a query may only attend to keys of its own document
(block-causal masking for packed rows); a backend that cannot do that says so through
`unsupported_reason` instead of silently attending across documents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gocram.models.registry import ATTENTIONS


class AttentionBackend:
    name = "base"
    supports_document_mask = False

    def unsupported_reason(
        self, *, device: torch.device, dtype: torch.dtype, training: bool, document_mask: bool
    ) -> str | None:
        """None if this backend can run with these settings, else a one-line reason."""
        if document_mask and not self.supports_document_mask:
            return f"attention {self.name!r} cannot apply a document mask"
        return None

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        dropout_p: float = 0.0,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


def causal_document_mask(T: int, document_ids: torch.Tensor | None, device) -> torch.Tensor:
    """Boolean mask, True where attention is allowed: (T, T) or (B, 1, T, T) with documents."""
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)
    if document_ids is None:
        return causal
    same_doc = document_ids[:, :, None] == document_ids[:, None, :]  # (B, T, T)
    return (same_doc & causal)[:, None]  # (B, 1, T, T)


class MathAttention(AttentionBackend):
    """softmax(q k^T / sqrt(hs) + mask) v, written out: the reference every backend is tested against."""

    name = "math"
    supports_document_mask = True

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        B, nh, T, hs = q.shape
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        allowed = causal_document_mask(T, document_ids, q.device)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = F.softmax(scores.float(), dim=-1).to(q.dtype)
        if dropout_p > 0.0:
            probs = F.dropout(probs, p=dropout_p)
        return probs @ v  # (B, nh, T, hs)


class SDPAttention(AttentionBackend):
    """torch.nn.functional.scaled_dot_product_attention with is_causal; torch picks the kernel."""

    name = "sdpa"

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        if document_ids is not None:
            raise ValueError(self.unsupported_reason(
                device=q.device, dtype=q.dtype, training=True, document_mask=True))
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


ATTENTIONS.register("math")(MathAttention)
ATTENTIONS.register("sdpa")(SDPAttention)
