"""What a tokenizer does to held-out Go: bytes per token, tokens per file, vocab use, speed,
and the share of a model's parameters its embedding takes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from tokenizers import Tokenizer

from gocram.config import load_config, pad_vocab
from gocram.core.errors import GocramError
from gocram.data.tokens.tokenizer.core import token_byte_lengths

EMBEDDING_CONFIGS = ("tiny", "small")
MIN_TIMED_S = 1.0  # encode the texts again until at least this long has passed


@dataclass(frozen=True)
class TokenizerStats:
    vocab_size: int
    files: int
    bytes: int
    tokens: int
    bytes_per_token: float
    median_tokens_per_file: float
    vocab_used: float  # share of non-special ids that occur at least once in the texts
    encode_mb_per_s: float  # batch encoding on all cores

    def as_dict(self) -> dict:
        return asdict(self)


def encode_ids(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [enc.ids for enc in tok.encode_batch(list(texts), add_special_tokens=False)]


def check_exact(
    tok: Tokenizer, texts: Sequence[str], ids: Sequence[Sequence[int]], names: Sequence[str]
) -> None:
    """Every text decodes back to itself and its token byte lengths sum to its UTF-8 size."""
    lengths = token_byte_lengths(tok)
    for text, row, name in zip(texts, ids, names, strict=True):
        if tok.decode(list(row), skip_special_tokens=False) != text:
            raise GocramError(f"{name}: decode(encode(x)) != x with this tokenizer")
        if int(lengths[np.asarray(row, dtype=np.int64)].sum()) != len(text.encode("utf-8")):
            raise GocramError(f"{name}: token byte lengths do not add up to the file's size")


def encode_throughput(tok: Tokenizer, texts: Sequence[str], min_s: float = MIN_TIMED_S) -> float:
    """MB/s of UTF-8 text through encode_batch (every core tokenizers' thread pool uses)."""
    batch = list(texts)
    size = sum(len(t.encode("utf-8")) for t in batch)
    tok.encode_batch(batch[:8], add_special_tokens=False)  # warm the thread pool
    rounds, start = 0, time.perf_counter()
    while True:
        tok.encode_batch(batch, add_special_tokens=False)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return rounds * size / elapsed / 1e6


def measure(tok: Tokenizer, texts: Sequence[str], names: Sequence[str] | None = None,
            *, check: bool = True, min_s: float = MIN_TIMED_S) -> TokenizerStats:
    if not texts:
        raise GocramError("no texts to measure the tokenizer on")
    names = list(names) if names is not None else [f"text {i}" for i in range(len(texts))]
    ids = encode_ids(tok, texts)
    if check:
        check_exact(tok, texts, ids, names)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    per_file = np.asarray([len(row) for row in ids])
    vocab = tok.get_vocab_size()
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    used = {i for row in ids for i in row} - special
    return TokenizerStats(
        vocab_size=vocab,
        files=len(texts),
        bytes=n_bytes,
        tokens=int(per_file.sum()),
        bytes_per_token=n_bytes / max(int(per_file.sum()), 1),
        median_tokens_per_file=float(np.median(per_file)),
        vocab_used=len(used) / max(vocab - len(special), 1),
        encode_mb_per_s=encode_throughput(tok, texts, min_s),
    )


def embedding_share(vocab_size: int, config: str) -> float:
    """Share of the model's parameters in its (tied) token embedding, padded to 64 as trained."""
    import torch

    from gocram.models.gpt import GPT

    cfg = load_config(config, [f"model.vocab_size={vocab_size}"]).model
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())
    return pad_vocab(vocab_size) * cfg.d_model / total
