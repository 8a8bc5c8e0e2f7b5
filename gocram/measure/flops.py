"""Model FLOPs per token and MFU against a per-device peak table.

FLOPs per token for training = 6 N + 12 L C T (PaLM appendix B): N counts the parameters in
matmuls (embedding lookups excluded, the LM head included), the second term is attention's
q k^T and att v, forward and backward. With token dropping only the work done counts: a dropping
layer's matmuls run on its kept share k of the tokens and its attention on k^2 of the pairs,
averaged over the steps the run took (`KeptTokens`). GPU peaks are vendors' dense bf16
tensor-core numbers; a measured matmul peak can be passed instead (the GPU check measures one). A
CPU has no datasheet number to trust (clocks, VM slices, the BLAS build), so its MFU is always
against a matmul peak measured in the run's own process and precision (gocram/measure/peak.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from gocram.config import ModelConfig

# Dense bf16 tensor-core TFLOPS from the vendors' datasheets (the sparsity figures halved), keyed
# by a pattern that must match the whole device name once normalised (`_normalised`): "A40" is not
# "RTX A4000", and an H100 NVL or PCIe card does not get the SXM part's peak.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"H100( \d+GB)? PCIE( \d+GB)?", 756.0),
    (r"H100( \d+GB)? NVL", 835.5),
    (r"H100( SXM5?)?( \d+GB)?( HBM3)?", 989.0),
    (r"H200( \d+GB)? NVL", 835.5),
    (r"H200( SXM)?( \d+GB)?( HBM3E)?", 989.0),
    (r"GH200( \d+GB)?( HBM3E?)?", 989.0),
    (r"A100( SXM4| PCIE)?( \d+GB)?( PCIE)?", 312.0),
    (r"RTX A6000", 154.8),
    (r"A40", 149.7),
)


def _normalised(device_name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100 SXM4 80GB': upper case, no vendor, one space between words."""
    words = re.split(r"[\s_-]+", device_name.upper().strip())
    return " ".join(w for w in words if w and w != "NVIDIA")


def peak_tflops(device_name: str) -> float | None:
    name = _normalised(device_name)
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.fullmatch(pattern, name):
            return tflops
    return None


def matmul_params_of(module: nn.Module) -> int:
    """Parameters that take part in a matmul per token (embedding lookups do not)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


@dataclass(frozen=True, kw_only=True)
class DroppedWork:
    """What token dropping skipped, for flops_per_token."""

    layers: int  # layers that drop tokens
    layer_matmul_params: int  # matmul parameters of one of them
    mean_kept: float  # their kept share of the tokens, averaged over the training steps
    mean_kept_squared: float  # the same for its square: attention is quadratic in the kept count


class KeptTokens:
    """A trainer step hook, run after the model's: each step's kept share in the dropping layers.

    A step with nothing dropped (rate 0, or the schedule past token_drop_until) keeps all tokens.
    """

    def __init__(self, token_drop, seq_len: int):
        self.token_drop, self.seq_len = token_drop, seq_len
        self.shares: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.shares.append(self.token_drop.kept(self.seq_len) / self.seq_len)

    def work(self, layer_matmul_params: int) -> DroppedWork | None:
        layers = len(self.token_drop.layers)
        if not layers or not self.shares:
            return None
        return DroppedWork(layers=layers, layer_matmul_params=layer_matmul_params,
                           mean_kept=sum(self.shares) / len(self.shares),
                           mean_kept_squared=sum(k * k for k in self.shares) / len(self.shares))


def flops_per_token(cfg: ModelConfig, matmul_params: int, dropped: DroppedWork | None = None) -> float:
    """Training FLOPs per token of the batch (forward and backward)."""
    full = 6.0 * matmul_params + 12.0 * cfg.n_layer * cfg.d_model * cfg.seq_len
    if dropped is None:
        return full
    skipped_matmul = 6.0 * dropped.layer_matmul_params * (1.0 - dropped.mean_kept)
    skipped_attention = 12.0 * cfg.d_model * cfg.seq_len * (1.0 - dropped.mean_kept_squared)
    return full - dropped.layers * (skipped_matmul + skipped_attention)


def mfu(tokens_per_s: float, flops_per_tok: float, device_type: str, device_name: str,
        measured_peak_tflops: float | None = None) -> tuple[float | None, str]:
    """(MFU or None, how it was computed or why it is not).

    Above 100% is impossible: the peak was underestimated (a CPU measurement a neighbour's burst
    slowed), so the figure is withheld and the note says so, starting with "error".
    """
    if device_type != "cuda" and measured_peak_tflops is None:
        return None, "not applicable on CPU without a measured matmul peak"
    peak = measured_peak_tflops or peak_tflops(device_name)
    if peak is None:
        return None, f"no peak known for {device_name!r}; add it to PEAK_BF16_TFLOPS"
    basis = "measured matmul peak" if measured_peak_tflops else "datasheet dense bf16 peak"
    value = tokens_per_s * flops_per_tok / (peak * 1e12)
    if value > 1.0:
        return None, (f"error: MFU {value:.1%} is above 100% against the {basis} {peak:.3g} TFLOPS, "
                      f"so that peak is an underestimate")
    return value, f"{basis} {peak:.3g} TFLOPS"
