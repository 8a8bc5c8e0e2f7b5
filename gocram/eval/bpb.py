"""Validation in bits per byte: summed NLL (nats) / (ln 2 * UTF-8 bytes of the predicted text).

Comparable across tokenizers, since the denominator is bytes of Go text, not tokens.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.windows import eval_chunks


@dataclass(frozen=True)
class Score:
    nll_nats: float
    tokens: int
    bytes: int

    @property
    def bpb(self) -> float:
        return bits_per_byte(self.nll_nats, self.bytes)

    @property
    def loss(self) -> float:
        return self.nll_nats / max(self.tokens, 1)


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    return nll_nats / (math.log(2) * n_bytes)


@torch.no_grad()
def score_chunks(model, chunks, token_bytes: np.ndarray, *, batch: int, device,
                 autocast=nullcontext) -> Score:
    """Sum NLL, token and byte counts over (x, y) chunks of equal length."""
    was_training = model.training
    model.eval()
    nll, tokens, n_bytes = 0.0, 0, 0
    try:
        for start in range(0, len(chunks), batch):
            xs, ys = zip(*chunks[start:start + batch], strict=True)
            x = torch.from_numpy(np.stack(xs)).to(device)  # (b, T)
            y = torch.from_numpy(np.stack(ys))  # (b, T)
            with autocast():
                nll += model(x, y.to(device), reduction="sum").item()
            real = y[y != IGNORE_INDEX].numpy()
            tokens += real.size
            n_bytes += int(token_bytes[real].sum())
    finally:
        model.train(was_training)
    return Score(nll, tokens, n_bytes)


def score_stream(model, tokens: np.ndarray, token_bytes: np.ndarray, *, seq_len: int,
                 batch: int, device, autocast=nullcontext) -> Score:
    return score_chunks(model, eval_chunks(tokens, seq_len), token_bytes,
                        batch=batch, device=device, autocast=autocast)
