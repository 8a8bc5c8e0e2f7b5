"""Fused LayerNorm, forward and backward, with optional weight and bias.

Forward: each program normalises a (ROWS, BLOCK_D) tile of whole rows and saves the per-row mean
and 1/std in fp32. Backward: each program walks a band of rows, writes dx, and accumulates its
share of dweight/dbias in fp32 registers; torch sums the per-program partial rows (a few hundred
at most), which keeps the reduction deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

from gocram.core.errors import ConfigError
from gocram.kernels.availability import KernelInputError, check_tensors, is_interpreted
from gocram.kernels.tiling import chosen, next_pow2, num_warps, reduction_programs, tile_rows

MAX_WIDTH = 16384  # a whole row lives in one tile: 64 KiB of fp32


@triton.jit
def _layernorm_forward_kernel(
    x_ptr,  # (N, D) input, contiguous
    weight_ptr,  # (D,) or a dummy when HAS_WEIGHT is False
    bias_ptr,  # (D,) or a dummy when HAS_BIAS is False
    y_ptr,  # (N, D) output
    mean_ptr,  # (N,) fp32
    rstd_ptr,  # (N,) fp32
    n_rows,
    width,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # (ROWS,)
    cols = tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    row_ok = rows < n_rows
    col_ok = cols < width
    mask = row_ok[:, None] & col_ok[None, :]  # (ROWS, BLOCK_D)
    offsets = rows[:, None].to(tl.int64) * width + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / width  # (ROWS,)
    centred = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(centred * centred, axis=1) / width
    rstd = 1.0 / tl.sqrt(var + eps)
    y = centred * rstd[:, None]
    if HAS_WEIGHT:
        weight = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        y = y * weight[None, :]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        y = y + bias[None, :]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=row_ok)
    tl.store(rstd_ptr + rows, rstd, mask=row_ok)


@triton.jit
def _layernorm_backward_kernel(
    dy_ptr,  # (N, D) upstream gradient, contiguous
    x_ptr,  # (N, D) the forward's input
    weight_ptr,  # (D,) or a dummy
    mean_ptr,  # (N,) fp32
    rstd_ptr,  # (N,) fp32
    dx_ptr,  # (N, D)
    dweight_partial_ptr,  # (P, D) fp32, one row per program (or a dummy)
    dbias_partial_ptr,  # (P, D) fp32 (or a dummy)
    n_rows,
    width,
    rows_per_program,
    HAS_WEIGHT: tl.constexpr,
    WANT_DWEIGHT: tl.constexpr,
    WANT_DBIAS: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    col_ok = cols < width
    if HAS_WEIGHT:
        weight = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    dweight_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    row_begin = pid * rows_per_program
    row_end = tl.minimum(row_begin + rows_per_program, n_rows)
    for start in range(row_begin, row_end, ROWS):
        rows = start + tl.arange(0, ROWS)  # (ROWS,)
        row_ok = rows < row_end
        mask = row_ok[:, None] & col_ok[None, :]  # (ROWS, BLOCK_D)
        offsets = rows[:, None].to(tl.int64) * width + cols[None, :]
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + rows, mask=row_ok, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        if HAS_WEIGHT:
            wdy = dy * weight[None, :]
        else:
            wdy = dy
        # dx = rstd * (wdy - mean(wdy) - xhat * mean(wdy * xhat)), means over the row.
        c_xhat = tl.sum(xhat * wdy, axis=1) / width  # (ROWS,)
        c_mean = tl.sum(wdy, axis=1) / width  # (ROWS,)
        dx = (wdy - xhat * c_xhat[:, None] - c_mean[:, None]) * rstd[:, None]
        tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if WANT_DWEIGHT:
            dweight_acc += tl.sum(dy * xhat, axis=0)
        if WANT_DBIAS:
            dbias_acc += tl.sum(dy, axis=0)
    if WANT_DWEIGHT:
        tl.store(dweight_partial_ptr + pid * width + cols, dweight_acc, mask=col_ok)
    if WANT_DBIAS:
        tl.store(dbias_partial_ptr + pid * width + cols, dbias_acc, mask=col_ok)


KERNELS = (_layernorm_forward_kernel, _layernorm_backward_kernel)


def _check_width(width: int) -> None:
    if width > MAX_WIDTH:
        raise KernelInputError(f"triton_layernorm: width {width} is over its block limit of {MAX_WIDTH}")


def layernorm_forward(
    x: torch.Tensor,  # (N, D) contiguous
    weight: torch.Tensor | None,  # (D,)
    bias: torch.Tensor | None,  # (D,)
    eps: float,
    *,
    block_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y (N, D) in x's dtype, mean (N,) fp32, rstd (N,) fp32.

    block_rows (rows per program, a power of two) overrides the schedule; the result is the same.
    """
    check_tensors("triton_layernorm", _layernorm_forward_kernel,
                  {"x": x, "weight": weight, "bias": bias}, float_only=("x", "weight", "bias"))
    if x.dim() != 2:
        raise KernelInputError(f"triton_layernorm: x must be 2-D (rows, width), got {tuple(x.shape)}")
    n_rows, width = x.shape
    _check_width(width)
    if width == 0:  # torch would return an empty y, but mean and 1/std of no values are undefined
        raise KernelInputError("triton_layernorm: x has width 0, there is nothing to normalise")
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != (width,):
            raise KernelInputError(f"triton_layernorm: {name} has shape {tuple(param.shape)}, "
                                   f"expected ({width},)")
    y = torch.empty_like(x)
    mean = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    if n_rows == 0:
        return y, mean, rstd
    block_d = next_pow2(width)
    rows = chosen("triton_layernorm", "block_rows", block_rows,
                  tile_rows(block_d, n_rows, interpreted=is_interpreted(_layernorm_forward_kernel)))
    _layernorm_forward_kernel[(triton.cdiv(n_rows, rows),)](
        x, x if weight is None else weight, x if bias is None else bias, y, mean, rstd,
        n_rows, width, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ROWS=rows, BLOCK_D=block_d,
        num_warps=num_warps(rows * block_d),
    )
    return y, mean, rstd


