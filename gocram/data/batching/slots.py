"""Which slot of the documents this reader takes: the torch.distributed rank and world size."""

from __future__ import annotations

import torch


def default_slot() -> tuple[int, int]:
    """(rank, world size) of torch.distributed when it is initialised, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
