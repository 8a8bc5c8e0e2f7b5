"""torch's scaled_dot_product_attention: `sdpa` (torch picks a kernel) and two forced kernels.

`sdpa_flash` and `sdpa_efficient` pin one kernel through torch.nn.attention.sdpa_kernel, so a run
measures that kernel or fails up front with torch's reason instead of silently falling back to
the math kernel. Which kernel exists where is decided by torch at run time, so their reasons
come from a probe call (base.probe_reason), not from a table.

Observed with torch 2.13 on CPU: the flash kernel runs forward and backward in fp32/bf16/fp16,
with a boolean attn_mask (so document masks work) but without dropout; the memory-efficient
kernel does not exist. On CUDA the flash kernel takes no attn_mask (packed rows need
`sdpa_efficient`, `flash_attn`, `xformers` or `flex`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gocram.models.attention.base import AttentionBackend, causal_document_mask, probe_reason

PROBE_HEAD_SIZE = 64  # when the caller does not say; the model's own head size is better


class SDPAttention(AttentionBackend):
    """scaled_dot_product_attention with is_causal: torch picks flash, efficient, cuDNN or math."""

    name = "sdpa"
    no_document_mask_why = ("it runs is_causal only; use sdpa_flash (CPU), sdpa_efficient, "
                            "flash_attn, xformers, flex or math for packed rows")

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        if document_ids is not None:
            raise ValueError(self.unsupported_reason(
                device=q.device, dtype=q.dtype, training=True, document_mask=True))
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


class ForcedSDPAttention(AttentionBackend):
    """SDPA restricted to one kernel; a document mask goes in as a dense boolean attn_mask."""

    kernel: SDPBackend
    supports_document_mask = True

    def device_reason(self, *, device, dtype, training, document_mask, dropout, head_size):
        if device.type not in ("cpu", "cuda"):
            return f"attention {self.name!r} runs on CPU or CUDA, not {device.type}"
        return probe_reason(self.name, str(device), dtype, training, document_mask, dropout,
                            head_size or PROBE_HEAD_SIZE)

    def __call__(self, q, k, v, *, dropout_p=0.0, document_ids=None):
        with sdpa_kernel(self.kernel):
            if document_ids is None:
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            # The boolean (B, 1, T, T) mask is T^2 bytes per row: the kernel stays linear in T,
            # the mask does not.
            allowed = causal_document_mask(q.shape[2], document_ids, q.device)  # (B, 1, T, T)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)


class SDPAFlash(ForcedSDPAttention):
    name = "sdpa_flash"
    kernel = SDPBackend.FLASH_ATTENTION


class SDPAEfficient(ForcedSDPAttention):
    name = "sdpa_efficient"
    kernel = SDPBackend.EFFICIENT_ATTENTION
