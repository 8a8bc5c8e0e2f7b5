"""`flex`: torch's flex_attention with a block mask (causal, or block-causal per document).

The block mask lets the kernel skip whole tiles above the diagonal and across documents. On CUDA
flex_attention is compiled once (eager flex_attention is a slow unfused reference). On CPU, torch
2.13 runs it forward only: backward raises NotImplementedError, so training on CPU is refused with
that reason; the eager (unfused) path is used there, which is fine for evaluation but not a fast path.
flex_attention has no dropout.
"""

from __future__ import annotations

import importlib.util
from functools import cache

import torch

from gocram.models.attention.base import AttentionBackend, segment_ids

FLEX_MODULE = "torch.nn.attention.flex_attention"


@cache
def _flex_attention(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


class _BlockMasks:
    """Block masks reused across layers and steps.

    Causal masks depend only on (T, device): kept for good (token dropping alternates between a
    few lengths). A document mask depends on the batch: every layer of one forward gets the same
    document_ids tensor, so the last one is kept, keyed on that tensor and its version counter.
    """

    def __init__(self) -> None:
        self.causal: dict[tuple[int, str], object] = {}
        self.last_key: tuple | None = None
        self.last_ids: torch.Tensor | None = None
        self.last_mask = None

    def get(self, T: int, document_ids: torch.Tensor | None, device: torch.device):
        from torch.nn.attention.flex_attention import create_block_mask

        if document_ids is None:
            key = (T, str(device))
            if key not in self.causal:
                def allowed(b, h, q_idx, kv_idx):
                    return q_idx >= kv_idx

                self.causal[key] = create_block_mask(allowed, None, None, T, T, device=device)
            return self.causal[key]
        key = (T, str(device), document_ids._version)
        if self.last_ids is document_ids and self.last_key == key:
            return self.last_mask
        seg = segment_ids(document_ids)  # (B, T)

        def allowed(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (seg[b, q_idx] == seg[b, kv_idx])

        mask = create_block_mask(allowed, seg.shape[0], None, T, T, device=device)
        self.last_key, self.last_ids, self.last_mask = key, document_ids, mask
        return mask


_block_masks = _BlockMasks()


class FlexAttention(AttentionBackend):
    name = "flex"
    supports_document_mask = True

    def device_reason(self, *, device, dtype, training, document_mask, dropout, head_size):
        if importlib.util.find_spec(FLEX_MODULE) is None:
            return f"torch {torch.__version__} has no {FLEX_MODULE}"
        if device.type not in ("cpu", "cuda"):
            return f"flex_attention runs on CPU or CUDA, not {device.type}"
        if training and device.type == "cpu":
            return (f"torch {torch.__version__}'s flex_attention has no backward on CPU "
                    "(forward only: evaluation works, training does not)")
        if dropout:
            return "flex_attention has no attention dropout (set model.dropout=0)"
        return None

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        if dropout_p > 0.0:
            raise ValueError("flex_attention has no attention dropout (set model.dropout=0)")
        block_mask = _block_masks.get(q.shape[2], document_ids, q.device)
        return _flex_attention(q.device.type)(q, k, v, block_mask=block_mask)  # (B, nh, T, hs)
