"""Batch layouts over documents: `concat`, `padded` and `packed` (registered in LAYOUTS).

Each reads documents (token shards, or a token stream with document offsets) in an order that is
a seeded permutation per epoch, restricted to this reader's *slot*: slot k of K takes every K-th
document of the permutation, so distributed ranks (and DataLoader workers within a rank) read
disjoint documents. State (epoch, cursor, and for `packed` the rows already packed but not yet
served) is plain ints, so `state_dict()` / `load_state_dict()` resume with the exact next batch.

- concat: the documents' tokens concatenated ([EOS, doc, EOS, doc, ...]) and cut into rows of T
  inputs; every token is a target once. No padding.
- padded: one document per row, truncated to T+1 tokens or padded; padded targets are IGNORE_INDEX.
- packed: whole documents (longer ones cut into T+1 pieces) best-fit packed into rows; the batch
  carries `document_ids` (B, T) (-1 on padding) and `positions` restarting at 0 per document,
  and a target is never taken across a document boundary. Needs an attention backend that applies
  a document mask (`document_mask = True`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.batches import Batch
from gocram.data.batching.packing import best_fit_decreasing, split_document
from gocram.data.batching.slots import default_slot
from gocram.data.tokens.shards import TokenShard


def as_shards(source, doc_offsets) -> list[TokenShard]:
    if isinstance(source, TokenShard):
        return [source]
    if isinstance(source, Sequence) and source and all(isinstance(s, TokenShard) for s in source):
        return list(source)
    return [TokenShard.from_arrays(np.asarray(source) if not isinstance(source, np.ndarray) else source,
                                   doc_offsets)]


class DocumentTable:
    """All documents of several shards under one global index."""

    def __init__(self, shards: list[TokenShard]):
        self.shards = shards
        counts = [s.n_docs for s in shards]
        self.first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (n_shards + 1,)
        self.n_docs = int(self.first[-1])
        self.lengths = np.concatenate(
            [np.diff(np.asarray(s.offsets, dtype=np.int64)) for s in shards]) if shards else np.zeros(0)

    def doc(self, g: int) -> np.ndarray:
        s = int(np.searchsorted(self.first, g, side="right")) - 1
        return self.shards[s].doc(g - int(self.first[s]))


class DocumentBatches:
    """Shared machinery: document order per epoch and slot, state, padding accounting."""

    document_mask = False

    def __init__(self, source, *, seq_len: int, batch: int, seed: int,
                 doc_offsets: np.ndarray | None = None, slot: tuple[int, int] | None = None):
        self.table = DocumentTable(as_shards(source, doc_offsets))
        self.seq_len, self.batch, self.seed = seq_len, batch, seed
        self.slot, self.n_slots = slot if slot is not None else default_slot()
        if not 0 <= self.slot < self.n_slots:
            raise ValueError(f"slot {self.slot} is outside 0..{self.n_slots - 1}")
        if self.table.n_docs < self.n_slots:
            raise ValueError(f"{self.table.n_docs} documents cannot feed {self.n_slots} readers")
        self.epoch = self.cursor = 0
        self.batches = self.pad_tokens = self.total_tokens = 0
        self._order_epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    # -- document order ------------------------------------------------------------------------
    def order(self) -> np.ndarray:
        """This slot's documents for the current epoch (global indices)."""
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(self.table.n_docs)[self.slot::self.n_slots]
            self._order_epoch = self.epoch
        return self._order

    def next_doc(self) -> tuple[int, np.ndarray]:
        order = self.order()
        if self.cursor >= len(order):
            self.epoch, self.cursor = self.epoch + 1, 0
            order = self.order()
        g = int(order[self.cursor])
        self.cursor += 1
        return g, self.table.doc(g)

    # -- accounting and state --------------------------------------------------------------------
    @property
    def padding_fraction(self) -> float:
        """Share of input positions served so far that held padding rather than a document."""
        return self.pad_tokens / self.total_tokens if self.total_tokens else 0.0

    def _count(self, pad: int) -> None:
        self.batches += 1
        self.pad_tokens += pad
        self.total_tokens += self.batch * self.seq_len

    def state_dict(self) -> dict:
        return {"layout": type(self).__name__, "epoch": self.epoch, "cursor": self.cursor,
                "batches": self.batches, "pad_tokens": self.pad_tokens,
                "total_tokens": self.total_tokens, "n_docs": self.table.n_docs,
                "slot": [self.slot, self.n_slots]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("layout") != type(self).__name__:
            raise ValueError(f"state of a {state.get('layout')} layout, not {type(self).__name__}")
        if state["n_docs"] != self.table.n_docs or list(state["slot"]) != [self.slot, self.n_slots]:
            raise ValueError("state was saved over other documents or another slot")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self.batches, self.pad_tokens = state["batches"], state["pad_tokens"]
        self.total_tokens = state["total_tokens"]


class ConcatBatches(DocumentBatches):
    """Concatenate-and-chunk: rows of T+1 consecutive stream tokens, rows overlapping by one."""

    def __init__(self, source, **kwargs):
        super().__init__(source, **kwargs)
        self.offset = 0  # tokens of the current document already consumed
        self.current: np.ndarray | None = None

    def _doc(self) -> np.ndarray:
        if self.current is None:
            _, self.current = self.next_doc()
        return self.current

    def _take(self, n: int, advance: bool) -> list[np.ndarray]:
        parts, need = [], n
        saved = (self.epoch, self.cursor, self.offset, self.current)
        while need:
            doc = self._doc()
            piece = doc[self.offset:self.offset + need]
            parts.append(piece)
            need -= len(piece)
            self.offset += len(piece)
            if self.offset >= len(doc):
                self.current, self.offset = None, 0
        if not advance:  # a peek: order() recomputes itself if the epoch changes back
            self.epoch, self.cursor, self.offset, self.current = saved
        return parts

    def next_batch(self) -> Batch:
        B, T = self.batch, self.seq_len
        parts = self._take(B * T, advance=True) + self._take(1, advance=False)
        stream = torch.from_numpy(np.concatenate(parts).astype(np.int64))  # (B*T + 1,)
        self._count(0)
        return Batch(x=stream[:-1].view(B, T), y=stream[1:].view(B, T))  # (B, T), (B, T)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "offset": self.offset,
                "in_doc": self.current is not None}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.offset, self.current = state["offset"], None
        if state["in_doc"]:  # re-open the document the cursor has already passed
            self.cursor -= 1
            _, self.current = self.next_doc()


