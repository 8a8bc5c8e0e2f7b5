"""pytest-benchmark timings of the Triton kernels vs the model's plain-torch parts (GPU only).

    pytest benchmarks/test_kernels_bench.py        # not collected by the default test run

Rows = 8 x 1024 in bf16, one full step (forward + backward) per call. The CSV table with
torch.compile, GB/s and peak memory comes from `python -m gocram.bench.kernels`.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("pytest_benchmark")

from gocram.bench.kernels import BENCHES, mode_callables  # noqa: E402
from gocram.kernels.availability import unsupported_reason  # noqa: E402

DEVICE = torch.device("cuda")
if not torch.cuda.is_available():
    pytest.skip("needs CUDA: kernel timings on the CPU interpreter mean nothing",
                allow_module_level=True)
_REASON = unsupported_reason(DEVICE)
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

ROWS, VOCAB = 8 * 1024, 32768
CASES = [("layernorm", 768), ("layernorm", 4096), ("bias_gelu", 3072), ("bias_gelu_tanh", 3072),
         ("fused_cross_entropy", 768)]


@pytest.mark.parametrize("impl", ["triton", "eager"])
@pytest.mark.parametrize("kernel,width", CASES)
def test_full_step(benchmark, kernel, width, impl):
    bench = BENCHES[kernel]()
    inputs = bench.make_inputs(ROWS, width, VOCAB, torch.bfloat16, DEVICE)
    grads = [t for t in inputs.values() if t.requires_grad]
    full = mode_callables(bench.triton if impl == "triton" else bench.torch, inputs)["full"]

    def step():
        for t in grads:
            t.grad = None
        full()
        torch.cuda.synchronize()

    benchmark.group = f"{kernel} width={width}"
    benchmark.pedantic(step, rounds=20, warmup_rounds=3)
