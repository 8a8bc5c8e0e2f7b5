"""The engine interface, implemented for one process; ProcessGroupEngine adds torch.distributed.

Checkpoints stay one file (train/checkpoint.py) written by rank 0. What differs per rank (the
sampler's position and the RNG states) is gathered into `ranks` on save and handed back to each
rank on load, so a resumed multi-process run continues every rank's stream exactly.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from gocram.errors import ConfigError, GocramError
from gocram.eval.bpb import Score
from gocram.models.registry import IGNORE_INDEX
from gocram.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

RANK_KEYS = ("sampler", "rng_cpu", "rng_cuda")  # checkpoint entries that differ per rank


class Engine:
    """One process on one device: exactly what the Trainer did before engines existed."""

    distributed = False  # launched by torchrun / the deepspeed launcher
    supports_compile = True
    supports_fp16 = True  # torch's GradScaler drives the loss scale

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

    def optimizer_step(self, model, optimizer, scaler, grad_clip: float) -> None:
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def agree(self, loss: float, tokens: int, n_bytes: int, elapsed_s: float):
        """The step's numbers as every rank must see them: mean loss, global tokens and bytes,
        and rank 0's budget clock (so the LR, eval/checkpoint times and the stop agree)."""
        return loss, tokens, n_bytes, elapsed_s

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

    def save(self, state: dict, directory: Path, step: int, keep: int) -> None:
        save_checkpoint(state, directory, step, keep)

    def load(self, path: Path) -> dict:
        return load_checkpoint(path)

    def latest(self, directory: Path) -> Path | None:
        return latest_checkpoint(directory)

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
                f"train.engine={cfg.train.engine} runs one process per device: launch it with "
                f"`torchrun --nproc_per_node N -m gocram train ...` (see README, Multi-GPU)")
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            use_cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
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

    def agree(self, loss, tokens, n_bytes, elapsed_s):
        import torch.distributed as dist

        # One small all-reduce per step: a sum, where only rank 0 contributes its clock.
        stats = torch.tensor([loss, tokens, n_bytes, elapsed_s if self.is_main else 0.0],
                             dtype=torch.float64, device=self._stats_device)
        dist.all_reduce(stats)
        loss, tokens, n_bytes, elapsed_s = stats.tolist()
        return loss / self.world_size, int(tokens), int(n_bytes), elapsed_s

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

    def save(self, state: dict, directory: Path, step: int, keep: int) -> None:
        ranks = self._gather_rank_states(state)
        if self.is_main:
            save_checkpoint({**state, "ranks": ranks}, directory, step, keep)
        self.barrier()  # nobody runs ahead of a checkpoint that is not yet on disk

    def load(self, path: Path) -> dict:
        state = load_checkpoint(path)
        ranks = state.pop("ranks", None)
        if ranks is None or len(ranks) != self.world_size:
            raise GocramError(f"{path}: written by {len(ranks) if ranks else 1} process(es), this run "
                              f"has {self.world_size}; resume with the same number of processes")
        state.update(ranks[self.rank])
        return state

    def latest(self, directory: Path) -> Path | None:
        import torch.distributed as dist

        # Rank 0 picks, so every rank resumes from the same checkpoint even if a save raced.
        found = [latest_checkpoint(directory) if self.is_main else None]
        dist.broadcast_object_list(found, src=0)
        return found[0]

    def close(self) -> None:
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
