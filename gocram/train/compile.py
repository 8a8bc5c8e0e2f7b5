"""torch.compile for the training model: its mode, and inductor's on-disk cache kept under the run's
cache directory (data.cache_dir, else $GOCRAM_CACHE), so a second run of the same model loads the
compiled code instead of compiling it again. Whether it did is reported, never hidden: a row's
`compile_cache` says `cold` (something was compiled), `warm` (everything came from the cache) or
`partial`, beside `compile_s`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# impl.compile_mode -> torch.compile(mode=...)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch's documented setting for where inductor keeps its caches (FX graphs, AOT autograd, kernels).
# Always the run's: torch writes its default back into this variable, so a value inherited from a
# parent process says nothing about what a user chose.
CACHE_DIR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def inductor_cache_dir(cache_root: Path) -> Path:
    return cache_root / "inductor"


def compile_model(model: torch.nn.Module, mode: str, cache_root: Path) -> torch.nn.Module:
    """torch.compile(model, mode) with inductor's cache under cache_root (read when it compiles)."""
    os.environ[CACHE_DIR_ENV] = str(inductor_cache_dir(cache_root))
    return torch.compile(model, mode=mode)


def _cache_counts() -> dict[str, int]:
    from torch._dynamo.utils import counters  # dynamo's own event counters (what tlparse reads)

    return {"hit": counters["inductor"]["fxgraph_cache_hit"],
            "miss": counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_bypass"]}


class CompileCacheWatch:
    """Counts inductor's FX-graph cache hits and misses from its creation on."""

    def __init__(self):
        self.start = _cache_counts()

    def verdict(self) -> str | None:
        """cold (every graph compiled), warm (every graph loaded), partial, or None (no graph)."""
        now = _cache_counts()
        hits, misses = now["hit"] - self.start["hit"], now["miss"] - self.start["miss"]
        if not hits and not misses:
            return None
        return "warm" if not misses else "cold" if not hits else "partial"
