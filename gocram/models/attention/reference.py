"""`math`: the attention written out, the reference every other backend is tested against."""

from __future__ import annotations

import math

import torch.nn.functional as F

from gocram.models.attention.base import AttentionBackend, causal_document_mask


class MathAttention(AttentionBackend):
    """softmax(q k^T / sqrt(hs) + mask) v in fp32 softmax; memory grows as T^2 (the scores)."""

    name = "math"
    supports_document_mask = True

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        B, nh, T, hs = q.shape
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        allowed = causal_document_mask(T, document_ids, q.device)  # (T, T) or (B, 1, T, T)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = F.softmax(scores.float(), dim=-1).to(q.dtype)
        if dropout_p > 0.0:
            probs = F.dropout(probs, p=dropout_p)
        return probs @ v  # (B, nh, T, hs)
