"""A key/value cache for incremental decoding with gocram's GPT.

`GPT.hidden_states(idx, kv_cache=cache)` continues the tokens already cached: each attention
layer hands its new keys and values to its `LayerCache`, which stores them in a preallocated
buffer and attends the new queries over everything cached so far.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LayerCache:
    """Keys and values of one attention layer, (B, nh, max_len, hs) each, filled up to `length`."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_size: int, *, device, dtype):
        self.k = torch.zeros(batch, n_head, max_len, head_size, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k, v (B, nh, T, hs) after the cached ones; causal attention of q over all of them."""
        T = q.shape[2]
        start, end = self.length, self.length + T
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache holds {self.k.shape[2]} positions; {end} requested")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        keys = self.k[:, :, :end].to(q.dtype)  # (B, nh, end, hs)
        values = self.v[:, :, :end].to(q.dtype)  # (B, nh, end, hs)
        if start == 0:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        if T == 1:  # one new query sees every cached key
            return F.scaled_dot_product_attention(q, keys, values)
        # Several new queries after a prefix: causal, aligned to the last key (bottom-right).
        allowed = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(diagonal=start)  # (T, end)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (finished samples drop out of the batch)."""
        self.k = self.k[rows]
        self.v = self.v[rows]


class KVCache:
    """One LayerCache per transformer block; `length` is the number of cached positions."""

    def __init__(self, model, batch: int, max_len: int | None = None):
        cfg = model.cfg
        param = next(model.parameters())
        max_len = max_len or cfg.seq_len
        self.layers = [
            LayerCache(batch, cfg.n_head, max_len, cfg.head_size, device=param.device, dtype=param.dtype)
            for _ in range(cfg.n_layer)
        ]
        self.last_tokens: torch.Tensor | None = None  # (B,) the last token fed: a bigram's previous

    @property
    def length(self) -> int:
        return self.layers[0].length

    def keep(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.keep(rows)
        if self.last_tokens is not None:
            self.last_tokens = self.last_tokens[rows]
