"""Model FLOPs per token and MFU against a per-device peak table.

FLOPs per token for training = 6 N + 12 L C T (PaLM appendix B): N counts the parameters in
matmuls (embedding lookups excluded, the LM head included), the second term is attention's
q k^T and att v, forward and backward. GPU peaks are vendors' dense bf16 tensor-core numbers; a
measured matmul peak can be passed instead (the GPU check measures one). A CPU has no datasheet
number to trust (clocks, VM slices, the BLAS build), so its MFU is always against a matmul peak
measured in the run's own process and precision (gocram/bench/peak.py).
"""

from __future__ import annotations

from gocram.config import ModelConfig

# Dense bf16 tensor-core TFLOPS from the vendors' datasheets. Order matters: first match wins.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / HBM3
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("RTX A6000", 154.8),
    ("A40", 149.7),
)


def flops_per_token(cfg: ModelConfig, matmul_params: int) -> float:
    return 6.0 * matmul_params + 12.0 * cfg.n_layer * cfg.d_model * cfg.seq_len


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, device_type: str, device_name: str,
        measured_peak_tflops: float | None = None) -> tuple[float | None, str]:
    """(MFU or None, how it was computed or why it is not)."""
    if device_type != "cuda" and measured_peak_tflops is None:
        return None, "not applicable on CPU without a measured matmul peak"
    peak = measured_peak_tflops or peak_tflops(device_name)
    if peak is None:
        return None, f"no peak known for {device_name!r}; add it to PEAK_BF16_TFLOPS"
    basis = "measured matmul peak" if measured_peak_tflops else "datasheet dense bf16 peak"
    return tokens_per_s * flops_per_tok / (peak * 1e12), f"{basis} {peak:.3g} TFLOPS"
