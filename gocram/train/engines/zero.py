"""DeepSpeed ZeRO stages 1-3, configured by a ds_config generated from the run config.

Stage 1 shards optimizer state, stage 2 also gradients, stage 3 also parameters. DeepSpeed owns
accumulation (its micro-step counter decides when gradients are reduced and the optimizer steps),
clipping, bf16 and the optimizer, so `backward` is `engine.backward(); engine.step()` per
micro-batch and `apply_step` has nothing left to do. So the health guard cannot veto a ZeRO update:
it sees the (rank-averaged) loss and DeepSpeed's gradient norm after the fact, counts bad steps and
rolls back to the last good checkpoint as with every engine; only the skip itself is not possible.

Checkpoints: DeepSpeed's own save_checkpoint/load_checkpoint write the sharded model and optimizer
states into `checkpoint/ckpt-<step>.ds/`; then rank 0 writes `checkpoint/ckpt-<step>.pt` (progress,
sampler/RNG per rank, config, and the consolidated weights for `gocram eval`) through the same
atomic writer as every engine. That file is written last, so its presence marks a complete
checkpoint and the usual "newest ckpt-*.pt" lookup finds only complete ones.
"""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

import torch

from gocram.train.checkpoint import list_checkpoints
from gocram.train.engines.base import ProcessGroupEngine


def ds_dir(pt_path: Path) -> Path:
    return pt_path.with_suffix(".ds")


class ZeroEngine(ProcessGroupEngine):
    stage = 0
    supports_compile = False  # torch.compile under ZeRO's parameter hooks is not wired (engine.compile)
    supports_fp16 = False  # DeepSpeed's loss scaler would replace GradScaler; bf16 or fp32 only
    supports_batch_ramp = False  # DeepSpeed's gradient_accumulation_steps is fixed at initialize

    @classmethod
    def unsupported_reason(cls, device_type: str) -> str | None:
        if find_spec("deepspeed") is None:
            return "DeepSpeed is not installed (pip install .[distributed])"
        return None

    def ds_config(self, *, precision: str, accum: int) -> dict:
        tc = self.cfg.train
        return {
            "train_micro_batch_size_per_gpu": tc.micro_batch,
            "gradient_accumulation_steps": accum,
            "train_batch_size": tc.micro_batch * accum * self.world_size,
            "gradient_clipping": tc.grad_clip,
            "bf16": {"enabled": precision == "bf16"},
            "zero_optimization": {
                "stage": self.stage,
                # so rank 0 can write consolidated weights for `gocram eval` at stage 3
                "stage3_gather_16bit_weights_on_model_save": True,
            },
            "optimizer": {"type": "AdamW", "params": {
                "lr": tc.lr, "betas": [tc.beta1, tc.beta2], "eps": 1e-8, "weight_decay": tc.weight_decay,
                # torch's AdamW: the same update as the other engines, no op to compile
                "torch_adam": True, "adam_w_mode": True}},
            "steps_per_print": 2**31 - 1,  # the trainer logs; DeepSpeed stays quiet
            "wall_clock_breakdown": False,
        }

    def wrap(self, model, make_optimizer, *, precision: str, accum: int):
        import deepspeed

        self.ds, optimizer, _, _ = deepspeed.initialize(
            model=model, model_parameters=model.optimizer_groups(self.cfg.train.weight_decay),
            config=self.ds_config(precision=precision, accum=accum), dist_init_required=False)
        for group in optimizer.param_groups:  # what the trainer's LR schedule scales
            group.setdefault("base_lr", self.cfg.train.lr)
        return self.ds, optimizer

    def backward(self, loss, scaler) -> None:
        self.ds.backward(loss, scale_wrt_gas=False)  # the trainer already divided by accum
        self.ds.step()  # a no-op except at the accumulation boundary

    def grad_norm(self, model, optimizer, scaler, grad_clip: float) -> torch.Tensor:
        norm = self.ds.get_global_grad_norm()  # computed by the step DeepSpeed just took
        return torch.as_tensor(0.0 if norm is None else float(norm))

    def apply_step(self, optimizer, scaler, *, skip: bool) -> None:
        pass  # done by the last micro-step's self.ds.step()

    def model_state(self, model) -> dict | None:
        if self.stage == 3:  # collective: gathers the partitioned parameters to rank 0
            return self.ds._zero3_consolidated_16bit_state_dict()
        return model.state_dict() if self.is_main else None

    def optimizer_state(self, model, optimizer) -> dict | None:
        return None  # sharded in DeepSpeed's files

    def save(self, state: dict, directory: Path, step: int, keep: int, *,
             dump=torch.save) -> None:
        from gocram.train.checkpoint import checkpoint_path

        final = checkpoint_path(directory, step)
        self.ds.save_checkpoint(str(directory), tag=ds_dir(final).name, save_latest=False)
        super().save(state, directory, step, keep, dump=dump)  # rank 0 writes the .pt
        if self.is_main:
            kept = {ds_dir(p) for p in list_checkpoints(directory)}
            for old in directory.glob("ckpt-*.ds"):
                if old not in kept and old != ds_dir(final):
                    shutil.rmtree(old, ignore_errors=True)

    def load_weights(self, model, optimizer, state, path) -> None:
        loaded, _ = self.ds.load_checkpoint(str(path.parent), tag=ds_dir(path).name)
        if loaded is None:
            from gocram.core.errors import GocramError

            raise GocramError(f"{ds_dir(path)}: DeepSpeed could not load this checkpoint")


class Zero1Engine(ZeroEngine):
    stage = 1


class Zero2Engine(ZeroEngine):
    stage = 2


class Zero3Engine(ZeroEngine):
    stage = 3
