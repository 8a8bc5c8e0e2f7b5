"""Measure the dense matmul peak this device actually reaches, beside its datasheet number.

    python -m gocram.bench.peak --out results/gpu/peak.json

MFU is quoted against the vendor's dense bf16 peak (gocram/bench/flops.py); a measured matmul
peak says how much of that a perfect kernel gets here (clocks, power caps, MIG slices). On CUDA
it times bf16 square matmuls; on CPU fp32 ones. A CPU run's MFU is against the peak that
`cpu_matmul_peak_tflops` measures in the run's own process, in its precision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from gocram.bench.flops import peak_tflops
from gocram.core.env import device_name, git_sha, pick_device, versions


def _time_matmul(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best seconds for one (n, n) @ (n, n) over `repeats` timed runs after a warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 2):  # the first two warm up caches, clocks and the cuBLAS heuristics
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    return best


def cpu_matmul_peak_tflops(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 10) -> float:
    """This process's best (n, n) @ (n, n) rate on the CPU, the basis of a CPU run's MFU (~0.2 s).

    A shared VM can halve one measurement (a neighbour's burst): callers take the best of several.
    """
    return 2 * n**3 / _time_matmul(n, dtype, torch.device("cpu"), repeats) / 1e12


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
    parser = argparse.ArgumentParser(prog="python -m gocram.bench.peak", description=__doc__.splitlines()[0])
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
