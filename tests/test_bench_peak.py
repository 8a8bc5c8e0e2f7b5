"""The measured matmul peak and the GPU check script's behaviour without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gocram.measure.peak import main, measure
from tests.conftest import REPO


def test_measured_peak_is_the_best_size_and_positive():
    result = measure(torch.device("cpu"), (64, 128), repeats=2)
    assert result["measured_peak_tflops"] == max(result["tflops_by_size"].values()) > 0
    assert result["datasheet_peak_tflops"] is None and result["dtype"] == "float32"


def test_cli_writes_json(tmp_path):
    out = tmp_path / "peak.json"
    assert main(["--device", "cpu", "--sizes", "64", "--repeats", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tflops_by_size"]["64"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script is the GPU check itself")
def test_gpu_check_refuses_plainly_without_cuda(tmp_path):
    done = subprocess.run(["bash", str(REPO / "gocram" / "bench" / "gpu_check.sh")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "gpu"),
                                          "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 3 and "no CUDA device" in done.stderr


def test_cpu_mfu_needs_a_measured_peak_and_uses_it():
    from gocram.measure.flops import mfu
    from gocram.measure.peak import cpu_matmul_peak_tflops

    assert mfu(1000.0, 1e6, "cpu", "AMD EPYC (2 threads, AVX2)") == (
        None, "not applicable on CPU without a measured matmul peak")
    peak = cpu_matmul_peak_tflops(torch.float32, (64, 32, 128), rounds=1, calls=1)
    value, note = mfu(1000.0, 1e6, "cpu", "AMD EPYC (2 threads, AVX2)", measured_peak_tflops=peak)
    assert value == pytest.approx(1e9 / (peak * 1e12)) and note.startswith("measured matmul peak")


def test_cpu_peak_takes_the_runs_own_shape_and_the_best_of_several_rounds():
    from gocram.config import ModelConfig
    from gocram.measure.peak import _best_seconds, run_matmul_shape

    cfg = ModelConfig(n_layer=1, n_head=1, d_model=32, seq_len=64, vocab_size=100)
    assert run_matmul_shape(cfg, micro_batch=4) == (256, 32, cfg.padded_vocab_size)
    assert run_matmul_shape(cfg, micro_batch=1000) == (2048, 32, cfg.padded_vocab_size)
    # Two warm-up rounds, then rounds of 3, 1 (a neighbour's burst would be the slow one) and 2 s.
    ticks = iter([0, 100, 100, 200, 200, 203, 203, 204, 204, 206])
    seconds = _best_seconds((8, 8, 8), torch.float32, torch.device("cpu"), rounds=3, calls=2,
                            clock=lambda: next(ticks))
    assert seconds == 0.5  # the best round, per call
