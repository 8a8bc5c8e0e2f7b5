"""Each Triton kernel against its plain-torch twin: output and every gradient, awkward shapes x dtypes.

On CPU these run in Triton's interpreter (TRITON_INTERPRET=1, as `make test` sets); with CUDA present
the same tests run the compiled kernels.
"""

from __future__ import annotations

import pytest
import torch

from gocram.kernels.bias_gelu import bias_gelu
from gocram.kernels.cross_entropy import fused_linear_cross_entropy
from gocram.kernels.layernorm import layernorm
from gocram.kernels.reference import (
    bias_gelu_reference,
    layernorm_reference,
    linear_cross_entropy_reference,
)
from tests.kernel_device import DEVICE, needs_kernels

pytestmark = needs_kernels

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# The twins compute in fp32 too, so these cover summation order plus the final rounding (1-2 ulp).
TOL = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float16: dict(atol=2e-3, rtol=4e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=3.2e-2),
}
# (rows, width): a single row, prime row counts, widths 1023 and 769, the tiny (256) and small (768)
# model widths. Wide rows come with few rows: the interpreter is slow.
SHAPES = [(1, 1023), (7, 769), (13, 256), (5, 768), (31, 65)]



def leaf(*shape, dtype, scale=1.0, shift=0.0):
    return (torch.randn(*shape, device=DEVICE) * scale + shift).to(dtype).requires_grad_()


def grads_of(fn, inputs, upstream):
    for t in inputs:
        t.grad = None
    out = fn()
    out.backward(upstream)
    return out.detach(), [None if t.grad is None else t.grad.clone() for t in inputs]


def assert_same(fast, ref, dtype, names):
    (out_f, grads_f), (out_r, grads_r) = fast, ref
    torch.testing.assert_close(out_f, out_r, **TOL[dtype], msg=lambda m: f"output: {m}")
    for name, g_f, g_r in zip(names, grads_f, grads_r, strict=True):
        assert (g_f is None) == (g_r is None), name
        if g_f is not None:
            assert g_f.dtype == g_r.dtype, name
            torch.testing.assert_close(g_f, g_r, **TOL[dtype], msg=lambda m, n=name: f"d{n}: {m}")


# -- LayerNorm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,width", SHAPES)
def test_layernorm_matches_reference(rows, width, dtype):
    torch.manual_seed(rows * width)
    # An offset mean and a scale far from 1 make the centring and 1/std matter.
    x = leaf(rows, width, dtype=dtype, scale=3.0, shift=0.5)
    w = leaf(width, dtype=dtype, shift=1.0)
    b = leaf(width, dtype=dtype)
    dy = torch.randn(rows, width, device=DEVICE).to(dtype)
    fast = grads_of(lambda: layernorm(x, w, b, 1e-5), (x, w, b), dy)
    ref = grads_of(lambda: layernorm_reference(x, w, b, 1e-5), (x, w, b), dy)
    assert fast[0].dtype == dtype
    assert_same(fast, ref, dtype, ("x", "weight", "bias"))


@pytest.mark.parametrize("affine", ["weight_only", "neither"])
def test_layernorm_without_bias_or_weight(affine):
    torch.manual_seed(1)
    x = leaf(3, 2, 37, dtype=torch.float32)  # (B, T, D): leading dims are flattened
    w = leaf(37, dtype=torch.float32, shift=1.0) if affine == "weight_only" else None
    inputs = (x,) if w is None else (x, w)
    dy = torch.randn(3, 2, 37, device=DEVICE)
    fast = grads_of(lambda: layernorm(x, w, None), inputs, dy)
    ref = grads_of(lambda: layernorm_reference(x, w, None), inputs, dy)
    assert_same(fast, ref, torch.float32, ("x", "weight")[: len(inputs)])


def test_layernorm_broadcast_upstream_gradient_and_frozen_weight():
    """y.sum().backward() hands backward a stride-0 view; a frozen weight gets no gradient."""
    x = leaf(4, 50, dtype=torch.float32)
    w = torch.randn(50, device=DEVICE)  # requires_grad=False
    b = leaf(50, dtype=torch.float32)
    layernorm(x, w, b).pow(2).sum().backward()
    gx, gb = x.grad.clone(), b.grad.clone()
    x.grad = b.grad = None
    layernorm_reference(x, w, b).pow(2).sum().backward()
    torch.testing.assert_close(gx, x.grad, **TOL[torch.float32])
    torch.testing.assert_close(gb, b.grad, **TOL[torch.float32])
    assert w.grad is None


# -- bias + GELU ---------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,width", SHAPES)
def test_bias_gelu_matches_reference(rows, width, dtype, approximate):
    torch.manual_seed(rows + width)
    h = leaf(rows, width, dtype=dtype, scale=3.0)  # reaches both tails of GELU
    b = leaf(width, dtype=dtype)
    dy = torch.randn(rows, width, device=DEVICE).to(dtype)
    fast = grads_of(lambda: bias_gelu(h, b, approximate), (h, b), dy)
    ref = grads_of(lambda: bias_gelu_reference(h, b, approximate), (h, b), dy)
    assert fast[0].dtype == dtype
    assert_same(fast, ref, dtype, ("h", "bias"))


