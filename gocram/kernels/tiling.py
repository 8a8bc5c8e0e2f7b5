"""Tile sizes and grid sizes shared by the kernels' launchers.

Compiled (GPU): tiles of a few thousand elements keep a row in registers. Interpreted (CPU): each
program is a Python loop iteration over numpy blocks, so fewer, larger tiles are much faster; the
numbers come out the same, only the schedule differs.
"""

from __future__ import annotations

from functools import cache

import torch

from gocram.kernels.availability import KernelInputError

GPU_TILE = 4096  # elements per program tile when compiled
INTERPRETER_TILE = 1 << 16  # elements per program tile when interpreted


def next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def tile_rows(block_cols: int, n_rows: int, *, interpreted: bool, max_rows: int = 64) -> int:
    """Rows per tile (a power of two): fill the tile budget, but no more rows than exist."""
    budget = INTERPRETER_TILE if interpreted else GPU_TILE
    fits = max(1, budget // block_cols)
    rows = 1 << (fits.bit_length() - 1)  # the largest power of two <= fits
    cap = next_pow2(n_rows) if interpreted else min(next_pow2(n_rows), max_rows)
    return min(rows, cap)


def chosen(what: str, name: str, value: int | None, default: int, *, pow2: bool = True) -> int:
    """`value` when given (a launcher argument that overrides the schedule, e.g. so tests on the
    interpreter reach the paths a GPU takes), else `default`; a bad override is a one-line error."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KernelInputError(f"{what}: {name} must be a positive integer, got {value!r}")
    if pow2 and value & (value - 1):
        raise KernelInputError(f"{what}: {name} must be a power of two, got {value}")
    return value


def num_warps(tile_elems: int) -> int:
    """One warp per 256 elements, between 1 and 16 (only read by the compiler)."""
    return min(max(tile_elems // 256, 1), 16)


@cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def reduction_programs(device: torch.device, n_tiles: int, *, interpreted: bool) -> int:
    """Programs for a kernel that also reduces over rows (each writes one partial sum row)."""
    if interpreted or device.type != "cuda":
        return max(1, min(n_tiles, 4))
    return max(1, min(n_tiles, 2 * _sm_count(device.index or 0)))
