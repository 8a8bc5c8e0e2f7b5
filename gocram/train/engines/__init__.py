"""Training engines by name (`impl.engine`): how one run spreads over processes and devices.

An engine owns the narrow seam between the Trainer and distribution: the process group, the
device of this rank, wrapping the model and building the optimizer, backward and the optimizer
step, gradient sync during accumulation, agreeing on per-step numbers across ranks, and the
checkpoint files. Builders are registered lazily, so `import deepspeed` happens only for zero*.

- single: one process (the default).
- ddp:    torch DistributedDataParallel, launched by torchrun (gloo on CPU, NCCL on CUDA).
- fsdp:   FSDP2 (`torch.distributed.fsdp.fully_shard`) per transformer block and at the root.
- zero1, zero2, zero3: DeepSpeed ZeRO with a ds_config generated from the run config.
"""

from __future__ import annotations

import torch

from gocram.core.registry import Registry

ENGINES = Registry("training engine")
ENGINES.add("single", "gocram.train.engines.single:SingleEngine")
ENGINES.add("ddp", "gocram.train.engines.ddp:DDPEngine")
ENGINES.add("fsdp", "gocram.train.engines.fsdp:FSDPEngine")
ENGINES.add("zero1", "gocram.train.engines.zero:Zero1Engine")
ENGINES.add("zero2", "gocram.train.engines.zero:Zero2Engine")
ENGINES.add("zero3", "gocram.train.engines.zero:Zero3Engine")

# How many processes a multi-process engine is launched with by the harness: one per GPU, or two
# gloo processes on CPU (enough to exercise every collective on a 2-core machine).
CPU_PROCESSES = 2


def launch_nproc() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else CPU_PROCESSES