def test_bias_gelu_without_bias_and_mixed_dtypes():
    torch.manual_seed(2)
    h = leaf(2, 3, 1100, dtype=torch.float32)  # (B, T, W), more columns than one tile holds
    dy = torch.randn(2, 3, 1100, device=DEVICE)
    fast = grads_of(lambda: bias_gelu(h, None, "tanh"), (h,), dy)
    ref = grads_of(lambda: bias_gelu_reference(h, None, "tanh"), (h,), dy)
    assert_same(fast, ref, torch.float32, ("h",))
    # bf16 activations with an fp32 bias (autocast's fc output): h + bias promotes to fp32.
    h16 = leaf(6, 40, dtype=torch.bfloat16)
    b32 = leaf(40, dtype=torch.float32)
    dy32 = torch.randn(6, 40, device=DEVICE)
    fast = grads_of(lambda: bias_gelu(h16, b32), (h16, b32), dy32)
    ref = grads_of(lambda: bias_gelu_reference(h16, b32), (h16, b32), dy32)
    assert fast[0].dtype == torch.float32
    assert_same(fast, ref, torch.bfloat16, ("h", "bias"))


# -- fused linear + cross-entropy ----------------------------------------------------------------
# (rows N, width d, vocab V, chunk rows): chunks with remainders, V not a power of two.
CE_SHAPES = [(1, 64, 300, None), (7, 33, 1000, 3), (13, 256, 512, None), (31, 64, 769, 8)]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,width,vocab,chunk", CE_SHAPES)
def test_fused_cross_entropy_matches_reference(rows, width, vocab, chunk, dtype, reduction):
    torch.manual_seed(rows + vocab)
    hidden = leaf(rows, width, dtype=dtype)
    weight = leaf(vocab, width, dtype=dtype, scale=0.5)
    targets = torch.randint(0, vocab, (rows,), device=DEVICE)
    targets[1::3] = -1  # IGNORE_INDEX rows are skipped (and excluded from the mean)
    upstream = torch.tensor(1.7, device=DEVICE)
    fast = grads_of(lambda: fused_linear_cross_entropy(
        hidden, weight, targets, reduction=reduction, chunk_rows=chunk), (hidden, weight), upstream)
    ref = grads_of(lambda: linear_cross_entropy_reference(hidden, weight, targets, reduction=reduction),
                   (hidden, weight), upstream)
    assert fast[0].dtype == torch.float32 and fast[0].shape == ()
    assert_same(fast, ref, dtype, ("hidden", "weight"))


def test_fused_cross_entropy_without_grad_and_all_ignored():
    torch.manual_seed(3)
    hidden, weight = leaf(9, 16, dtype=torch.float32), leaf(100, 16, dtype=torch.float32)
    targets = torch.randint(0, 100, (9,), device=DEVICE)
    with torch.no_grad():  # evaluation: the gradient passes are skipped
        fast = fused_linear_cross_entropy(hidden, weight, targets, reduction="sum", chunk_rows=4)
        ref = linear_cross_entropy_reference(hidden, weight, targets, reduction="sum")
    torch.testing.assert_close(fast, ref, **TOL[torch.float32])
    ignored = torch.full((9,), -1, device=DEVICE)
    assert fused_linear_cross_entropy(hidden, weight, ignored, reduction="sum").item() == 0.0
    # 'mean' over zero targets is nan, as in torch.
    assert torch.isnan(fused_linear_cross_entropy(hidden, weight, ignored)).item()


def test_fused_cross_entropy_under_autocast_matches_reference():
    """The trainer's bf16 path: fp32 hidden and weight, matmuls in autocast's dtype."""
    torch.manual_seed(4)
    hidden, weight = leaf(12, 48, dtype=torch.float32), leaf(320, 48, dtype=torch.float32)
    targets = torch.randint(0, 320, (12,), device=DEVICE)
    one = torch.tensor(1.0, device=DEVICE)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        fast = grads_of(lambda: fused_linear_cross_entropy(hidden, weight, targets, chunk_rows=5),
                        (hidden, weight), one)
        ref = grads_of(lambda: linear_cross_entropy_reference(hidden, weight, targets),
                       (hidden, weight), one)
    assert fast[1][0].dtype == fast[1][1].dtype == torch.float32
    assert_same(fast, ref, torch.bfloat16, ("hidden", "weight"))


def test_torch_baselines_are_the_same_functions_in_fp32():
    """The benchmarks' baselines (the model's plain parts) compute what the fp32 twins compute."""
    from gocram.kernels.reference import bias_gelu_torch, layernorm_torch

    x, w, b = (torch.randn(5, 40, device=DEVICE), torch.randn(40, device=DEVICE),
               torch.randn(40, device=DEVICE))
    torch.testing.assert_close(layernorm_torch(x, w, b), layernorm_reference(x, w, b))
    torch.testing.assert_close(bias_gelu_torch(x, b, "tanh"), bias_gelu_reference(x, b, "tanh"))
