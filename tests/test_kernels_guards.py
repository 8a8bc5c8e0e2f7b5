"""Input a kernel cannot take raises a clear error (or is copied into a shape it can take), never
returns wrong numbers; and the availability helper says why kernels cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gocram.core.errors import ConfigError, GocramError
from gocram.kernels.availability import KernelInputError, triton_missing, unsupported_reason
from gocram.kernels.bias_gelu import bias_gelu, bias_gelu_backward, bias_gelu_forward
from gocram.kernels.cross_entropy import (
    cross_entropy_rows,
    fused_linear_cross_entropy,
    fused_linear_cross_entropy_forward,
)
from gocram.kernels.layernorm import MAX_WIDTH, TritonLayerNorm, layernorm, layernorm_forward
from gocram.kernels.reference import (
    bias_gelu_reference,
    layernorm_reference,
    linear_cross_entropy_reference,
)
from tests.kernel_device import DEVICE, needs_kernels

REPO = Path(__file__).resolve().parent.parent



# -- the availability helper ---------------------------------------------------------------------
def test_unsupported_reason_names_the_problem():
    assert triton_missing() is None
    assert "not on meta" in unsupported_reason("meta")
    if not torch.cuda.is_available():
        assert unsupported_reason("cuda") == "needs CUDA: no CUDA device is available"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter is only needed without CUDA")
def test_cpu_is_supported_under_the_interpreter():
    assert os.environ.get("TRITON_INTERPRET") == "1", "run the suite with TRITON_INTERPRET=1"
    assert unsupported_reason("cpu") is None


def test_without_the_interpreter_cpu_input_raises_a_clear_error():
    """A fresh process without TRITON_INTERPRET: compiled kernels cannot take CPU tensors."""
    script = (
        "import torch\n"
        "from gocram.kernels.availability import unsupported_reason\n"
        "from gocram.kernels.layernorm import layernorm\n"
        "from gocram.models.gpt import GPT\n"
        "from gocram.config import ImplConfig, ModelConfig\n"
        "from gocram.core.errors import GocramError\n"
        "print('REASON', unsupported_reason('cpu'))\n"
        "try:\n"
        "    layernorm(torch.randn(2, 8), torch.ones(8), None)\n"
        "except GocramError as err:\n"
        "    print('LAYERNORM', err)\n"
        "cfg = ModelConfig(n_layer=1, n_head=1, d_model=8, seq_len=4, vocab_size=10)\n"
        "try:\n"
        "    ids = torch.zeros(1, 4, dtype=torch.long)\n"
        "    GPT(cfg, impl=ImplConfig(loss='triton'))(ids, ids)\n"
        "except GocramError as err:\n"
        "    print('LOSS', err)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "TRITON_INTERPRET=1" in lines["REASON"]
    assert "interpreter is off" in lines["LAYERNORM"] and "x is on the CPU" in lines["LAYERNORM"]
    assert "interpreter is off" in lines["LOSS"]


# -- wrong device, dtype, layout, width ----------------------------------------------------------
def test_meta_and_mixed_devices_are_refused():
    x = torch.empty(4, 8, device="meta")
    with pytest.raises(KernelInputError, match="x is on meta"):
        layernorm(x, None, None)
    with pytest.raises(KernelInputError, match="different devices"):
        layernorm(torch.randn(4, 8), torch.ones(8, device="meta"), None)
    with pytest.raises(KernelInputError, match="h is on meta"):
        bias_gelu(torch.empty(2, 8, device="meta"), None)
    with pytest.raises(KernelInputError, match="different devices"):
        fused_linear_cross_entropy(torch.randn(3, 8), torch.randn(5, 8, device="meta"),
                                   torch.zeros(3, dtype=torch.long))


def test_unsupported_dtype_is_refused():
    with pytest.raises(KernelInputError, match="x must be fp32, fp16 or bf16"):
        layernorm(torch.randn(4, 8, dtype=torch.float64), None, None)
    with pytest.raises(KernelInputError, match="h must be fp32, fp16 or bf16"):
        bias_gelu(torch.ones(4, 8, dtype=torch.int32), None)


def test_width_over_the_block_limit_is_refused():
    wide = MAX_WIDTH + 1
    with pytest.raises(KernelInputError, match=f"width {wide} is over its block limit"):
        layernorm_forward(torch.zeros(1, wide, device=DEVICE), None, None, 1e-5)
    with pytest.raises(ConfigError, match=f"model.d_model={wide}"):
        TritonLayerNorm(wide)


@needs_kernels
def test_launchers_refuse_non_contiguous_input_and_the_functions_copy_it():
    torch.manual_seed(0)
    x = torch.randn(40, 6, device=DEVICE).t()  # (6, 40), strides (1, 6)
    w, b = torch.randn(40, device=DEVICE), torch.randn(40, device=DEVICE)
    with pytest.raises(KernelInputError, match="x must be contiguous"):
        layernorm_forward(x, w, b, 1e-5)
    torch.testing.assert_close(layernorm(x, w, b), layernorm_reference(x, w, b))
    with pytest.raises(KernelInputError, match="h must be contiguous"):
        bias_gelu_forward(x, b)
    torch.testing.assert_close(bias_gelu(x, b), bias_gelu_reference(x, b))
    weight = torch.randn(50, 6, device=DEVICE)
    targets = torch.randint(0, 50, (40,), device=DEVICE)
    hidden = torch.randn(6, 40, device=DEVICE).t()  # (40, 6), not contiguous
    with pytest.raises(KernelInputError, match="hidden must be contiguous"):
        fused_linear_cross_entropy_forward(hidden, weight, targets)
    torch.testing.assert_close(fused_linear_cross_entropy(hidden, weight, targets),
                               linear_cross_entropy_reference(hidden, weight, targets))


@needs_kernels
def test_shape_and_argument_errors():
    x = torch.randn(3, 8, device=DEVICE)
    with pytest.raises(KernelInputError, match=r"weight has shape \(7,\), expected \(8,\)"):
        layernorm_forward(x, torch.ones(7, device=DEVICE), None, 1e-5)
    with pytest.raises(KernelInputError, match="approximate must be one of"):
        bias_gelu(x, None, "sigmoid")
    with pytest.raises(KernelInputError, match=r"dy \(3, 7\) != h \(3, 8\)"):
        bias_gelu_backward(torch.zeros(3, 7, device=DEVICE), x, None)
    weight = torch.randn(10, 8, device=DEVICE)
    with pytest.raises(KernelInputError, match="reduction must be one of"):
        fused_linear_cross_entropy(x, weight, torch.zeros(3, dtype=torch.long, device=DEVICE),
                                   reduction="none")
    with pytest.raises(KernelInputError, match="target 10 is outside"):
        fused_linear_cross_entropy(x, weight, torch.tensor([0, 10, -1], device=DEVICE))
    with pytest.raises(KernelInputError, match="target -2 is outside"):
        fused_linear_cross_entropy(x, weight, torch.tensor([0, -2, 1], device=DEVICE))
    with pytest.raises(KernelInputError, match="targets must be integer class ids"):
        fused_linear_cross_entropy(x, weight, torch.zeros(3, device=DEVICE))
    with pytest.raises(KernelInputError, match="expected hidden"):
        fused_linear_cross_entropy(x, torch.randn(10, 9, device=DEVICE),
                                   torch.zeros(3, dtype=torch.long, device=DEVICE))
    with pytest.raises(KernelInputError, match="targets must be contiguous"):
        cross_entropy_rows(torch.zeros(2, 10, device=DEVICE),
                           torch.zeros(2, 2, dtype=torch.long, device=DEVICE)[:, 0],
                           torch.ones(1, device=DEVICE), write_grad=False)


def test_kernel_errors_are_user_errors():
    """The CLI prints GocramError as one line (exit 2); kernel refusals are of that kind."""
    assert issubclass(KernelInputError, GocramError)


@needs_kernels
def test_empty_input_gives_empty_output():
    x = torch.zeros(0, 16, device=DEVICE, requires_grad=True)
    w = torch.ones(16, device=DEVICE, requires_grad=True)
    layernorm(x, w, None).sum().backward()
    assert w.grad is not None and not w.grad.any()
    h = torch.zeros(0, 16, device=DEVICE, requires_grad=True)
    b = torch.zeros(16, device=DEVICE, requires_grad=True)
    bias_gelu(h, b).sum().backward()
    assert b.grad is not None and not b.grad.any()
