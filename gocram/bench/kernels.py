"""Benchmark the Triton kernels against torch eager and torch.compile of the plain-torch baseline.

    python -m gocram.bench.kernels --out results/gpu/kernels.csv

For each kernel, width and mode (forward, backward, full = forward + backward) it times the Triton
kernel, the model's plain-torch part (eager) and that part under torch.compile with
triton.testing.do_bench, and records GB/s moved and the peak extra memory. Rows are appended to a
CSV with the device name, versions and date, and a table is printed. Without CUDA it prints the
reason and exits 0 without writing anything. `--smoke` runs toy sizes on whatever device the
kernels run on (the CPU interpreter included) to check this harness end to end: its numbers mean
nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gocram.core.env import device_name, git_sha, versions
from gocram.core.files import atomic_write_text
from gocram.kernels.availability import unsupported_reason

MODES = ("forward", "backward", "full")
IMPLS = ("triton", "eager", "compile")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
COLUMNS = (
    "date", "device", "torch", "triton", "cuda", "git_sha", "kernel", "impl", "mode", "rows", "width",
    "vocab", "dtype", "ms", "gb_per_s", "peak_mem_mb", "speedup_vs_eager", "speedup_vs_compile",
    "mem_vs_eager", "target", "verdict", "status",
)


@dataclass(frozen=True, kw_only=True)
class KernelBench:
    """How to benchmark one kernel: inputs, the two implementations, and the bytes a pass moves."""

    make_inputs: Callable[..., dict]  # (rows, width, vocab, dtype, device) -> named tensors
    triton: Callable[..., torch.Tensor]  # (**inputs) -> output
    torch: Callable[..., torch.Tensor]  # the model's plain-torch part, same signature
    bytes_moved: Callable[[str, int, int, int], int | None]  # (mode, rows, width, elt) -> bytes
    target: Callable[[str, int], str]  # (mode, width) -> the target for this cell, or ""
    uses_vocab: bool = False


def _leaf(*shape, dtype, device, scale=1.0):
    return (torch.randn(*shape, device=device) * scale).to(dtype).requires_grad_()


def _layernorm_bench() -> KernelBench:
    from gocram.kernels.layernorm import layernorm
    from gocram.kernels.reference import layernorm_torch

    def make_inputs(rows, width, vocab, dtype, device):
        return {"x": _leaf(rows, width, dtype=dtype, device=device),
                "weight": _leaf(width, dtype=dtype, device=device),
                "bias": _leaf(width, dtype=dtype, device=device)}

    def bytes_moved(mode, rows, width, elt):
        # forward: read x, write y, write mean+rstd; backward: read dy, x, mean+rstd, write dx.
        fwd = 2 * rows * width * elt + 8 * rows
        bwd = 3 * rows * width * elt + 8 * rows
        return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]

    def target(mode, width):
        return ">=2x eager, >=1x compile" if mode == "full" and width == 768 else ""

    return KernelBench(make_inputs=make_inputs, triton=layernorm, torch=layernorm_torch,
                       bytes_moved=bytes_moved, target=target)


def _bias_gelu_bench(approximate: str) -> KernelBench:
    from gocram.kernels.bias_gelu import bias_gelu
    from gocram.kernels.reference import bias_gelu_torch

    def make_inputs(rows, width, vocab, dtype, device):
        return {"h": _leaf(rows, width, dtype=dtype, device=device),
                "bias": _leaf(width, dtype=dtype, device=device)}

    def bytes_moved(mode, rows, width, elt):
        # forward: read h, write y; backward: read dy and h, write dh (activation recomputed).
        return {"forward": 2, "backward": 3, "full": 5}[mode] * rows * width * elt

    def target(mode, width):
        return ">=1.5x eager" if mode == "full" else ""

    return KernelBench(
        make_inputs=make_inputs,
        triton=lambda h, bias: bias_gelu(h, bias, approximate),
        torch=lambda h, bias: bias_gelu_torch(h, bias, approximate),
        bytes_moved=bytes_moved, target=target)


def _cross_entropy_bench() -> KernelBench:
    from gocram.kernels.cross_entropy import fused_linear_cross_entropy
    from gocram.kernels.reference import linear_cross_entropy_reference

    def make_inputs(rows, width, vocab, dtype, device):
        targets = torch.randint(0, vocab, (rows,), device=device)
        return {"hidden": _leaf(rows, width, dtype=dtype, device=device),
                "weight": _leaf(vocab, width, dtype=dtype, device=device, scale=0.02),
                "targets": targets}

    def target(mode, width):
        return "peak memory <=0.5x eager" if mode == "full" else ""

    return KernelBench(
        make_inputs=make_inputs, triton=fused_linear_cross_entropy,
        torch=linear_cross_entropy_reference,
        bytes_moved=lambda mode, rows, width, elt: None,  # matmul-bound: GB/s says nothing
        target=target, uses_vocab=True)


BENCHES: dict[str, Callable[[], KernelBench]] = {
    "layernorm": _layernorm_bench,
    "bias_gelu": lambda: _bias_gelu_bench("none"),
    "bias_gelu_tanh": lambda: _bias_gelu_bench("tanh"),
    "fused_cross_entropy": _cross_entropy_bench,
}


# -- timing --------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, grad_to_none: list[torch.Tensor]) -> float:
    """Median milliseconds per call: triton's do_bench on CUDA, a wall-clock median elsewhere."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, grad_to_none=grad_to_none, return_mode="median"))
    times = []
    for _ in range(3):
        for t in grad_to_none:
            t.grad = None
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_extra_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory one call allocates beyond what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def mode_callables(impl: Callable, inputs: dict) -> dict[str, Callable]:
    """forward / backward / full closures over one implementation and its inputs."""
    out = impl(**inputs)
    upstream = torch.randn_like(out) if out.dim() else torch.ones_like(out)

    def forward():
        return impl(**inputs)

    def backward():
        out.backward(upstream, retain_graph=True)

    def full():
        impl(**inputs).backward(upstream)

    return {"forward": forward, "backward": backward, "full": full}


