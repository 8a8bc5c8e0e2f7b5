"""What the trainer consumes: a Batch, produced by a batch source chosen by name (data.layout).

A batch source has next_batch() -> Batch, state_dict() and load_state_dict() (so a resumed run
continues with the exact next batch), a class attribute `document_mask: bool` (True when its
batches carry document_ids that attention must respect) and `padding_fraction`. LAYOUTS maps a
layout name to a builder:
builder(tokens: np.ndarray, *, seq_len: int, batch: int, seed: int,
        doc_offsets: np.ndarray | None = None) -> source
where document i is tokens[doc_offsets[i]:doc_offsets[i + 1]] (layouts.py also accepts token
shards in place of tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gocram.core.registry import Registry


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) input ids
    y: torch.Tensor  # (B, T) target ids; IGNORE_INDEX where nothing is predicted (padding)
    positions: torch.Tensor | None = None  # (B, T) position ids, e.g. restarting per document
    document_ids: torch.Tensor | None = None  # (B, T) for block-causal document masks

    def to(self, device: torch.device) -> Batch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.x), move(self.y), move(self.positions), move(self.document_ids))


LAYOUTS = Registry("data layout")


LAYOUTS.add("random", "gocram.data.batching.windows:RandomWindows")
LAYOUTS.add("concat", "gocram.data.batching.layouts:ConcatBatches")
LAYOUTS.add("padded", "gocram.data.batching.layouts:PaddedBatches")
LAYOUTS.add("packed", "gocram.data.batching.layouts:PackedBatches")
# A fine-tuned run's config names this layout, and any command reading that config must know the
# name without importing the evaluation package.
LAYOUTS.add("finetune", "gocram.eval.finetune:FinetuneBatches")


def layout_options(data) -> dict:
    """The keywords a layout takes from a DataConfig: its `config_options` (field -> keyword)."""
    options = getattr(LAYOUTS.get(data.layout), "config_options", {})
    return {keyword: getattr(data, field) for field, keyword in options.items()}
