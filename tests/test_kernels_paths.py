"""The kernels on the schedules a GPU runs, reached on the interpreter by overriding the launchers'
tile sizes and program counts: several programs per reduction (partial dweight/dbias rows summed),
several tiles per program, several vocabulary tiles per row (the online-softmax rescale), ragged
tails, and constant rows (where only eps keeps 1/std finite).

Each check takes the kernel module as an argument, so tests/test_kernel_mutations.py can run the
same checks against deliberately broken copies of the kernel source and require them to fail.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

import gocram.kernels.bias_gelu as bias_gelu_module
import gocram.kernels.cross_entropy as cross_entropy_module
import gocram.kernels.layernorm as layernorm_module
from gocram.kernels.availability import KernelInputError
from gocram.kernels.reference import (
    bias_gelu_reference,
    layernorm_reference,
    linear_cross_entropy_reference,
)
from tests.kernel_device import DEVICE, needs_kernels

pytestmark = needs_kernels

# fp32 throughout: the partial sums add 300 rows in another order than torch does.
TOL = dict(atol=1e-4, rtol=1e-4)
ROWS, WIDTH = 300, 1023  # 300 rows in tiles of 8: 38 tiles, a ragged last one; 1023 = 4 column tiles of 256


def _close(actual, expected, what):
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{what}: {m}")


def _reference_grads(fn, inputs, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(upstream)
    return out.detach(), [t.grad for t in leaves]


def check_layernorm(module: ModuleType) -> None:
    """5 backward programs of 8 tiles of 8 rows, forward in 38 programs; then constant rows."""
    torch.manual_seed(0)
    x = torch.randn(ROWS, WIDTH, device=DEVICE) * 3.0 + 0.5
    weight = torch.randn(WIDTH, device=DEVICE) + 1.0
    bias = torch.randn(WIDTH, device=DEVICE)
    x[::7] = 2.5  # constant rows: variance 0, so 1/std = 1/sqrt(eps)
    dy = torch.randn(ROWS, WIDTH, device=DEVICE)
    y, mean, rstd = module.layernorm_forward(x, weight, bias, 1e-5, block_rows=8)
    dx, dweight, dbias = module.layernorm_backward(dy, x, weight, mean, rstd, want_dweight=True,
                                                   want_dbias=True, block_rows=8, programs=5)
    y_ref, (dx_ref, dweight_ref, dbias_ref) = _reference_grads(
        lambda a, w, b: layernorm_reference(a, w, b, 1e-5), (x, weight, bias), dy)
    _close(y, y_ref, "y")
    _close(y[::7], bias.expand(len(y[::7]), WIDTH), "y of constant rows (= bias)")
    _close(dx, dx_ref, "dx")
    _close(dweight, dweight_ref, "dweight")
    _close(dbias, dbias_ref, "dbias")


def check_bias_gelu(module: ModuleType) -> None:
    """Both approximations on 5 row bands x 4 column blocks, tiles of 8 x 256."""
    torch.manual_seed(1)
    h = torch.randn(ROWS, WIDTH, device=DEVICE) * 3.0  # reaches both tails
    bias = torch.randn(WIDTH, device=DEVICE)
    dy = torch.randn(ROWS, WIDTH, device=DEVICE)
    for approximate in ("none", "tanh"):
        y = module.bias_gelu_forward(h, bias, approximate, block_rows=8, block_cols=256)
        dh, dbias = module.bias_gelu_backward(dy, h, bias, approximate, block_rows=8, block_cols=256,
                                              bands=5)
        y_ref, (dh_ref, dbias_ref) = _reference_grads(
            lambda a, b, ap=approximate: bias_gelu_reference(a, b, ap), (h, bias), dy)
        _close(y, y_ref, f"y ({approximate})")
        _close(dh, dh_ref, f"dh ({approximate})")
        _close(dbias, dbias_ref, f"dbias ({approximate})")


def check_cross_entropy(module: ModuleType) -> None:
    """Vocabulary 20,000 in tiles of 2,048 (10 tiles, a ragged last one), 4 rows per program,
    chunks of 24 rows with a remainder, targets in every tile and some ignored."""
    torch.manual_seed(2)
    n, d, vocab = 64, 32, 20_000
    hidden = torch.randn(n, d, device=DEVICE)
    weight = torch.randn(vocab, d, device=DEVICE) * 0.5
    targets = torch.randint(0, vocab, (n,), device=DEVICE)
    targets[::5] = -1
    loss, dhidden, dweight = module.fused_linear_cross_entropy_forward(
        hidden, weight, targets, chunk_rows=24, block_rows=4, block_vocab=2048)
    loss_ref, (dhidden_ref, dweight_ref) = _reference_grads(
        lambda a, w: linear_cross_entropy_reference(a, w, targets), (hidden, weight),
        torch.tensor(1.0, device=DEVICE))
    _close(loss, loss_ref, "loss")
    _close(dhidden, dhidden_ref, "dhidden")
    _close(dweight, dweight_ref, "dweight")


CHECKS = {"layernorm": check_layernorm, "bias_gelu": check_bias_gelu, "cross_entropy": check_cross_entropy}
MODULES = {"layernorm": layernorm_module, "bias_gelu": bias_gelu_module,
           "cross_entropy": cross_entropy_module}


@pytest.mark.parametrize("kernel", sorted(CHECKS))
def test_gpu_schedule_matches_reference(kernel):
    CHECKS[kernel](MODULES[kernel])


def test_default_schedule_is_unchanged_by_the_override_arguments():
    """Passing the default tile explicitly gives bit-identical results to passing nothing."""
    torch.manual_seed(3)
    x = torch.randn(13, 256, device=DEVICE)
    default = layernorm_module.layernorm_forward(x, None, None, 1e-5)[0]
    rows = layernorm_module.tile_rows(256, 13, interpreted=layernorm_module.is_interpreted(
        layernorm_module._layernorm_forward_kernel))
    assert torch.equal(default, layernorm_module.layernorm_forward(x, None, None, 1e-5, block_rows=rows)[0])


def test_bad_schedule_overrides_are_one_line_errors():
    x = torch.randn(4, 16, device=DEVICE)
    with pytest.raises(KernelInputError, match="block_rows must be a power of two, got 3"):
        layernorm_module.layernorm_forward(x, None, None, 1e-5, block_rows=3)
    with pytest.raises(KernelInputError, match="programs must be a positive integer, got 0"):
        layernorm_module.layernorm_backward(x, x, None, torch.zeros(4), torch.ones(4),
                                            want_dweight=False, want_dbias=False, programs=0)
    with pytest.raises(KernelInputError, match="block_vocab must be a power of two, got 1000"):
        cross_entropy_module.fused_linear_cross_entropy_forward(
            x, torch.randn(10, 16, device=DEVICE), torch.zeros(4, dtype=torch.long, device=DEVICE),
            block_vocab=1000)


def test_empty_width_and_empty_vocabulary_are_refused():
    """No numbers exist for these: a clear error instead of nan or -inf."""
    with pytest.raises(KernelInputError, match="x has width 0"):
        layernorm_module.layernorm_forward(torch.zeros(3, 0, device=DEVICE), None, None, 1e-5)
    with pytest.raises(KernelInputError, match="weight has 0 rows, the vocabulary is empty"):
        cross_entropy_module.fused_linear_cross_entropy(
            torch.randn(3, 8, device=DEVICE), torch.zeros(0, 8, device=DEVICE),
            torch.full((3,), -1, device=DEVICE))
