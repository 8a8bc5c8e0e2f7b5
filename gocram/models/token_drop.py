"""Token dropping (random-LTD, Yao et al. 2022) adapted to a causal language model.

In training, each middle layer (model.token_drop_layers) runs on its own random subset of every
row's tokens; the dropped tokens skip that layer through the residual stream (their hidden state
passes through unchanged). The first and last layers always see every token, and the loss covers
every token. Kept tokens are gathered in their original order and keep their original positions
(RoPE tables are gathered with them; learned positions were added at the embedding), so causal
attention over the subset is exact: a kept token only attends to kept tokens that came before it.
Document ids are gathered too, so packed rows stay block-causal.

The dropped share follows the budget fraction: token_drop_rate at the start, falling linearly to
0 at token_drop_until (random-LTD's growing sequence length). The kept count is rounded up to a
multiple of KEEP_MULTIPLE for kernel-friendly shapes; under torch.compile dynamo makes the rate
symbolic after its first change, so the schedule costs a couple of graphs, not one per step.
In eval mode nothing is dropped.
"""

from __future__ import annotations

import math

import torch

from gocram.config import ModelConfig

KEEP_MULTIPLE = 8


class TokenDrop:
    """The drop schedule and the subset selection; holds no parameters."""

    def __init__(self, cfg: ModelConfig):
        self.start_rate = cfg.token_drop_rate
        self.until = cfg.token_drop_until
        self.layers = cfg.token_drop_layer_range if cfg.token_drop_rate > 0 else range(0)
        self.rate = self.start_rate  # the current rate; the trainer moves it with the budget

    def rate_at(self, fraction: float) -> float:
        """The dropped share at this fraction of the budget: linear from start_rate to 0 at `until`."""
        return self.start_rate * max(0.0, 1.0 - fraction / self.until)

    def set_budget_fraction(self, fraction: float) -> None:
        self.rate = self.rate_at(fraction)

    def kept(self, T: int) -> int:
        """Tokens a dropping layer keeps per row: at least 1, a multiple of KEEP_MULTIPLE or T."""
        keep = math.ceil(T * (1.0 - self.rate) / KEEP_MULTIPLE) * KEEP_MULTIPLE
        return max(1, min(T, keep))

    def active(self, training: bool, T: int) -> bool:
        return training and bool(self.layers) and self.kept(T) < T

    def select(self, B: int, T: int, device: torch.device) -> torch.Tensor:
        """(B, K) sorted indices of the tokens a layer keeps, an independent random subset per row."""
        K = self.kept(T)
        scores = torch.rand(B, T, device=device)  # (B, T)
        return scores.topk(K, dim=1, sorted=False).indices.sort(dim=1).values  # (B, K)


def gather_rope(rope, keep: torch.Tensor):
    """Pick the kept positions' (cos, sin) rows: each (B or 1, 1, T, hs/2) -> (B, 1, K, hs/2)."""
    if rope is None:
        return None
    B, K = keep.shape
    picked = []
    for table in rope:
        table = table.expand(B, -1, -1, -1)  # (B, 1, T, hs/2)
        index = keep[:, None, :, None].expand(-1, 1, -1, table.shape[-1])  # (B, 1, K, hs/2)
        picked.append(table.gather(2, index))  # (B, 1, K, hs/2)
    return tuple(picked)


def run_on_subset(block, x: torch.Tensor, keep: torch.Tensor, rope, document_ids,
                  value_embedding: torch.Tensor | None = None):
    """Run `block` on the kept tokens only; dropped tokens pass through unchanged.

    x (B, T, C) and the layer's value embedding (B, T, C) if any, keep (B, K) sorted indices;
    returns (B, T, C).
    """
    B, T, C = x.shape
    index = keep[:, :, None].expand(-1, -1, C)  # (B, K, C)
    kept_x = x.gather(1, index)  # (B, K, C)
    kept_docs = None if document_ids is None else document_ids.gather(1, keep)  # (B, K)
    kept_ve = None if value_embedding is None else value_embedding.gather(1, index)  # (B, K, C)
    out = block(kept_x, gather_rope(rope, keep), kept_docs, None, kept_ve)  # (B, K, C)
    return x.scatter(1, index, out)  # (B, T, C): out-of-place, so autograd sees both paths