def compiled(fn: Callable) -> Callable:
    # A fresh compile per cell: the same code object compiled for many shapes would hit dynamo's
    # recompile limit and silently fall back to eager.
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


# -- one kernel x width ----------------------------------------------------------------------------
def bench_cell(name: str, bench: KernelBench, *, rows: int, width: int, vocab: int, dtype: torch.dtype,
               device: torch.device, impls: tuple[str, ...]) -> list[dict]:
    torch.manual_seed(0)
    inputs = bench.make_inputs(rows, width, vocab, dtype, device)
    grads = [t for t in inputs.values() if t.requires_grad]
    implementations = {"triton": bench.triton, "eager": bench.torch,
                       "compile": compiled(bench.torch) if "compile" in impls else None}
    elt = torch.empty((), dtype=dtype).element_size()
    rows_out = []
    for impl in impls:
        try:
            calls = mode_callables(implementations[impl], inputs)
        except Exception as err:  # noqa: BLE001 - one broken cell must not lose the others
            rows_out += [_row(name, impl, mode, rows, width, vocab if bench.uses_vocab else None, dtype,
                              status=f"error: {type(err).__name__}: {err}") for mode in MODES]
            continue
        for mode in MODES:
            row = _row(name, impl, mode, rows, width, vocab if bench.uses_vocab else None, dtype)
            try:
                calls[mode]()  # warm-up: compiles (e.g. compile's lazy backward) are not measured
                row["peak_mem_mb"] = peak_extra_mb(calls[mode], device)
                row["ms"] = time_ms(calls[mode], device, grads)
            except Exception as err:  # noqa: BLE001
                row["status"] = f"error: {type(err).__name__}: {err}"
                rows_out.append(row)
                continue
            moved = bench.bytes_moved(mode, rows, width, elt)
            row["gb_per_s"] = moved / row["ms"] / 1e6 if moved else None
            row["target"] = bench.target(mode, width) if impl == "triton" else ""
            rows_out.append(row)
        for t in grads:
            t.grad = None
    _compare(rows_out)
    return rows_out


def _row(kernel, impl, mode, rows, width, vocab, dtype, *, status="ok") -> dict:
    return {"kernel": kernel, "impl": impl, "mode": mode, "rows": rows, "width": width, "vocab": vocab,
            "dtype": str(dtype).removeprefix("torch."), "ms": None, "gb_per_s": None,
            "peak_mem_mb": None, "speedup_vs_eager": None, "speedup_vs_compile": None,
            "mem_vs_eager": None, "target": "", "verdict": "", "status": status}


def _compare(rows: list[dict]) -> None:
    """Fill speedups, memory ratios and a verdict that says plainly where the kernel loses."""
    by_key = {(r["impl"], r["mode"]): r for r in rows if r["status"] == "ok"}
    for row in rows:
        if row["status"] != "ok":
            continue
        eager, comp = by_key.get(("eager", row["mode"])), by_key.get(("compile", row["mode"]))
        if eager and row["impl"] != "eager":
            row["speedup_vs_eager"] = eager["ms"] / row["ms"]
            if row["peak_mem_mb"] is not None and eager["peak_mem_mb"]:
                row["mem_vs_eager"] = row["peak_mem_mb"] / eager["peak_mem_mb"]
        if comp and row["impl"] == "triton":
            row["speedup_vs_compile"] = comp["ms"] / row["ms"]
        if row["impl"] == "triton":
            row["verdict"] = _verdict(row)


