"""Attention backends, registered in ATTENTIONS by name (see base.py for the contract).

`math` (reference), `sdpa`, `sdpa_flash`, `sdpa_efficient`, `flash_attn`, `xformers`, `flex`.
Importing this package imports none of the optional packages (flash-attn, xformers): each
backend imports its package when first called, and reports a missing one as a reason.
"""

from gocram.models.attention import (  # noqa: F401  (registers the backends)
    flash_attn_pkg,
    flex,
    reference,
    sdpa,
    xformers_pkg,
)
from gocram.models.attention.base import (
    AttentionBackend,
    causal_document_mask,
    cu_seqlens,
    segment_ids,
    segment_starts,
)

__all__ = ["AttentionBackend", "causal_document_mask", "cu_seqlens", "segment_ids", "segment_starts"]
