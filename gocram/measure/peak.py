"""Measure the dense matmul peak this device actually reaches, beside its datasheet number.

    python -m gocram.measure.peak --out results/gpu/peak.json

MFU is quoted against the vendor's dense bf16 peak (gocram/measure/flops.py); a measured matmul
peak says how much of that a perfect kernel gets here (clocks, power caps, MIG slices). On CUDA
it times bf16 square matmuls; on CPU fp32 ones. A CPU run's MFU is against the peak that
`cpu_matmul_peak_tflops` measures in the run's own process, in its precision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gocram.config import ModelConfig
from gocram.core.env import device_name, git_sha, pick_device, versions
from gocram.measure.flops import peak_tflops


def _time_matmul(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best seconds for one (n, n) @ (n, n) over `repeats` timed runs after a warm-up."""
    return _best_seconds((n, n, n), dtype, device, rounds=repeats, calls=1)


def _best_seconds(shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device, *,
                  rounds: int, calls: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per (m, k) @ (k, n) matmul: the best of `rounds` timed rounds of `calls` back-to-back
    matmuls each, after two warm-up rounds (caches, clocks, the cuBLAS heuristics)."""
    m, k, n = shape
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(rounds + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = clock()
        for _ in range(calls):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, (clock() - t0) / calls)
    return best


def run_matmul_shape(model: ModelConfig, micro_batch: int, max_rows: int = 2048) -> tuple[int, int, int]:
    """(m, k, n) of a run's largest matmul, the LM head: (B*T, d) @ (d, V); rows capped so one
    measurement stays well under a second on a CPU."""
    return min(micro_batch * model.seq_len, max_rows), model.d_model, model.padded_vocab_size


def cpu_matmul_peak_tflops(dtype: torch.dtype = torch.float32,
                           shape: tuple[int, int, int] = (1024, 1024, 1024), *,
                           rounds: int = 5, calls: int = 3) -> float:
    """This process's best matmul rate on the CPU for `shape` (m, k, n), the basis of a CPU run's MFU.

    A shared VM can halve one measurement (a neighbour's burst), and one matmul is too short for the
    timer: so the best of several rounds of several calls, in the run's own precision and shapes
    (`run_matmul_shape`); the trainer measures again at the end of a run and keeps the best.
    """
    m, k, n = shape
    seconds = _best_seconds(shape, dtype, torch.device("cpu"), rounds=rounds, calls=calls)
    return 2 * m * k * n / seconds / 1e12


def measure(device: torch.device, sizes: tuple[int, ...], repeats: int) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    by_size = {}
    for n in sizes:
        seconds = _time_matmul(n, dtype, device, repeats)
        by_size[n] = 2 * n**3 / seconds / 1e12
    name = device_name(device)
    best = max(by_size.values())
    sheet = peak_tflops(name) if device.type == "cuda" else None
    return {
        "device": name, "dtype": str(dtype).removeprefix("torch."), "tflops_by_size": by_size,
        "measured_peak_tflops": best, "datasheet_peak_tflops": sheet,
        "measured_over_datasheet": best / sheet if sheet else None,
        "threads": torch.get_num_threads(), "git_sha": git_sha(), "versions": versions(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gocram.measure.peak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="", help="comma-separated matrix sizes (default per device)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    default = (4096, 8192, 16384) if device.type == "cuda" else (512, 1024, 2048)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s) or default
    result = measure(device, sizes, args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