class PaddedBatches(DocumentBatches):
    """One document per row: its first T+1 tokens (the rest is dropped), padding after it."""

    def __init__(self, source, *, pad_id: int = 0, **kwargs):
        super().__init__(source, **kwargs)
        self.pad_id = pad_id
        if not np.any(self.table.lengths >= 2):
            raise ValueError("no document has two tokens: nothing to predict")

    def next_batch(self) -> Batch:
        B, T = self.batch, self.seq_len
        x = np.full((B, T), self.pad_id, dtype=np.int64)
        y = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
        pad = 0
        for r in range(B):
            doc = self.next_doc()[1]
            while len(doc) < 2:  # an empty document has no target
                doc = self.next_doc()[1]
            n = min(len(doc) - 1, T)  # targets in this row
            x[r, :n] = doc[:n]
            y[r, :n] = doc[1:n + 1]
            pad += T - n
        self._count(pad)
        return Batch(x=torch.from_numpy(x), y=torch.from_numpy(y))


DEFAULT_GROUP_TOKENS = 1 << 20


class PackedBatches(DocumentBatches):
    """Best-fit packing of whole documents (pieces of T+1 for longer ones) into rows of T+1."""

    document_mask = True
    config_options = {"pack_group_tokens": "group_tokens"}  # DataConfig field -> keyword

    def __init__(self, source, *, pad_id: int = 0, group_tokens: int = DEFAULT_GROUP_TOKENS,
                 **kwargs):
        super().__init__(source, **kwargs)
        self.pad_id = pad_id
        # Documents are packed, and their rows shuffled, a group at a time; every batch draws
        # from one group, so a group must hold many documents: with 128 rows of T=256 (33k tokens)
        # one long Go file could fill a group, a batch mixed ~9 files, and the 150 s val bpb was
        # 0.10 worse than with 1M-token groups (~17 files a batch, as many as random windows).
        self.group_rows = max(-(-group_tokens // (self.seq_len + 1)), self.batch)
        self.pending: list[list[list[int]]] = []  # rows packed but not served: [[doc, start, end]]
        if not np.any(self.table.lengths >= 2):
            raise ValueError("no document has two tokens: nothing to predict")

    def _pack_group(self) -> None:
        cap = self.seq_len + 1
        group_start = (self.epoch, self.cursor)
        pieces: list[tuple[int, int, int]] = []
        tokens = 0
        while tokens < self.group_rows * cap:
            if self.cursor >= len(self.order()) and pieces:
                break  # a group never spans epochs
            g, doc = self.next_doc()
            for start, end in split_document(len(doc), cap):
                pieces.append((g, start, end))
                tokens += end - start
        bins = best_fit_decreasing([e - s for _, s, e in pieces], cap)
        rng = np.random.default_rng([self.seed, *group_start, 7])
        for b in rng.permutation(len(bins)):
            self.pending.append([list(pieces[i]) for i in bins[b]])

    def next_batch(self) -> Batch:
        B, T = self.batch, self.seq_len
        while len(self.pending) < B:
            self._pack_group()
        rows, self.pending = self.pending[:B], self.pending[B:]
        x = np.full((B, T), self.pad_id, dtype=np.int64)
        y = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
        doc_ids = np.full((B, T), -1, dtype=np.int64)
        pos = np.zeros((B, T), dtype=np.int64)
        pad = 0
        for r, row in enumerate(rows):
            o = 0
            for k, (g, s, e) in enumerate(row):
                piece = self.table.doc(g)[s:e]
                n_in = min(len(piece), T - o)  # the row's last token can only be a target
                x[r, o:o + n_in] = piece[:n_in]
                y[r, o:o + len(piece) - 1] = piece[1:]  # the piece's own next tokens only
                doc_ids[r, o:o + n_in] = k
                pos[r, o:o + n_in] = np.arange(n_in)
                o += len(piece)
            pad += max(T - o, 0)
        self._count(pad)
        return Batch(x=torch.from_numpy(x), y=torch.from_numpy(y),
                     positions=torch.from_numpy(pos), document_ids=torch.from_numpy(doc_ids))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pending": [[list(p) for p in row] for row in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pending = [[list(p) for p in row] for row in state["pending"]]
