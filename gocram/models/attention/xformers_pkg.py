"""`xformers`: xformers.ops.memory_efficient_attention, imported only when a run uses it.

Unpacked rows use a LowerTriangularMask; packed rows are flattened into one long row of
documents with a BlockDiagonalCausalMask built from the documents' lengths.
"""

from __future__ import annotations

import torch

from gocram.models.attention.base import (
    AttentionBackend,
    cu_seqlens,
    dtype_reason,
    missing_package_reason,
)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class XFormersAttention(AttentionBackend):
    name = "xformers"
    supports_document_mask = True

    def device_reason(self, *, device, dtype, training, document_mask, dropout, head_size):
        missing = missing_package_reason("xformers", "xformers")
        if missing:
            return missing
        if device.type != "cuda":
            return f"xformers' memory_efficient_attention has no {device.type} kernels, only CUDA"
        return dtype_reason(dtype, DTYPES, "xformers")

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        from xformers.ops import LowerTriangularMask, memory_efficient_attention
        from xformers.ops.fmha.attn_bias import BlockDiagonalCausalMask

        B, nh, T, hs = q.shape
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # each (B, T, nh, hs)
        if document_ids is None:
            out = memory_efficient_attention(q, k, v, attn_bias=LowerTriangularMask(), p=dropout_p)
        else:
            lengths = cu_seqlens(document_ids).diff().tolist()  # the mask is built on the host
            bias = BlockDiagonalCausalMask.from_seqlens(lengths)
            flat = [t.reshape(1, B * T, nh, hs) for t in (q, k, v)]  # each (1, B*T, nh, hs)
            out = memory_efficient_attention(*flat, attn_bias=bias, p=dropout_p).view(B, T, nh, hs)
        return out.transpose(1, 2)  # (B, nh, T, hs)
