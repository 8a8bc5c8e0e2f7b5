"""Best-fit decreasing bin packing of document pieces into fixed-capacity rows."""

from __future__ import annotations

import bisect


def split_document(length: int, capacity: int) -> list[tuple[int, int]]:
    """(start, end) pieces of a document of `length` tokens for rows of `capacity` = T+1 tokens.

    Consecutive pieces overlap by one token, so every token after the first is a target exactly
    once; a trailing piece of one token would predict nothing and is dropped.
    """
    if length <= capacity:
        return [(0, length)] if length >= 2 else []
    pieces, start, stride = [], 0, capacity - 1
    while start < length - 1:
        pieces.append((start, min(start + capacity, length)))
        start += stride
    return pieces


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity`, longest items first, each
    into the fullest bin that still has room (ties broken by index: deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin id), sorted
    for i in order:
        size = lengths[i]
        if size > capacity:
            raise ValueError(f"item of {size} does not fit a bin of {capacity}")
        k = bisect.bisect_left(free, (size, -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            bins.append([])
            room, b = capacity, len(bins) - 1
        bins[b].append(i)
        if room - size > 0:
            bisect.insort(free, (room - size, b))
    return bins
