"""The engine interface, implemented for one process; ProcessGroupEngine adds torch.distributed.

Checkpoints stay one file (train/checkpoint.py) written by rank 0. What differs per rank (the
sampler's position and the RNG states) is gathered into `ranks` on save and handed back to each
rank on load, so a resumed multi-process run continues every rank's stream exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from gocram.core.errors import ConfigError, GocramError
from gocram.core.tokens import IGNORE_INDEX
from gocram.eval.bpb import Score
from gocram.train.checkpoint import latest_good_checkpoint, load_checkpoint, save_checkpoint

RANK_KEYS = ("sampler", "rng_cpu", "rng_cuda")  # checkpoint entries that differ per rank


class Engine:
    """One process on one device: exactly what the Trainer did before engines existed."""

    distributed = False  # launched by torchrun / the deepspeed launcher
    supports_compile = True
    supports_fp16 = True  # torch's GradScaler drives the loss scale
    supports_batch_ramp = True  # the trainer picks the micro-batches of each step (train_step)

    def __init__(self, cfg):
        self.cfg = cfg
        self.rank, self.world_size, self.local_rank = 0, 1, 0

    @classmethod
    def unsupported_reason(cls, device_type: str) -> str | None:
        """Why this engine cannot run here (harness `supported` checks), or None."""
        return None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        return requested

    def local_accum(self, grad_accum: int) -> int:
        """Micro-batches per rank per optimizer step; train.batch_tokens is the global batch."""
        if grad_accum % self.world_size:
            raise ConfigError(
                f"train.batch_tokens gives {grad_accum} micro-batches per step, which {self.world_size} "
                f"processes cannot share evenly; make it a multiple of "
                f"train.micro_batch*model.seq_len*{self.world_size}")
        return grad_accum // self.world_size

    # -- model, backward, step -------------------------------------------------------------------
    def wrap(self, model, make_optimizer, *, precision: str, accum: int):
        """(the module the training forward runs through, the optimizer)."""
        return model, make_optimizer(model)

    def accumulating(self, last: bool):
        """Context for one micro-step's forward and backward; gradients sync only on the last."""
        return nullcontext()

    def backward(self, loss: torch.Tensor, scaler) -> None:
        scaler.scale(loss).backward()

    def grad_norm(self, model, optimizer, scaler, grad_clip: float) -> torch.Tensor:
        """Unscale (a no-op unless fp16), clip if asked; the total gradient norm over all ranks."""
        scaler.unscale_(optimizer)
        if grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([q.grad for q in model.parameters() if q.grad is not None])
        # FSDP's parameters are DTensors: the norm is one too, already reduced over the shards
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """This step's loss averaged over ranks, so the health guard decides the same everywhere."""
        return loss

    def apply_step(self, optimizer, scaler, *, skip: bool) -> None:
        """Step (unless the health guard said skip), update the loss scale, zero the gradients."""
        if not skip:
            scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def agree(self, tokens: int, n_bytes: int, elapsed_s: float, *, stop: bool):
        """The step's numbers as every rank must see them: global tokens and bytes, rank 0's budget
        clock (so the LR, eval/checkpoint times and the budget stop agree), and whether any rank
        was asked to stop by a signal."""
        return tokens, n_bytes, elapsed_s, stop

    # -- validation ------------------------------------------------------------------------------
    def shard_eval(self, chunks: list) -> list:
        """The validation chunks this rank scores: all of them in one process."""
        return chunks

    def reduce_score(self, score: Score) -> Score:
        """This rank's score summed with every other rank's."""
        return score

    # -- checkpoints -----------------------------------------------------------------------------
    def model_state(self, model) -> dict | None:
        return model.state_dict()

    def optimizer_state(self, model, optimizer) -> dict | None:
        return optimizer.state_dict()

    def load_weights(self, model, optimizer, state: dict, path: Path) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    def save(self, state: dict, directory: Path, step: int, keep: int, *,
             dump: Callable = torch.save) -> None:
        """Raises OSError (disk full, unwritable) on every rank alike; the trainer's health guard
        decides whether the run goes on."""
        save_checkpoint(state, directory, step, keep, dump=dump)

    def load(self, path: Path) -> dict:
        return load_checkpoint(path)

    def latest(self, directory: Path, *, warn: Callable[[str], None] = print,
               at_most: int | None = None) -> Path | None:
        """The newest intact checkpoint (of step <= at_most): for --resume and rollbacks."""
        return latest_good_checkpoint(directory, warn=warn, at_most=at_most)

    def close(self) -> None:
        pass


