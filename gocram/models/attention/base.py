"""The attention backend contract, document-mask helpers and the 'can it run here?' machinery.

A backend maps q, k, v of shape (B, nh, T, hs) to (B, nh, T, hs), causally. When
`document_ids` (B, T) is given, a query may only attend to earlier keys of its own document
(block-causal masking for packed rows). A document is a contiguous run of equal ids in a row:
the packer writes one id per document, and a repeated id after another one starts a new document,
so that the dense-mask backends and the varlen ones (which only see run lengths) agree.

A backend that cannot run somewhere says so through `unsupported_reason` instead of failing
mid-run or silently attending across documents.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from functools import cache

import torch


class AttentionBackend:
    name = "base"
    # Whether the backend can apply a document mask on *some* device: a backend without it is
    # rejected when the config is built; device-dependent limits come from unsupported_reason.
    supports_document_mask = False
    no_document_mask_why = "it only knows the plain causal mask"

    def unsupported_reason(
        self,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
        training: bool,
        document_mask: bool,
        dropout: bool = False,
        head_size: int | None = None,
    ) -> str | None:
        """None if this backend can run with these settings, else a one-line reason."""
        if document_mask and not self.supports_document_mask:
            return f"attention {self.name!r} cannot apply a document mask: {self.no_document_mask_why}"
        return self.device_reason(
            device=torch.device(device), dtype=dtype, training=training,
            document_mask=document_mask, dropout=dropout, head_size=head_size,
        )

    def device_reason(
        self, *, device: torch.device, dtype: torch.dtype, training: bool, document_mask: bool,
        dropout: bool, head_size: int | None,
    ) -> str | None:
        """Limits that depend on where and how it runs; backends override this."""
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


# -- documents -------------------------------------------------------------------------------------

def segment_starts(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True where a document starts: every row's first token and every id change."""
    starts = torch.ones_like(document_ids, dtype=torch.bool)  # (B, T)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    return starts


def segment_ids(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) int64 document numbers, unique across the whole batch (row breaks start one too)."""
    starts = segment_starts(document_ids)  # (B, T)
    return starts.flatten().cumsum(0).view_as(document_ids) - 1  # (B, T)


def cu_seqlens(document_ids: torch.Tensor) -> torch.Tensor:
    """int32 (n_docs + 1,) offsets of each document in the flattened (B*T) batch, for varlen kernels."""
    starts = segment_starts(document_ids).flatten().nonzero().squeeze(1)  # (n_docs,)
    end = torch.tensor([document_ids.numel()], device=document_ids.device)
    return torch.cat([starts, end]).to(torch.int32)


def causal_document_mask(T: int, document_ids: torch.Tensor | None, device) -> torch.Tensor:
    """Boolean mask, True where attention is allowed: (T, T), or (B, 1, T, T) with documents."""
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)
    if document_ids is None:
        return causal
    seg = segment_ids(document_ids)  # (B, T)
    same_doc = seg[:, :, None] == seg[:, None, :]  # (B, T, T)
    return (same_doc & causal)[:, None]  # (B, 1, T, T)


# -- reasons ---------------------------------------------------------------------------------------

def missing_package_reason(module: str, pip_name: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"the {pip_name} package is not installed (pip install {pip_name}; it needs CUDA)"
    return None


def dtype_reason(dtype: torch.dtype, allowed: tuple[torch.dtype, ...], where: str) -> str | None:
    if dtype in allowed:
        return None
    names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
    return f"{where} supports {names}, not {str(dtype).removeprefix('torch.')}"


_TRIGGERED = re.compile(r"\s*\(Triggered internally at .*\)\s*$", re.S)


@cache
def probe_reason(backend_name: str, device: str, dtype: torch.dtype, training: bool,
                 document_mask: bool, dropout: bool, head_size: int) -> str | None:
    """Run the backend once on tiny inputs; the failure (with torch's own hints) is the reason.

    Used where torch decides at run time (forced SDPA kernels), so the reason is what this torch
    on this device really does rather than a table that goes stale.
    """
    from gocram.models.parts import ATTENTIONS

    backend = ATTENTIONS.build(backend_name)
    # Probing must not move the run's random state (dropout draws from it).
    cuda_devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T = 8
        q, k, v = (torch.randn(1, 2, T, head_size, device=device, dtype=dtype, requires_grad=training)
                   for _ in range(3))
        docs = (torch.tensor([[0] * (T // 2) + [1] * (T - T // 2)], device=device)
                if document_mask else None)
        try:
            out = backend(q, k, v, dropout_p=0.1 if dropout else 0.0, document_ids=docs)
            if training:
                out.sum().backward()
            return None
        except (RuntimeError, NotImplementedError, ValueError) as err:
            hints = [_TRIGGERED.sub("", str(w.message)) for w in caught]
            hints = [h.strip() for h in hints if h.strip() and not h.strip().endswith("because:")]
            detail = "; ".join(dict.fromkeys(hints)) or str(err).split(". ")[0].splitlines()[0]
            what = f"{str(dtype).removeprefix('torch.')}, head size {head_size}"
            what += ", training" if training else ", forward only"
            what += ", document mask" if document_mask else ""
            what += ", dropout" if dropout else ""
            return f"torch {torch.__version__} cannot run {backend_name} on {device} ({what}): {detail}"
