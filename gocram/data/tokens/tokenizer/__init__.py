"""The tokenizer lab: byte-level BPE for Go, its Go-aware tricks, statistics and the sweep."""

from gocram.data.tokens.tokenizer.core import (
    EOS,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    PAD,
    SPECIAL_TOKENS,
    eos_id,
    load_tokenizer,
    token_byte_lengths,
    train_bpe,
    train_bpe_with_idioms,
)
from gocram.data.tokens.tokenizer.tricks import TRICKS, parse_tricks

__all__ = [
    "EOS", "FIM_MIDDLE", "FIM_PREFIX", "FIM_SUFFIX", "PAD", "SPECIAL_TOKENS", "TRICKS",
    "eos_id", "load_tokenizer", "parse_tricks", "token_byte_lengths", "train_bpe",
    "train_bpe_with_idioms",
]
