"""FSDP2: parameters, gradients and optimizer state sharded per transformer block and at the root.

Checkpoints are full (unsharded) state dicts gathered to rank 0 with torch.distributed.checkpoint's
state_dict helpers, written as the one-file checkpoint every other engine writes. Why not DCP's
sharded format: gocram's models are micro (tens of M parameters) and fit in one host's memory many
times over, and a full checkpoint keeps `gocram eval --checkpoint`, export and the atomic
write + weights_only load of train/checkpoint.py working unchanged. A sharded save starts to pay
only when the model no longer fits on rank 0.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from gocram.train.engines.base import ProcessGroupEngine

FULL_TO_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)
FULL = StateDictOptions(full_state_dict=True)


def _torch_optimizers(optimizer) -> tuple[torch.optim.Optimizer, ...]:
    """The torch optimizers inside a recipe's GroupedOptimizer: what the state_dict helpers take."""
    return tuple(optimizer.parts.values())


class FSDPEngine(ProcessGroupEngine):
    supports_fp16 = False  # would need ShardedGradScaler; bf16 is the GPU precision anyway

    def wrap(self, model, make_optimizer, *, precision: str, accum: int):
        # bf16 compute with fp32 gradient reduction; the master weights stay fp32 shards.
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if precision == "bf16" else MixedPrecisionPolicy())
        for block in model.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)  # embeddings, final norm, (tied) head
        self.model = model
        return model, make_optimizer(model)  # after sharding: the optimizer sees the DTensor shards

    @contextmanager
    def accumulating(self, last: bool):
        self.model.set_requires_gradient_sync(last)
        yield

    def model_state(self, model) -> dict:
        return get_model_state_dict(model, options=FULL_TO_RANK0)  # collective; empty off rank 0

    def optimizer_state(self, model, optimizer) -> dict | None:
        optimizers = _torch_optimizers(optimizer)
        if not any(part.state for part in optimizers):
            # The step-0 checkpoint: get_optimizer_state_dict would initialise the state with a
            # zero-gradient step, which counts in AdamW's bias correction and changes every later
            # update. Nothing to save yet.
            return None
        return get_optimizer_state_dict(model, optimizers, options=FULL_TO_RANK0)

    def load_weights(self, model, optimizer, state, path) -> None:
        set_model_state_dict(model, state["model"], options=FULL)
        optimizers = _torch_optimizers(optimizer)
        if state["optimizer"] is None:
            for part in optimizers:
                part.state.clear()  # back to before the first step
        else:
            set_optimizer_state_dict(model, optimizers, state["optimizer"], options=FULL)
