"""Batches from a token stream: random training windows, and fixed chunks for evaluation."""

from __future__ import annotations

import numpy as np
import torch

from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.batches import Batch
from gocram.data.batching.slots import default_slot


class RandomWindows:
    """Batches of random length-T windows (crossing documents), y shifted by one. Resumable.

    Under several processes every rank draws the same global batch of B * world windows from the
    same seeded generator and keeps its own slice: ranks never share a window within a step, and
    the union of their batches is exactly what one process with batch B * world would draw.
    """

    document_mask = False  # windows cross documents on purpose: plain causal attention
    padding_fraction = 0.0  # windows are always full

    def __init__(self, tokens: np.ndarray, *, seq_len: int, batch: int, seed: int,
                 doc_offsets: np.ndarray | None = None,  # windows ignore document boundaries
                 slot: tuple[int, int] | None = None):
        if len(tokens) < seq_len + 2:
            raise ValueError(f"token stream of {len(tokens)} tokens is shorter than seq_len+2")
        self.tokens, self.seq_len, self.batch = tokens, seq_len, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = 0
        self.slot, self.n_slots = slot if slot is not None else default_slot()

    def next_batch(self) -> Batch:
        T = self.seq_len
        starts = torch.randint(0, len(self.tokens) - T - 1, (self.batch * self.n_slots,),
                               generator=self.generator)[self.slot * self.batch:(self.slot + 1) * self.batch]
        rows = np.stack([self.tokens[s:s + T + 1] for s in starts.tolist()]).astype(np.int64)
        self.batches += 1
        window = torch.from_numpy(rows)  # (B, T+1)
        return Batch(x=window[:, :-1], y=window[:, 1:])  # (B, T), (B, T)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "batches": self.batches,
                "slot": [self.slot, self.n_slots]}

    def load_state_dict(self, state: dict) -> None:
        if list(state.get("slot", [0, 1])) != [self.slot, self.n_slots]:
            raise ValueError(f"state was saved by reader {state['slot']}, not {[self.slot, self.n_slots]}")
        self.generator.set_state(state["generator"])
        self.batches = state["batches"]


def eval_chunks(tokens: np.ndarray, seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping chunks covering every target tokens[1:] once; the last one padded.

    Padding sits after the real tokens, so causal attention keeps it from touching them, and
    padded targets are IGNORE_INDEX.
    """
    chunks = []
    for start in range(0, len(tokens) - 1, seq_len):
        x = np.asarray(tokens[start:start + seq_len], dtype=np.int64)
        y = np.asarray(tokens[start + 1:start + seq_len + 1], dtype=np.int64)
        x = x[:len(y)]
        pad = seq_len - len(y)
        if pad:
            x = np.concatenate([x, np.zeros(pad, dtype=np.int64)])
            y = np.concatenate([y, np.full(pad, IGNORE_INDEX, dtype=np.int64)])
        chunks.append((x, y))
    return chunks


def sliding_windows(tokens: np.ndarray, seq_len: int, stride: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Length-T windows every `stride` tokens; each scores only targets no earlier window scored.

    Window k starts at k * stride. The first scores all its targets; every later one scores its
    last `stride` positions, so each of those targets is predicted from at least T - stride + 1
    tokens (itself and T - stride before it). Unscored and padded targets are IGNORE_INDEX.
    stride = seq_len gives exactly eval_chunks.
    """
    if not 1 <= stride <= seq_len:
        raise ValueError(f"stride {stride} must be between 1 and seq_len={seq_len}")
    n_targets = len(tokens) - 1
    windows, scored_end, start = [], 0, 0
    while scored_end < n_targets:
        x = np.asarray(tokens[start:start + seq_len], dtype=np.int64)
        y = np.array(tokens[start + 1:start + seq_len + 1], dtype=np.int64)
        x = x[:len(y)]
        y[:scored_end - start] = IGNORE_INDEX  # scored by an earlier window
        scored_end = start + len(y)
        pad = seq_len - len(y)
        if pad:
            x = np.concatenate([x, np.zeros(pad, dtype=np.int64)])
            y = np.concatenate([y, np.full(pad, IGNORE_INDEX, dtype=np.int64)])
        windows.append((x, y))
        start += stride
    return windows