class ProcessGroupEngine(Engine):
    """Ranks from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""

    distributed = True

    def __init__(self, cfg):
        super().__init__(cfg)
        import torch.distributed as dist

        if "RANK" not in os.environ and not dist.is_initialized():
            raise GocramError(
                f"impl.engine={cfg.impl.engine} runs one process per device: launch it with "
                f"`torchrun --nproc_per_node N -m gocram train ...` (see README, Multi-GPU)")
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            use_cuda = cfg.impl.device != "cpu" and torch.cuda.is_available()
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                    timeout=timedelta(minutes=30))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self._stats_device = torch.device("cpu")

    def device(self, requested: torch.device) -> torch.device:
        if requested.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            self._stats_device = torch.device("cuda", self.local_rank)
            return self._stats_device
        return requested

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = loss.detach().clone()
        dist.all_reduce(total)  # a sum: gloo has no AVG
        return total / self.world_size

    def agree(self, tokens, n_bytes, elapsed_s, *, stop):
        import torch.distributed as dist

        # One small all-reduce per step: a sum, where only rank 0 contributes its clock.
        stats = torch.tensor([tokens, n_bytes, elapsed_s if self.is_main else 0.0, float(stop)],
                             dtype=torch.float64, device=self._stats_device)
        dist.all_reduce(stats)
        tokens, n_bytes, elapsed_s, stops = stats.tolist()
        return int(tokens), int(n_bytes), elapsed_s, stops > 0

    def shard_eval(self, chunks: list) -> list:
        # Every world-th chunk, padded with blank chunks (no targets: nothing scored) to the same
        # count on every rank, since FSDP and ZeRO-3 need every rank in every forward.
        if not chunks:
            return chunks
        mine = chunks[self.rank::self.world_size]
        per_rank = -(-len(chunks) // self.world_size)
        x, y = chunks[0]
        blank = (np.zeros_like(x), np.full_like(y, IGNORE_INDEX))
        return mine + [blank] * (per_rank - len(mine))

    def reduce_score(self, score: Score) -> Score:
        import torch.distributed as dist

        stats = torch.tensor([score.nll_nats, score.tokens, score.bytes], dtype=torch.float64,
                             device=self._stats_device)
        dist.all_reduce(stats)
        nll, tokens, n_bytes = stats.tolist()
        return Score(nll, int(tokens), int(n_bytes))

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def _gather_rank_states(self, state: dict) -> list[dict] | None:
        import torch.distributed as dist

        mine = {k: state[k] for k in RANK_KEYS}
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(mine, gathered, dst=0)
        return gathered

    def save(self, state: dict, directory: Path, step: int, keep: int, *,
             dump: Callable = torch.save) -> None:
        import torch.distributed as dist

        ranks = self._gather_rank_states(state)
        failure = None
        if self.is_main:
            try:
                save_checkpoint({**state, "ranks": ranks}, directory, step, keep, dump=dump)
            except OSError as err:
                failure = err
        # Also the barrier: nobody runs ahead of a checkpoint that is not yet on disk, and a failed
        # write reaches every rank, so they all take the guard's same decision.
        shared = [None if failure is None else (failure.errno, str(failure))]
        dist.broadcast_object_list(shared, src=0)
        if failure is not None:
            raise failure
        if shared[0] is not None:
            raise OSError(shared[0][0], f"rank 0 could not write the checkpoint: {shared[0][1]}")

    def load(self, path: Path) -> dict:
        state = load_checkpoint(path)
        ranks = state.pop("ranks", None)
        if ranks is None or len(ranks) != self.world_size:
            raise GocramError(f"{path}: written by {len(ranks) if ranks else 1} process(es), this run "
                              f"has {self.world_size}; resume with the same number of processes")
        state.update(ranks[self.rank])
        return state

    def latest(self, directory: Path, *, warn: Callable[[str], None] = print,
               at_most: int | None = None) -> Path | None:
        import torch.distributed as dist

        # Rank 0 picks, so every rank resumes from the same checkpoint even if a save raced.
        found = [latest_good_checkpoint(directory, warn=warn, at_most=at_most) if self.is_main else None]
        dist.broadcast_object_list(found, src=0)
        return found[0]

    def close(self) -> None:
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