def _verdict(row: dict) -> str:
    words = []
    if row["speedup_vs_eager"] is not None:
        words.append("beats eager" if row["speedup_vs_eager"] >= 1 else "LOSES to eager")
    if row["speedup_vs_compile"] is not None:
        words.append("beats compile" if row["speedup_vs_compile"] >= 1 else "LOSES to compile")
    met = _target_met(row)
    if met is not None:
        words.append("target met" if met else "target MISSED")
    return ", ".join(words)


def _target_met(row: dict) -> bool | None:
    target = row["target"]
    if not target:
        return None
    checks = []
    if ">=2x eager" in target or ">=1.5x eager" in target:
        need = 2.0 if ">=2x eager" in target else 1.5
        checks.append(row["speedup_vs_eager"] is not None and row["speedup_vs_eager"] >= need)
    if ">=1x compile" in target:
        checks.append(row["speedup_vs_compile"] is not None and row["speedup_vs_compile"] >= 1.0)
    if "peak memory" in target:
        checks.append(row["mem_vs_eager"] is not None and row["mem_vs_eager"] <= 0.5)
    return all(checks) if checks else None


# -- output ----------------------------------------------------------------------------------------
def identity(device: torch.device) -> dict:
    found = versions()
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device_name(device),
            "torch": found["torch"], "triton": found["triton"], "cuda": found["cuda"],
            "git_sha": git_sha()}


def append_csv(path: Path, rows: list[dict]) -> None:
    """Append rows, rewriting the file atomically so an interrupted run loses nothing written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if old and old.splitlines()[0].split(",") != list(COLUMNS):
        from gocram.core.errors import GocramError

        raise GocramError(f"{path}: has other columns than this benchmark writes; use another --out")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerows({k: _fmt(row.get(k)) for k in COLUMNS} for row in rows)
    atomic_write_text(path, old + buffer.getvalue())


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else value


def print_table(rows: list[dict], out=None) -> None:
    out = out or sys.stdout
    head = ("kernel", "impl", "mode", "width", "ms", "gb_per_s", "peak_mem_mb", "speedup_vs_eager",
            "speedup_vs_compile", "mem_vs_eager", "verdict")
    print("| " + " | ".join(head) + " |", file=out)
    print("|" + "---|" * len(head), file=out)
    for row in rows:
        cells = [str(_fmt(row.get(k))) for k in head]
        if row["status"] != "ok":
            cells[-1] = row["status"]
        print("| " + " | ".join(cells) + " |", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gocram.bench.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu/kernels.csv", help="CSV to append rows to")
    parser.add_argument("--kernels", default=",".join(BENCHES), help="comma-separated subset")
    parser.add_argument("--widths", default="256,512,768,1024,2048,3072,4096")
    parser.add_argument("--rows", type=int, default=8 * 1024)
    parser.add_argument("--vocab", type=int, default=32768, help="fused_cross_entropy's vocabulary")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--smoke", action="store_true",
                        help="toy sizes on any device the kernels run on, to check this harness")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kernels.split(",")) - set(BENCHES))
    if unknown:
        parser.error(f"unknown kernel(s) {unknown}; choose from {sorted(BENCHES)}")
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        parser.error(f"--widths must be comma-separated integers, got {args.widths!r}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reason = unsupported_reason(device)
    if device.type != "cuda" and not args.smoke:
        reason = reason or "needs CUDA: no CUDA device is available"
    if reason:
        print(f"gocram.bench.kernels: skipped, {reason}")
        return 0
    if args.smoke:  # toy sizes: the interpreter is slow, and these numbers are not for tables
        args.rows, args.vocab = min(args.rows, 9), min(args.vocab, 300)
        widths = [w for w in widths if w <= 64] or [33]
    impls = tuple(i for i in IMPLS if not (i == "compile" and (args.no_compile or args.smoke)))
    ident = identity(device)
    all_rows = []
    for name in args.kernels.split(","):
        bench = BENCHES[name]()
        for width in widths:
            rows = bench_cell(name, bench, rows=args.rows, width=width, vocab=args.vocab,
                              dtype=DTYPES[args.dtype], device=device, impls=impls)
            if args.smoke:
                for row in rows:
                    row["status"] += " (smoke: toy sizes, not a measurement)" if row["status"] == "ok" else ""
            all_rows += [{**ident, **row} for row in rows]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print_table(all_rows)
    append_csv(Path(args.out), all_rows)
    print(f"appended {len(all_rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
