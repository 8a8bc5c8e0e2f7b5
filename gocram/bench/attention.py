"""Tokens/s and peak memory of each attention backend at several sequence lengths.

    python -m gocram.bench.attention                      # every backend, T = 256, 1024, 2048
    python -m gocram.bench.attention --backends math sdpa_flash --seq-lens 512 4096 --documents

Each case (backend, T, causal or packed documents) runs in a fresh subprocess, so one case's
peak memory cannot hide another's: on CUDA the allocator's peak above the inputs, on CPU the
process's peak RSS above its RSS once the inputs exist. A case runs forward+backward where the
backend can train on this device, forward only where it can only infer (flex on CPU), and is
listed with its reason where it cannot run. Writes <out>/<device>.csv and <out>/<device>.md; the
markdown adds each backend's memory exponent (log mem ratio / log T ratio between the two largest
T: ~1 for flash-style kernels, ~2 for math).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from gocram.core.env import device_name, pick_device
from gocram.core.files import atomic_write_text
from gocram.models.parts import ATTENTIONS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FIELDS = ["backend", "seq_len", "mask", "mode", "status", "tokens_per_s", "ms_per_iter",
          "peak_mem_mib", "mem_kind", "warmup_s", "batch", "heads", "head_size", "dtype", "device"]
CASE_TIMEOUT_S = 600


def document_ids(B: int, T: int, seed: int = 0) -> torch.Tensor:
    """(B, T) packed rows: documents of random length between 1 and T/2."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        ids: list[int] = []
        while len(ids) < T:
            ids += [len(set(ids))] * int(torch.randint(1, max(2, T // 2), (1,), generator=gen))
        rows.append(ids[:T])
    return torch.tensor(rows)


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _reset_peak(device: torch.device) -> int:
    """Start a fresh peak-memory window; returns the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _peak_since_reset(device: torch.device, base: int) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - base, "cuda_peak_above_inputs"
    return _status_kib("VmHWM") * 1024 - base, "rss_peak_above_inputs"


def measure(case: dict) -> dict:
    """Time one case in this process; called in a fresh subprocess per case."""
    device = torch.device(case["device"])
    dtype = DTYPES[case["dtype"]]
    B, nh, T, hs = case["batch"], case["heads"], case["seq_len"], case["head_size"]
    backward = case["mode"] == "fwd+bwd"
    backend = ATTENTIONS.build(case["backend"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)

    def inputs(T: int):
        q, k, v = (torch.randn(B, nh, T, hs, device=device, dtype=dtype, requires_grad=backward)
                   for _ in range(3))
        grad = torch.randn(B, nh, T, hs, device=device, dtype=dtype)
        docs = document_ids(B, T).to(device) if case["mask"] == "documents" else None
        return q, k, v, grad, docs

    def step(q, k, v, grad, docs):
        out = backend(q, k, v, document_ids=docs)
        if backward:
            out.backward(grad)
            q.grad = k.grad = v.grad = None

    grad_mode = torch.enable_grad() if backward else torch.no_grad()
    with grad_mode:
        real = inputs(T)
        t0 = time.perf_counter()
        step(*real)  # warm-up: compilation (flex on CUDA), library scratch buffers, mask caches
        sync()
        warmup_s = time.perf_counter() - t0
        base = _reset_peak(device)
        step(*real)
        sync()
        peak, kind = _peak_since_reset(device, base)
        times = []
        for _ in range(case["repeats"]):
            t0 = time.perf_counter()
            step(*real)
            sync()
            times.append(time.perf_counter() - t0)
    per_iter = statistics.median(times)  # the median shrugs off a neighbour's burst on a shared machine
    return {**case, "status": "ok", "tokens_per_s": round(B * T / per_iter, 1),
            "ms_per_iter": round(per_iter * 1e3, 3), "peak_mem_mib": round(max(peak, 0) / 2**20, 2),
            "mem_kind": kind, "warmup_s": round(warmup_s, 3)}


def plan(backend: str, T: int, mask: str, *, device, dtype, head_size, base: dict) -> dict:
    """The case to run, with its mode, or a row saying why it cannot run here."""
    entry = ATTENTIONS.build(backend)
    row = {**base, "backend": backend, "seq_len": T, "mask": mask}
    reasons = {}
    for mode, training in (("fwd+bwd", True), ("fwd", False)):
        reasons[mode] = entry.unsupported_reason(device=device, dtype=dtype, training=training,
                                                 document_mask=mask == "documents", head_size=head_size)
        if reasons[mode] is None:
            return {**row, "mode": mode, "status": "pending"}
    return {**row, "mode": "-", "status": f"unsupported: {reasons['fwd']}"}


def run_case(case: dict) -> dict:
    cmd = [sys.executable, "-m", "gocram.bench.attention", "--one", json.dumps(case)]
    # A fixed glibc mmap threshold: large CPU tensors are mapped and unmapped, so the peak RSS
    # follows what is live instead of what malloc kept from the warm-up.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CASE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {**case, "status": f"failed: over {CASE_TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or ["no output"]
        return {**case, "status": f"failed: {lines[-1][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_exponents(rows: list[dict]) -> dict[tuple[str, str, str], float]:
    """(backend, mask, mode) -> slope of log(peak memory) against log(T) over the two largest T.

    The two largest, because a constant share (thread buffers, masks' bookkeeping) flattens the
    slope at small T.
    """
    found = {}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if row["status"] == "ok" and row["peak_mem_mib"] > 0:
            groups.setdefault((row["backend"], row["mask"], row["mode"]), []).append(row)
    for key, group in groups.items():
        group.sort(key=lambda r: r["seq_len"])
        lo, hi = group[-2:] if len(group) > 1 else (group[0], group[0])
        if hi["seq_len"] > lo["seq_len"]:
            found[key] = math.log(hi["peak_mem_mib"] / lo["peak_mem_mib"]) / math.log(
                hi["seq_len"] / lo["seq_len"])
    return found


def to_markdown(rows: list[dict], header: list[str]) -> str:
    exps = memory_exponents(rows)
    lines = [*header, "",
             "| backend | mask | mode | T | tokens/s | ms/iter | peak MiB | mem exponent | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        where = f"| {r['backend']} | {r['mask']} | {r['mode']} | {r['seq_len']} |"
        if r["status"] != "ok":
            lines.append(f"{where} | | | | {r['status']} |")
            continue
        exp = exps.get((r["backend"], r["mask"], r["mode"]))
        lines.append(f"{where} {r['tokens_per_s']:,.0f} | {r['ms_per_iter']} | {r['peak_mem_mib']} | "
                     f"{'' if exp is None else f'{exp:.2f}'} | ok |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gocram.bench.attention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=None, help="default: every registered one")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[256, 1024, 2048])
    parser.add_argument("--masks", nargs="+", choices=["causal", "documents"],
                        default=["causal", "documents"])
    parser.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 8 on CUDA")
    parser.add_argument("--heads", type=int, default=None, help="default: 4 on CPU, 12 on CUDA")
    parser.add_argument("--head-size", type=int, default=64)
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="auto: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="default: 5 on CPU, 20 on CUDA")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("results/attention"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one JSON case
    args = parser.parse_args(argv)
    if args.one:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flex's eager-mode notice on CPU
            print(json.dumps(measure(json.loads(args.one))))
        return 0

    from gocram.core.errors import GocramError

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    dtype_name = args.dtype if args.dtype != "auto" else ("bf16" if cuda else "fp32")
    base = {"batch": args.batch or (8 if cuda else 1), "heads": args.heads or (12 if cuda else 4),
            "head_size": args.head_size, "dtype": dtype_name, "device": str(device),
            "repeats": args.repeats or (20 if cuda else 5)}
    names = args.backends or ATTENTIONS.names()
    for name in names:
        if name not in ATTENTIONS:
            raise GocramError(f"--backends: unknown attention {name!r}; choose from {ATTENTIONS.names()}")
    rows = []
    for name in names:
        for mask in args.masks:
            if mask == "documents" and not ATTENTIONS.get(name).supports_document_mask:
                continue
            for T in args.seq_lens:
                case = plan(name, T, mask, device=device, dtype=DTYPES[dtype_name],
                            head_size=args.head_size, base=base)
                row = run_case(case) if case["status"] == "pending" else case
                rows.append(row)
                print(f"{name:15s} {mask:9s} T={T:5d} {row['mode']:7s} "
                      + (f"{row['tokens_per_s']:>12,.0f} tok/s {row['peak_mem_mib']:>9} MiB"
                         if row["status"] == "ok" else row["status"]), flush=True)
    load = os.getloadavg()
    header = [
        f"# Attention backends on {device_name(device)}",
        "",
        f"torch {torch.__version__}; {dtype_name}; batch {base['batch']}, {base['heads']} heads, "
        f"head size {args.head_size}; median of {base['repeats']} timed iterations after one warm-up; "
        f"{time.strftime('%Y-%m-%d %H:%M')}; load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
        f"on {os.cpu_count()} CPUs (a loaded machine makes the timings noisy).",
        "Peak memory: on the second call, above what was in use before it (CUDA allocator peak, or "
        "CPU peak RSS). "
        "'documents' rows use packed rows of documents 1..T/2 tokens long.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", ("cuda-" + device_name(device) if cuda else "cpu").lower()).strip("-")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out / f"{slug}.csv", buffer.getvalue())
    atomic_write_text(args.out / f"{slug}.md", to_markdown(rows, header))
    print(f"wrote {args.out / slug}.csv and .md")
    return 0


if __name__ == "__main__":
    from gocram.core.errors import GocramError

    try:
        sys.exit(main())
    except GocramError as err:
        print(f"gocram: error: {err}", file=sys.stderr)
        sys.exit(2)
