"""pytest-benchmark timings of one whole training step of a config, in fp32 and bf16 autocast.

    pytest benchmarks/test_step_bench.py        # not collected by the default test run

The split by part (embeddings, attention, MLP, norms, loss, backward, optimizer) comes from
`python -m gocram.bench.step_profile`; this times the step as a whole, as the trainer runs it
(eager; impl.* of the config applies, e.g. impl.loss, impl.optimizer_kernel, impl.threads).
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")

from gocram.bench.step_profile import training_step  # noqa: E402
from gocram.config import load_config  # noqa: E402

CONFIG = "tiny"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_step(benchmark, precision):
    step = training_step(load_config(CONFIG), precision)
    benchmark.group = f"{CONFIG} training step"
    benchmark.pedantic(step, rounds=10, warmup_rounds=3)
