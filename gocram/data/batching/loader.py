"""Streaming token shards through torch's DataLoader: `ShardDataset` and the resumable `ShardLoader`.

`ShardDataset` is an IterableDataset of whole batches (a layout from LAYOUTS: concat, padded,
packed). Each DataLoader worker of each distributed rank reads its own slot of the documents
(slot = rank * workers + worker), so no document is read twice in an epoch, and the stream is a
function of the seed alone.

Resuming: every item carries the producing worker's layout state. DataLoader serves workers
round-robin, so `ShardLoader` records the latest state per worker and which worker is next; on
load, worker w takes the role of worker (w + shift) mod W, and the stream continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gocram.data.batching.batches import LAYOUTS, Batch
from gocram.data.batching.slots import default_slot
from gocram.data.tokens.shards import TokenShard


class ShardDataset(IterableDataset):
    def __init__(self, shards: list[str | Path], *, layout: str = "concat", seq_len: int, batch: int,
                 seed: int, rank: int | None = None, world_size: int | None = None,
                 tokenizer_sha256: str | None = None, **layout_kwargs):
        super().__init__()
        if not shards:
            raise ValueError("ShardDataset needs at least one shard")
        LAYOUTS.get(layout)  # unknown names fail here, not inside a worker
        self.paths = [Path(p) for p in shards]
        for p in self.paths:  # validate headers up front: a bad shard is one clear error
            TokenShard.open(p, tokenizer_sha256=tokenizer_sha256)
        self.layout, self.seq_len, self.batch, self.seed = layout, seq_len, batch, seed
        if rank is None or world_size is None:
            rank, world_size = default_slot()
        self.rank, self.world_size = rank, world_size
        self.tokenizer_sha256 = tokenizer_sha256
        self.layout_kwargs = layout_kwargs
        self.role_states: list[dict | None] = []
        self.shift = 0

    def source(self, role: int, workers: int):
        shards = [TokenShard.open(p, tokenizer_sha256=self.tokenizer_sha256) for p in self.paths]
        slot = (self.rank * workers + role, self.world_size * workers)
        src = LAYOUTS.build(self.layout, shards, seq_len=self.seq_len, batch=self.batch,
                            seed=self.seed, slot=slot, **self.layout_kwargs)
        if role < len(self.role_states) and self.role_states[role] is not None:
            src.load_state_dict(self.role_states[role])
        return src

    def __iter__(self) -> Iterator[tuple[int, Batch, dict]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        role = (wid + self.shift) % workers
        src = self.source(role, workers)
        while True:
            batch = src.next_batch()
            yield role, batch, src.state_dict()


def _as_is(item):
    return item


class ShardLoader:
    """Batches from a ShardDataset through a DataLoader, with state_dict()/load_state_dict()."""

    def __init__(self, dataset: ShardDataset, *, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None):
        self.dataset, self.num_workers = dataset, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.roles: list[dict | None] = [None] * max(num_workers, 1)
        self.next_role = 0
        self._iter = None

    @property
    def document_mask(self) -> bool:
        return LAYOUTS.get(self.dataset.layout).document_mask

    def _start(self) -> None:
        self.dataset.role_states = list(self.roles)
        self.dataset.shift = self.next_role
        loader = DataLoader(self.dataset, batch_size=None, collate_fn=_as_is,
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            prefetch_factor=self.prefetch_factor if self.num_workers else None,
                            persistent_workers=False)
        self._iter = iter(loader)

    def next_batch(self) -> Batch:
        if self._iter is None:
            self._start()
        role, batch, state = next(self._iter)
        self.roles[role] = state
        self.next_role = (role + 1) % len(self.roles)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    def queue_depth(self) -> int | None:
        """Batches the workers have been asked for and not yet handed over (ready or in the
        making), for the trainer's slow-step watchdog; 0 without workers, None before the start."""
        if self._iter is None:
            return None
        return getattr(self._iter, "_tasks_outstanding", 0)  # a DataLoader internal: best effort

    @property
    def padding_fraction(self) -> float:
        seen = [s for s in self.roles if s is not None]
        total = sum(s["total_tokens"] for s in seen)
        return sum(s["pad_tokens"] for s in seen) / total if total else 0.0

    def state_dict(self) -> dict:
        return {"num_workers": self.num_workers, "next_role": self.next_role,
                "roles": [dict(s) if s is not None else None for s in self.roles]}

    def load_state_dict(self, state: dict) -> None:
        if state["num_workers"] != self.num_workers:
            raise ValueError(f"state saved with {state['num_workers']} workers, loader has "
                             f"{self.num_workers}: the document slots would differ")
        self.roles, self.next_role = list(state["roles"]), state["next_role"]
        self._iter = None  # restart the workers from the loaded states

