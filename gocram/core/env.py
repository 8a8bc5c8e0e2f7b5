"""Who ran this: device name, library versions and the git commit, for every result row."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from gocram.core.errors import ConfigError

        raise ConfigError("impl.device=cuda but no CUDA device is available")
    return torch.device(requested)


def _cpuinfo_field(key: str) -> str | None:
    """The first `key : value` of /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@cache
def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown CPU"


@cache
def cpu_flags() -> frozenset[str]:
    return frozenset((_cpuinfo_field("flags") or "").split())


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 dot products in hardware, so bf16 autocast pays on this CPU."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_isa() -> str:
    """The vector ISA torch dispatches to, plus native bf16 where the CPU has it.

    Two VMs can share a model name ("AMD EPYC") yet differ here, and bf16 autocast is ~50x slower
    without native bf16 dot products: rows from the two must not share a table.
    """
    isa = torch.backends.cpu.get_cpu_capability()
    if cpu_has_native_bf16():
        isa += "+bf16"
    return isa


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{cpu_name()} ({threads} thread{'s' if threads != 1 else ''}, {cpu_isa()})"


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("triton", "tokenizers", "numpy", "deepspeed", "flash-attn", "xformers", "gocram"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    found["cuda"] = torch.version.cuda
    return found


@cache
def git_sha() -> str | None:
    return describe_checkout(REPO_ROOT)


def describe_checkout(root: Path) -> str | None:
    """HEAD of a checkout, with '-dirty' when tracked files outside results/ have changed.

    results/ is what the harness itself writes (tables, runs.jsonl): a matrix rewriting it between
    cells must not mark the next cell's code as uncommitted.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GOCRAM_GIT_SHA")


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA's allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_peak_rss"
