"""DistributedDataParallel: every rank holds the whole model; gradients are all-reduced.

Accumulation micro-steps before the last run under `no_sync()` (forward included: DDP decides in
forward whether the coming backward syncs). Checkpoints hold the unwrapped module's state, which
rank 0 writes: the same file a single-process run writes, plus each rank's sampler/RNG state.
"""

from __future__ import annotations

from contextlib import nullcontext

from torch.nn.parallel import DistributedDataParallel

from gocram.train.engines.base import ProcessGroupEngine


class DDPEngine(ProcessGroupEngine):
    def wrap(self, model, make_optimizer, *, precision: str, accum: int):
        on_cuda = next(model.parameters()).is_cuda
        self.ddp = DistributedDataParallel(model, device_ids=[self.local_rank] if on_cuda else None)
        return self.ddp, make_optimizer(model)

    def accumulating(self, last: bool):
        return nullcontext() if last else self.ddp.no_sync()
