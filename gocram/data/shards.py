"""Token shards: one token stream per split, EOS before every document, stored as .npy memmaps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gocram.data.tokenizer import eos_id


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_stream(tok: Tokenizer, texts: list[str], batch: int = 1024) -> np.ndarray:
    """[EOS, doc0..., EOS, doc1..., ...] as one array (batch-encoded on all cores)."""
    eos = eos_id(tok)
    dtype = token_dtype(tok.get_vocab_size())
    parts = []
    for start in range(0, len(texts), batch):
        for enc in tok.encode_batch(texts[start:start + batch], add_special_tokens=False):
            parts.append(np.asarray([eos, *enc.ids], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def save_tokens(tokens: np.ndarray, path: Path) -> None:
    """Atomic write: a reader never sees a half-written shard."""
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, tokens)
    os.replace(tmp, path)


def load_tokens(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")
