"""Fused, chunked linear + cross-entropy that never holds (N, V) logits for the whole batch.

The rows are cut into chunks. For each chunk, torch computes the (n, V) logits with one matmul;
a Triton kernel makes an online-softmax pass for the loss and then overwrites the logits in place
with dloss/dlogits; two more matmuls turn that into this chunk's dhidden and its share of dweight.
So the gradients are computed during the forward (as in Liger-Kernel), and the backward only scales
them by the upstream gradient. Peak extra memory: one chunk of logits plus dweight (V, d) fp32.
Without a gradient to compute (evaluation) the gradient passes are skipped.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl

from gocram.core.tokens import IGNORE_INDEX
from gocram.kernels.availability import KernelInputError, check_tensors, is_interpreted
from gocram.kernels.tiling import chosen, next_pow2, num_warps, tile_rows

REDUCTIONS = ("mean", "sum")
MAX_BLOCK_V = 8192  # vocabulary columns per tile; the kernel loops over the rest
_IGNORE = tl.constexpr(IGNORE_INDEX)
_NEG_BIG = tl.constexpr(-1e30)  # stands in for -inf on masked columns: no inf - inf = nan


@triton.jit
def _cross_entropy_kernel(
    logits_ptr,  # (n, V) contiguous; overwritten with dloss/dlogits when WRITE_GRAD
    targets_ptr,  # (n,) integer class ids, IGNORE_INDEX skipped
    loss_ptr,  # (n,) fp32 per-row loss (0 for ignored rows)
    scale_ptr,  # (1,) fp32: 1/(non-ignored rows of the whole batch) for 'mean', 1 for 'sum'
    n_rows,
    vocab,
    WRITE_GRAD: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # (ROWS,)
    row_ok = rows < n_rows
    targets = tl.load(targets_ptr + rows, mask=row_ok, other=_IGNORE)
    valid = row_ok & (targets != _IGNORE)
    row_base = rows[:, None].to(tl.int64) * vocab  # (ROWS, 1)
    # Pass 1: running max m and running sum s of exp(z - m), and the target's logit.
    m = tl.full((ROWS,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((ROWS,), dtype=tl.float32)
    target_logit = tl.zeros((ROWS,), dtype=tl.float32)
    for start in range(0, vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)  # (BLOCK_V,)
        mask = row_ok[:, None] & (cols < vocab)[None, :]  # (ROWS, BLOCK_V)
        z = tl.load(logits_ptr + row_base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        z = tl.where(mask, z, _NEG_BIG)
        m_new = tl.maximum(m, tl.max(z, axis=1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new[:, None]), axis=1)
        m = m_new
        target_logit += tl.sum(tl.where(cols[None, :] == targets[:, None], z, 0.0), axis=1)
    lse = tl.where(row_ok, m + tl.log(s), 0.0)  # (ROWS,) log-sum-exp; 0 keeps padding rows finite
    tl.store(loss_ptr + rows, tl.where(valid, lse - target_logit, 0.0), mask=row_ok)
    if WRITE_GRAD:
        # Pass 2: dloss/dz = (softmax(z) - onehot(target)) * scale, zero on ignored rows.
        scale = tl.load(scale_ptr)
        for start in range(0, vocab, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = row_ok[:, None] & (cols < vocab)[None, :]
            offsets = row_base + cols[None, :]
            z = tl.load(logits_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            grad = tl.exp(z - lse[:, None]) - tl.where(cols[None, :] == targets[:, None], 1.0, 0.0)
            grad = tl.where(valid[:, None], grad * scale, 0.0)
            tl.store(logits_ptr + offsets, grad.to(logits_ptr.dtype.element_ty), mask=mask)


KERNELS = (_cross_entropy_kernel,)


def default_chunk_rows(n_rows: int, vocab: int, width: int) -> int:
    """Rows per chunk so one chunk's logits are about as large as the hidden states (Liger's rule)."""
    per_chunk = triton.cdiv(n_rows, triton.cdiv(vocab, width))
    return max(1, min(next_pow2(per_chunk), n_rows))


def cross_entropy_rows(
    logits: torch.Tensor,  # (n, V) contiguous; overwritten with the gradient when write_grad
    targets: torch.Tensor,  # (n,)
    scale: torch.Tensor,  # (1,) fp32
    *,
    write_grad: bool,
    block_rows: int | None = None,
    block_vocab: int | None = None,
) -> torch.Tensor:
    """Per-row loss (n,) fp32; with write_grad, logits become dloss/dlogits (scaled by `scale`).

    block_rows and block_vocab (a program's tile, powers of two; the kernel loops over vocabulary
    tiles) override the schedule.
    """
    check_tensors("fused_cross_entropy", _cross_entropy_kernel,
                  {"logits": logits, "targets": targets, "scale": scale}, float_only=("logits",))
    n_rows, vocab = logits.shape
    losses = torch.empty(n_rows, device=logits.device, dtype=torch.float32)
    if n_rows == 0:
        return losses
    block_v = chosen("fused_cross_entropy", "block_vocab", block_vocab, min(next_pow2(vocab), MAX_BLOCK_V))
    rows = chosen("fused_cross_entropy", "block_rows", block_rows,
                  tile_rows(block_v, n_rows, interpreted=is_interpreted(_cross_entropy_kernel), max_rows=1))
    _cross_entropy_kernel[(triton.cdiv(n_rows, rows),)](
        logits, targets, losses, scale, n_rows, vocab,
        WRITE_GRAD=write_grad, ROWS=rows, BLOCK_V=block_v, num_warps=num_warps(rows * block_v),
    )
    return losses


def _check_loss_inputs(hidden, weight, targets, reduction) -> None:
    check_tensors("fused_cross_entropy", _cross_entropy_kernel,
                  {"hidden": hidden, "weight": weight, "targets": targets},
                  float_only=("hidden", "weight"))
    if reduction not in REDUCTIONS:
        raise KernelInputError(f"fused_cross_entropy: reduction must be one of {REDUCTIONS}, "
                               f"got {reduction!r}")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise KernelInputError(f"fused_cross_entropy: expected hidden (N, d) and weight (V, d), got "
                               f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1] or targets.dtype.is_floating_point:
        raise KernelInputError(f"fused_cross_entropy: targets must be integer class ids of shape "
                               f"({hidden.shape[0]},), got {targets.dtype} {tuple(targets.shape)}")
    vocab = weight.shape[0]
    if vocab == 0:  # the log-sum-exp of no logits is -inf: a loss of no classes is undefined
        raise KernelInputError("fused_cross_entropy: weight has 0 rows, the vocabulary is empty")
    bad = (targets >= vocab) | ((targets < 0) & (targets != IGNORE_INDEX))
    if bool(bad.any()):  # one host sync: torch's own loss would assert on the device instead
        raise KernelInputError(f"fused_cross_entropy: target {int(targets[bad][0])} is outside "
                               f"[0, {vocab}) and is not the ignore index {IGNORE_INDEX}")


def fused_linear_cross_entropy_forward(
    hidden: torch.Tensor,  # (N, d) contiguous
    weight: torch.Tensor,  # (V, d) contiguous
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str = "mean",
    compute_dtype: torch.dtype | None = None,
    want_grads: bool = True,
    chunk_rows: int | None = None,
    block_rows: int | None = None,
    block_vocab: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss fp32 scalar, dhidden (N, d) in hidden's dtype, dweight (V, d) fp32) for a unit
    upstream gradient; the gradients are None without want_grads.

    compute_dtype is the dtype of the matmuls (autocast's, else the inputs' promoted dtype);
    block_rows and block_vocab override the kernel's tile (see cross_entropy_rows).
    """
    _check_loss_inputs(hidden, weight, targets, reduction)
    n_rows, width = hidden.shape
    vocab = weight.shape[0]
    compute_dtype = compute_dtype or torch.promote_types(hidden.dtype, weight.dtype)
    h = hidden.to(compute_dtype)  # (N, d)
    w = weight.to(compute_dtype)  # (V, d)
    n_valid = (targets != IGNORE_INDEX).sum()
    # 'mean' divides by the non-ignored rows of the whole batch (0 of them gives nan, as torch).
    scale = (1.0 / n_valid.float() if reduction == "mean" else torch.ones((), device=hidden.device))
    scale = scale.reshape(1).to(torch.float32)  # (1,)
    losses = torch.empty(n_rows, device=hidden.device, dtype=torch.float32)  # (N,)
    dhidden = torch.empty_like(h) if want_grads else None  # (N, d)
    dweight = torch.zeros(vocab, width, device=hidden.device, dtype=torch.float32) if want_grads else None
    chunk = chunk_rows or default_chunk_rows(n_rows, vocab, width)
    for start in range(0, n_rows, chunk):
        end = min(start + chunk, n_rows)
        h_chunk = h[start:end]  # (n, d), a contiguous row slice
        logits = h_chunk @ w.t()  # (n, V) in compute_dtype
        losses[start:end] = cross_entropy_rows(logits, targets[start:end], scale, write_grad=want_grads,
                                               block_rows=block_rows, block_vocab=block_vocab)
        if want_grads:
            dlogits = logits  # (n, V): overwritten in place by the kernel
            torch.mm(dlogits, w, out=dhidden[start:end])  # (n, d)
            if compute_dtype == torch.float32:
                dweight.addmm_(dlogits.t(), h_chunk)  # (V, d)
            else:  # accumulate the chunks' bf16/fp16 products in fp32
                dweight += (dlogits.t() @ h_chunk).float()  # (V, d)
    loss = losses.sum() * scale[0] if reduction == "mean" else losses.sum()
    if not want_grads:
        return loss, None, None
    return loss, dhidden.to(hidden.dtype), dweight


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, reduction, compute_dtype, chunk_rows):
        loss, dhidden, dweight = fused_linear_cross_entropy_forward(
            hidden, weight, targets, reduction=reduction, compute_dtype=compute_dtype,
            chunk_rows=chunk_rows)
        ctx.save_for_backward(dhidden, dweight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        dhidden, dweight = ctx.saved_tensors
        grad_loss = grad_loss.to(torch.float32)
        return (
            (dhidden * grad_loss).to(dhidden.dtype),
            (dweight * grad_loss).to(ctx.weight_dtype),
            None, None, None, None,
        )


# Dynamo runs this eagerly (a clean graph break under impl.compile) rather than tracing the
# launcher's host-side checks; the kernel is the fast path either way.
@torch.compiler.disable
def fused_linear_cross_entropy(
    hidden: torch.Tensor,  # (N, d), any strides
    weight: torch.Tensor,  # (V, d)
    targets: torch.Tensor,  # (N,)
    *,
    reduction: str = "mean",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """cross_entropy(hidden @ weight.T, targets) as an fp32 scalar, without full logits.

    Under autocast the matmuls run in autocast's dtype, as `hidden @ weight.t()` would.
    """
    device_type = hidden.device.type
    autocast = device_type in ("cuda", "cpu") and torch.is_autocast_enabled(device_type)
    compute_dtype = torch.get_autocast_dtype(device_type) if autocast else None
    hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(device_type, enabled=False) if autocast else nullcontext():
        if not needs_grad:
            return fused_linear_cross_entropy_forward(
                hidden, weight, targets, reduction=reduction, compute_dtype=compute_dtype,
                want_grads=False, chunk_rows=chunk_rows)[0]
        return FusedLinearCrossEntropyFunction.apply(
            hidden, weight, targets, reduction, compute_dtype, chunk_rows)


def fused_cross_entropy(*, chunk_rows: int | None = None):
    """LOSSES['cross_entropy', 'triton'] builder (registered lazily in gocram/models/parts.py)."""

    def loss(
        hidden: torch.Tensor,  # (N, d)
        weight: torch.Tensor,  # (V, d)
        targets: torch.Tensor,  # (N,)
        *,
        reduction: str = "mean",
    ) -> torch.Tensor:
        return fused_linear_cross_entropy(hidden, weight, targets, reduction=reduction,
                                          chunk_rows=chunk_rows)

    return loss
