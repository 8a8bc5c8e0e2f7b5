"""`flash_attn`: the flash-attn package (FlashAttention-2), imported only when a run uses it.

Unpacked rows go through flash_attn_func (causal); packed rows through flash_attn_varlen_func,
which takes the batch flattened to (B*T, nh, hs) plus the documents' offsets (cu_seqlens), so
no T x T mask is ever built and memory stays linear in T.
"""

from __future__ import annotations

import torch

from gocram.models.attention.base import (
    AttentionBackend,
    cu_seqlens,
    dtype_reason,
    missing_package_reason,
)

HALF_DTYPES = (torch.float16, torch.bfloat16)
MAX_HEAD_SIZE = 256  # FlashAttention-2's largest head dimension


class FlashAttnAttention(AttentionBackend):
    name = "flash_attn"
    supports_document_mask = True

    def device_reason(self, *, device, dtype, training, document_mask, dropout, head_size):
        missing = missing_package_reason("flash_attn", "flash-attn")
        if missing:
            return missing
        if device.type != "cuda":
            return f"flash-attn has kernels for CUDA only, not {device.type}"
        if head_size is not None and head_size > MAX_HEAD_SIZE:
            return f"flash-attn supports head sizes up to {MAX_HEAD_SIZE}, not {head_size}"
        return dtype_reason(dtype, HALF_DTYPES, "flash-attn")

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        from flash_attn import flash_attn_func, flash_attn_varlen_func

        B, nh, T, hs = q.shape
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # each (B, T, nh, hs)
        if document_ids is None:
            out = flash_attn_func(q, k, v, dropout_p=dropout_p, causal=True)  # (B, T, nh, hs)
        else:
            offsets = cu_seqlens(document_ids)  # (n_docs + 1,) int32
            flat = [t.reshape(B * T, nh, hs) for t in (q, k, v)]  # each (B*T, nh, hs)
            # T bounds every document's length; passing it avoids a device sync for the true max.
            out = flash_attn_varlen_func(
                *flat, cu_seqlens_q=offsets, cu_seqlens_k=offsets, max_seqlen_q=T, max_seqlen_k=T,
                dropout_p=dropout_p, causal=True,
            ).view(B, T, nh, hs)  # (B, T, nh, hs)
        return out.transpose(1, 2)  # (B, nh, T, hs)
