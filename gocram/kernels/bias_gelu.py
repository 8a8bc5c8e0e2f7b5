"""Fused bias + GELU (exact erf or tanh approximation), forward and backward.

Forward writes only GELU(h + bias). Backward recomputes h + bias and GELU' from the saved input
instead of storing the activation, writes dh, and accumulates each program's share of dbias in
fp32; torch sums the per-program partial rows.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

from gocram.kernels.availability import KernelInputError, check_tensors, is_interpreted
from gocram.kernels.tiling import chosen, next_pow2, num_warps, reduction_programs, tile_rows

APPROXIMATIONS = ("none", "tanh")  # as in F.gelu(approximate=...)
MAX_BLOCK_COLS = 1024  # columns per tile; any width works (the grid tiles columns too)

# Globals read inside @triton.jit functions must be constexpr.
SQRT_HALF = tl.constexpr(0.7071067811865476)  # 1/sqrt(2)
INV_SQRT_2PI = tl.constexpr(0.3989422804014327)  # 1/sqrt(2*pi)
SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)  # sqrt(2/pi)
TANH_COEF = tl.constexpr(0.044715)


@triton.jit
def _tanh(u):
    # From exp(-2|u|) in (0, 1]: never overflows, and tends to +-1 exactly at the tails.
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(u >= 0, t, -t)


@triton.jit
def _gelu(x, APPROX_TANH: tl.constexpr):
    """GELU of an fp32 block."""
    if APPROX_TANH:
        u = SQRT_2_OVER_PI * (x + TANH_COEF * x * x * x)
        return 0.5 * x * (1.0 + _tanh(u))
    else:
        return 0.5 * x * (1.0 + tl.math.erf(x * SQRT_HALF))


@triton.jit
def _gelu_grad(x, APPROX_TANH: tl.constexpr):
    """d GELU / dx of an fp32 block."""
    if APPROX_TANH:
        u = SQRT_2_OVER_PI * (x + TANH_COEF * x * x * x)
        t = _tanh(u)
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_COEF * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    else:
        return 0.5 * (1.0 + tl.math.erf(x * SQRT_HALF)) + x * INV_SQRT_2PI * tl.exp(-0.5 * x * x)


@triton.jit
def _bias_gelu_forward_kernel(
    h_ptr,  # (N, W) input, contiguous
    bias_ptr,  # (W,) or a dummy when HAS_BIAS is False
    y_ptr,  # (N, W) output
    n_rows,
    width,
    HAS_BIAS: tl.constexpr,
    APPROX_TANH: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # (ROWS,)
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)  # (BLOCK_W,)
    col_ok = cols < width
    mask = (rows < n_rows)[:, None] & col_ok[None, :]  # (ROWS, BLOCK_W)
    offsets = rows[:, None].to(tl.int64) * width + cols[None, :]
    x = tl.load(h_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offsets, _gelu(x, APPROX_TANH).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_gelu_backward_kernel(
    dy_ptr,  # (N, W) upstream gradient, contiguous
    h_ptr,  # (N, W) the forward's input
    bias_ptr,  # (W,) or a dummy
    dh_ptr,  # (N, W)
    dbias_partial_ptr,  # (P, W) fp32, one row per row-band program (or a dummy)
    n_rows,
    width,
    rows_per_program,
    HAS_BIAS: tl.constexpr,
    WANT_DBIAS: tl.constexpr,
    APPROX_TANH: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    pid_rows = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)  # (BLOCK_W,)
    col_ok = cols < width
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    dbias_acc = tl.zeros((BLOCK_W,), dtype=tl.float32)
    row_begin = pid_rows * rows_per_program
    row_end = tl.minimum(row_begin + rows_per_program, n_rows)
    for start in range(row_begin, row_end, ROWS):
        rows = start + tl.arange(0, ROWS)  # (ROWS,)
        mask = (rows < row_end)[:, None] & col_ok[None, :]  # (ROWS, BLOCK_W)
        offsets = rows[:, None].to(tl.int64) * width + cols[None, :]
        x = tl.load(h_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            x += bias[None, :]
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dh = dy * _gelu_grad(x, APPROX_TANH)  # masked entries have dy = 0
        tl.store(dh_ptr + offsets, dh.to(dh_ptr.dtype.element_ty), mask=mask)
        if WANT_DBIAS:
            dbias_acc += tl.sum(dh, axis=0)
    if WANT_DBIAS:
        tl.store(dbias_partial_ptr + pid_rows * width + cols, dbias_acc, mask=col_ok)


KERNELS = (_bias_gelu_forward_kernel, _bias_gelu_backward_kernel)


def _check(what: str, kernel, h, bias, approximate: str, **more) -> None:
    check_tensors(what, kernel, {"h": h, "bias": bias, **more}, float_only=("h", "bias", *more))
    if approximate not in APPROXIMATIONS:
        raise KernelInputError(f"{what}: approximate must be one of {APPROXIMATIONS}, got {approximate!r}")
    if h.dim() != 2:
        raise KernelInputError(f"{what}: h must be 2-D (rows, width), got {tuple(h.shape)}")
    if bias is not None and bias.shape != (h.shape[1],):
        raise KernelInputError(f"{what}: bias has shape {tuple(bias.shape)}, expected ({h.shape[1]},)")


def _block_w(width: int) -> int:
    return min(next_pow2(width), MAX_BLOCK_COLS)


def bias_gelu_forward(
    h: torch.Tensor,  # (N, W) contiguous
    bias: torch.Tensor | None,  # (W,)
    approximate: str = "none",
    *,
    block_rows: int | None = None,
    block_cols: int | None = None,
) -> torch.Tensor:
    """GELU(h + bias) (N, W) in the dtype torch's promotion gives h + bias.

    block_rows and block_cols (a program's tile, powers of two) override the schedule.
    """
    _check("triton_bias_gelu", _bias_gelu_forward_kernel, h, bias, approximate)
    n_rows, width = h.shape
    out_dtype = h.dtype if bias is None else torch.promote_types(h.dtype, bias.dtype)
    y = torch.empty(n_rows, width, device=h.device, dtype=out_dtype)
    if h.numel() == 0:
        return y
    block_w = chosen("triton_bias_gelu", "block_cols", block_cols, _block_w(width))
    rows = chosen("triton_bias_gelu", "block_rows", block_rows,
                  tile_rows(block_w, n_rows, interpreted=is_interpreted(_bias_gelu_forward_kernel)))
    grid = (triton.cdiv(n_rows, rows), triton.cdiv(width, block_w))
    _bias_gelu_forward_kernel[grid](
        h, h if bias is None else bias, y, n_rows, width,
        HAS_BIAS=bias is not None, APPROX_TANH=approximate == "tanh", ROWS=rows, BLOCK_W=block_w,
        num_warps=num_warps(rows * block_w),
    )
    return y


def bias_gelu_backward(
    dy: torch.Tensor,  # (N, W) contiguous
    h: torch.Tensor,  # (N, W)
    bias: torch.Tensor | None,  # (W,)
    approximate: str = "none",
    *,
    want_dbias: bool = True,
    block_rows: int | None = None,
    block_cols: int | None = None,
    bands: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """dh (N, W) in h's dtype and dbias (W,) in fp32 (None without a bias or when not wanted).

    block_rows and block_cols (a tile, powers of two) and bands (row bands, each writing one
    partial dbias row; fewer run when the rows run out) override the schedule.
    """
    _check("triton_bias_gelu backward", _bias_gelu_backward_kernel, h, bias, approximate, dy=dy)
    if dy.shape != h.shape:
        raise KernelInputError(f"triton_bias_gelu backward: dy {tuple(dy.shape)} != h {tuple(h.shape)}")
    n_rows, width = h.shape
    want_dbias = want_dbias and bias is not None
    dh = torch.empty_like(h)
    what = "triton_bias_gelu backward"
    block_w = chosen(what, "block_cols", block_cols, _block_w(width))
    interpreted = is_interpreted(_bias_gelu_backward_kernel)
    rows = chosen(what, "block_rows", block_rows, tile_rows(block_w, n_rows, interpreted=interpreted))
    col_blocks = triton.cdiv(width, block_w)
    # Row bands x column blocks programs in all; each band writes one partial dbias row.
    bands = chosen(what, "bands", bands, max(1, reduction_programs(
        h.device, triton.cdiv(n_rows, rows), interpreted=interpreted) // (1 if interpreted else col_blocks)),
        pow2=False)
    rows_per_program = triton.cdiv(triton.cdiv(n_rows, bands), rows) * rows
    bands = triton.cdiv(n_rows, rows_per_program) if h.numel() else 0
    dbias_partial = (torch.zeros(bands, width, device=h.device, dtype=torch.float32)
                     if want_dbias else None)
    if bands:
        _bias_gelu_backward_kernel[(bands, col_blocks)](
            dy, h, h if bias is None else bias, dh, h if dbias_partial is None else dbias_partial,
            n_rows, width, rows_per_program,
            HAS_BIAS=bias is not None, WANT_DBIAS=want_dbias, APPROX_TANH=approximate == "tanh",
            ROWS=rows, BLOCK_W=block_w, num_warps=num_warps(rows * block_w),
        )
    return dh, (dbias_partial.sum(0) if want_dbias else None)


class BiasGELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, bias, approximate):
        shape = h.shape
        h2d = h.reshape(-1, shape[-1]).contiguous()  # (N, W)
        y = bias_gelu_forward(h2d, bias, approximate)
        ctx.save_for_backward(h2d, bias)
        ctx.shape, ctx.approximate = shape, approximate
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        h2d, bias = ctx.saved_tensors
        dy2d = dy.reshape(h2d.shape).contiguous()  # (N, W); dy may be a broadcast view
        dh, dbias = bias_gelu_backward(dy2d, h2d, bias, ctx.approximate,
                                       want_dbias=ctx.needs_input_grad[1])
        return dh.view(ctx.shape), None if dbias is None else dbias.to(bias.dtype), None


# Dynamo runs this eagerly (a clean graph break under impl.compile) rather than tracing the
# launcher's host-side checks; the kernel is the fast path either way.
@torch.compiler.disable
def bias_gelu(
    h: torch.Tensor,  # (..., W), any strides
    bias: torch.Tensor | None,  # (W,)
    approximate: str = "none",
) -> torch.Tensor:
    """GELU(h + bias), fused; differentiable in h and bias."""
    return BiasGELUFunction.apply(h, bias, approximate)


class TritonBiasGELU(nn.Module):
    """Drop-in for gocram.models.layers.GELU (owns `bias`): forward(h) = GELU(h + bias), fused.

    Registered lazily as ACTIVATIONS['gelu', 'triton'] in gocram/models/parts.py.
    """

    approximate = "none"

    def __init__(self, width: int, *, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return bias_gelu(h, self.bias, self.approximate)


class TritonBiasGELUTanh(TritonBiasGELU):
    """Drop-in for gocram.models.layers.GELUTanh; ACTIVATIONS['triton_bias_gelu_tanh']."""

    approximate = "tanh"
