"""Chunked linear + cross-entropy in plain torch: no (N, V) fp32 logits for the whole batch.

The reference (`layers.cross_entropy_loss`) builds the logits of every row in fp32, keeps them for
the backward and then builds their gradient, another (N, V) fp32 tensor. Here the rows are cut
into chunks; for each chunk the forward computes the (n, V) logits, their log-sum-exp and loss,
turns the logits in place into dloss/dlogits and multiplies that into this chunk's dhidden and its
share of dweight (Liger-Kernel's fused-linear-cross-entropy, without a kernel). The backward only
scales the saved gradients by the upstream gradient. Peak extra memory: one chunk of logits, plus
dhidden (N, d) and dweight (V, d). The Triton version (gocram/kernels/cross_entropy.py) does the
same with a fused softmax kernel, for CUDA.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from gocram.core.tokens import IGNORE_INDEX

REDUCTIONS = ("mean", "sum")
# fp32 logits held at once by default (a chunk of rows x the vocabulary): small enough to stay in
# cache-sized pieces, large enough that each chunk's matmuls stay efficient.
DEFAULT_CHUNK_ELEMENTS = 1 << 21


def default_chunk_rows(n_rows: int, vocab: int) -> int:
    return max(1, min(n_rows, DEFAULT_CHUNK_ELEMENTS // max(vocab, 1)))


def chunked_forward(
    hidden: torch.Tensor,  # (N, d)
    weight: torch.Tensor,  # (V, d)
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str,
    compute_dtype: torch.dtype,
    chunk_rows: int,
    want_grads: bool,
    softcap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss fp32 scalar, dhidden (N, d) in compute_dtype, dweight (V, d) fp32) for a unit upstream
    gradient; the gradients are None without want_grads. With `softcap`, the logits are
    softcap * tanh(logits / softcap) (model.logit_softcap), as in layers.softcap_logits."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"chunked_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    n_rows, width = hidden.shape
    vocab = weight.shape[0]
    h = hidden.to(compute_dtype)  # (N, d)
    w = weight.to(compute_dtype)  # (V, d)
    valid = targets != IGNORE_INDEX  # (N,)
    # 'mean' divides by the non-ignored rows of the whole batch (none of them gives nan, as torch).
    scale = 1.0 / valid.sum().float() if reduction == "mean" else torch.ones((), device=hidden.device)
    safe_targets = torch.where(valid, targets, 0)  # (N,) a gatherable index on ignored rows
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    dhidden = torch.empty_like(h) if want_grads else None  # (N, d)
    dweight = torch.zeros(vocab, width, device=hidden.device, dtype=torch.float32) if want_grads else None
    for start in range(0, n_rows, chunk_rows):
        end = min(start + chunk_rows, n_rows)
        h_chunk, chunk_valid = h[start:end], valid[start:end]  # (n, d), (n,)
        chunk_targets = safe_targets[start:end, None]  # (n, 1)
        logits = (h_chunk @ w.t()).float()  # (n, V) fp32, as the reference's logits.float()
        if softcap:
            squashed = torch.tanh(logits / softcap)  # (n, V)
            logits = squashed * softcap  # (n, V)
        lse = torch.logsumexp(logits, dim=1)  # (n,)
        row_loss = lse - logits.gather(1, chunk_targets).squeeze(1)  # (n,)
        total += torch.where(chunk_valid, row_loss, 0.0).sum()
        if not want_grads:
            continue
        # dloss/dlogits = (softmax - onehot(target)) * scale, zero on ignored rows; in place.
        grad = logits.sub_(lse[:, None]).exp_()  # (n, V) softmax
        grad.scatter_add_(1, chunk_targets, torch.full_like(row_loss, -1.0)[:, None])
        grad.mul_((chunk_valid * scale)[:, None])
        if softcap:  # d(cap * tanh(z / cap))/dz = 1 - tanh^2
            grad.mul_(1.0 - squashed * squashed)
        grad = grad.to(compute_dtype)  # the dtype the reference's backward matmuls see
        torch.mm(grad, w, out=dhidden[start:end])  # (n, d)
        if compute_dtype == torch.float32:
            dweight.addmm_(grad.t(), h_chunk)  # (V, d)
        else:  # accumulate the chunks' bf16/fp16 products in fp32
            dweight += (grad.t() @ h_chunk).float()  # (V, d)
    loss = total * scale
    return loss, dhidden, dweight


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Gradients computed in the forward; the backward scales them by the upstream gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, reduction, compute_dtype, chunk_rows, softcap):
        loss, dhidden, dweight = chunked_forward(
            hidden, weight, targets, reduction=reduction, compute_dtype=compute_dtype,
            chunk_rows=chunk_rows, want_grads=True, softcap=softcap)
        ctx.save_for_backward(dhidden, dweight)
        ctx.dtypes = hidden.dtype, weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        dhidden, dweight = ctx.saved_tensors
        grad_loss = grad_loss.to(torch.float32)
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((dhidden * grad_loss).to(hidden_dtype), (dweight * grad_loss).to(weight_dtype),
                None, None, None, None, None)


def chunked_linear_cross_entropy(
    hidden: torch.Tensor,  # (N, d)
    weight: torch.Tensor,  # (V, d)
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str = "mean",
    chunk_rows: int | None = None,
    softcap: float = 0.0,
) -> torch.Tensor:
    """cross_entropy((hidden @ weight.T).float(), targets) as an fp32 scalar, chunk by chunk
    (the logits soft-capped first when `softcap` is set).

    Under autocast the matmuls run in autocast's dtype, as `hidden @ weight.t()` would.
    """
    device_type = hidden.device.type
    autocast = device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type)
    compute_dtype = (torch.get_autocast_dtype(device_type) if autocast
                     else torch.promote_types(hidden.dtype, weight.dtype))
    chunk = chunk_rows or default_chunk_rows(hidden.shape[0], weight.shape[0])
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(device_type, enabled=False) if autocast else nullcontext():
        if not needs_grad:
            return chunked_forward(hidden, weight, targets, reduction=reduction,
                                   compute_dtype=compute_dtype, chunk_rows=chunk, want_grads=False,
                                   softcap=softcap)[0]
        return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, reduction, compute_dtype, chunk,
                                               softcap)


def chunked_cross_entropy(*, chunk_rows: int | None = None):
    """LOSSES['cross_entropy', 'chunked'] builder (registered lazily in gocram/models/parts.py)."""

    def loss(
        hidden: torch.Tensor,  # (N, d)
        weight: torch.Tensor,  # (V, d)
        targets: torch.Tensor,  # (N,)
        *,
        reduction: str = "mean",
        softcap: float = 0.0,
    ) -> torch.Tensor:
        return chunked_linear_cross_entropy(hidden, weight, targets, reduction=reduction,
                                            chunk_rows=chunk_rows, softcap=softcap)

    return loss