def layernorm_backward(
    dy: torch.Tensor,  # (N, D) contiguous
    x: torch.Tensor,  # (N, D)
    weight: torch.Tensor | None,  # (D,)
    mean: torch.Tensor,  # (N,) fp32
    rstd: torch.Tensor,  # (N,) fp32
    *,
    want_dweight: bool,
    want_dbias: bool,
    block_rows: int | None = None,
    programs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """dx (N, D) in x's dtype; dweight and dbias (D,) in fp32, or None where not wanted.

    block_rows (rows per tile, a power of two) and programs (how many programs share the rows,
    each writing one partial dweight/dbias row; fewer run when the rows run out) override the
    schedule; the result is the same up to summation order.
    """
    check_tensors("triton_layernorm backward", _layernorm_backward_kernel,
                  {"dy": dy, "x": x, "weight": weight, "mean": mean, "rstd": rstd},
                  float_only=("dy", "x", "weight"))
    if dy.shape != x.shape:
        raise KernelInputError(f"triton_layernorm backward: dy {tuple(dy.shape)} != x {tuple(x.shape)}")
    n_rows, width = x.shape
    _check_width(width)
    want_dweight = want_dweight and weight is not None
    dx = torch.empty_like(x)
    block_d = next_pow2(width)
    interpreted = is_interpreted(_layernorm_backward_kernel)
    rows = chosen("triton_layernorm backward", "block_rows", block_rows,
                  tile_rows(block_d, n_rows, interpreted=interpreted))
    programs = chosen("triton_layernorm backward", "programs", programs,
                      reduction_programs(x.device, triton.cdiv(n_rows, rows), interpreted=interpreted),
                      pow2=False)
    rows_per_program = triton.cdiv(triton.cdiv(n_rows, programs), rows) * rows
    programs = triton.cdiv(n_rows, rows_per_program) if n_rows else 0
    partial = dict(device=x.device, dtype=torch.float32)
    dweight_partial = torch.zeros(programs, width, **partial) if want_dweight else None
    dbias_partial = torch.zeros(programs, width, **partial) if want_dbias else None
    if programs:
        _layernorm_backward_kernel[(programs,)](
            dy, x, x if weight is None else weight, mean, rstd, dx,
            x if dweight_partial is None else dweight_partial,
            x if dbias_partial is None else dbias_partial,
            n_rows, width, rows_per_program,
            HAS_WEIGHT=weight is not None, WANT_DWEIGHT=want_dweight, WANT_DBIAS=want_dbias,
            ROWS=rows, BLOCK_D=block_d, num_warps=num_warps(rows * block_d),
        )
    dweight = dweight_partial.sum(0) if want_dweight else None  # (D,)
    dbias = dbias_partial.sum(0) if want_dbias else None  # (D,)
    return dx, dweight, dbias


class LayerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        shape = x.shape
        x2d = x.reshape(-1, shape[-1]).contiguous()  # (N, D)
        y, mean, rstd = layernorm_forward(x2d, weight, bias, eps)
        ctx.save_for_backward(x2d, weight, mean, rstd)
        ctx.shape, ctx.has_bias = shape, bias is not None
        ctx.param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2d, weight, mean, rstd = ctx.saved_tensors
        # dy may be a broadcast view (stride 0) from e.g. y.sum().backward().
        dy2d = dy.reshape(x2d.shape).contiguous()  # (N, D)
        dx, dweight, dbias = layernorm_backward(
            dy2d, x2d, weight, mean, rstd,
            want_dweight=ctx.needs_input_grad[1], want_dbias=ctx.has_bias and ctx.needs_input_grad[2],
        )
        weight_dtype, bias_dtype = ctx.param_dtypes
        return (
            dx.view(ctx.shape),
            None if dweight is None else dweight.to(weight_dtype),
            None if dbias is None else dbias.to(bias_dtype),
            None,
        )


# Dynamo runs this eagerly (a clean graph break under impl.compile) rather than tracing the
# launcher's host-side checks; the kernel is the fast path either way.
@torch.compiler.disable
def layernorm(
    x: torch.Tensor,  # (..., D), any strides
    weight: torch.Tensor | None,  # (D,)
    bias: torch.Tensor | None,  # (D,)
    eps: float = 1e-5,
) -> torch.Tensor:
    """Fused LayerNorm over the last dim; differentiable in x, weight and bias."""
    if x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        x = x.float()  # F.layer_norm is on CUDA autocast's fp32 list: match its output dtype
    return LayerNormFunction.apply(x, weight, bias, eps)


class TritonLayerNorm(nn.Module):
    """Drop-in for gocram.models.layers.LayerNorm (same parameter names), fused in Triton.

    Registered lazily as NORMS['layernorm', 'triton'] in gocram/models/parts.py.
    """

    def __init__(self, d_model: int, *, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        if d_model > MAX_WIDTH:
            raise ConfigError(f"model.norm=triton_layernorm supports widths up to {MAX_WIDTH}, "
                              f"got model.d_model={d_model}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layernorm(x, self.weight, self.bias, self.eps)
