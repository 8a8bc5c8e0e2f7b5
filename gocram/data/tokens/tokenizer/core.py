"""Byte-level BPE trained on Go with HF `tokenizers`: nothing is ever unknown, decode(encode(x)) == x.

With no tricks this is the GPT-2-style baseline (GPT-2's split pattern); tricks.py lists the
Go-aware switches. Whatever the tricks, the result is a plain tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from gocram.core.errors import GocramError
from gocram.data.tokens.tokenizer.idioms import PER_FILE_CAP, SAMPLE_BYTES, Idiom, add_idioms
from gocram.data.tokens.tokenizer.tricks import parse_tricks, split_pattern

EOS = "<|endoftext|>"
PAD = "<|pad|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"
SPECIAL_TOKENS = [EOS, PAD, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX]

# Idioms may take at most this share of the vocabulary; the statistics usually stop earlier.
MAX_IDIOM_SHARE = 1 / 4
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # every byte, and the special tokens


def go_pre_tokenizer(pattern: str) -> pre_tokenizers.PreTokenizer:
    """Split by `pattern` (each match its own pre-token), then map bytes to visible characters."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_plain_bpe(texts: Iterable[str], vocab_size: int, pre_tokenizer) -> Tokenizer:
    """BPE over byte-level pre-tokens, all 256 bytes in the alphabet: nothing is ever unknown."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_bpe_with_idioms(
    texts: Iterable[str], vocab_size: int, tricks: str | tuple[str, ...] = "",
    *, idiom_sample_bytes: int = SAMPLE_BYTES, max_idiom_share: float = MAX_IDIOM_SHARE,
    per_file_cap: int = PER_FILE_CAP,
) -> tuple[Tokenizer, list[Idiom]]:
    """train_bpe, also returning the idioms chosen when the 'idioms' trick is on."""
    chosen = parse_tricks(tricks, where="tokenizer tricks")
    if vocab_size < MIN_VOCAB:
        raise GocramError(f"vocab size {vocab_size} is below {MIN_VOCAB} "
                          f"(256 byte tokens + {len(SPECIAL_TOKENS)} special tokens)")
    idioms: list[Idiom] = []
    if not chosen:
        # The baseline exactly as GPT-2 pre-tokenizes (its regex inside ByteLevel).
        gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok = train_plain_bpe(texts, vocab_size, gpt2)
    else:
        pattern = split_pattern(chosen)
        texts = list(texts)
        tok = train_plain_bpe(texts, vocab_size, go_pre_tokenizer(pattern))
        if "idioms" in chosen:
            tok, idioms = add_idioms(
                tok, texts, pattern,
                make_pre_tokenizer=lambda idioms_regex: go_pre_tokenizer(split_pattern(chosen, idioms_regex)),
                go_classes="go" in chosen,
                max_idioms=int(vocab_size * max_idiom_share),
                sample_bytes=idiom_sample_bytes, per_file_cap=per_file_cap,
            )
    # Special tokens come from ids only: a Go file that spells "<|endoftext|>" is plain text.
    tok.encode_special_tokens = True
    return tok, idioms


def train_bpe(texts: Iterable[str], vocab_size: int, tricks: str | tuple[str, ...] = "") -> Tokenizer:
    """A byte-level BPE with gocram's special tokens; tricks "" is the GPT-2-style baseline."""
    return train_bpe_with_idioms(texts, vocab_size, tricks)[0]


def load_tokenizer(path: str | Path) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for missing or malformed files
        raise GocramError(f"{path}: not a readable tokenizer.json ({err})") from None
    tok.encode_special_tokens = True  # not saved in tokenizer.json
    return tok


def eos_id(tok: Tokenizer) -> int:
    return tok.token_to_id(EOS)


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens).

    A byte-level token's string spells one visible character per byte, so its length is its
    byte count; an added non-special token is raw text, so its UTF-8 length is. This lets bits per
    byte and bytes/s be counted exactly from token ids alone.
    """
    added = tok.get_added_tokens_decoder()
    lengths = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for token, idx in tok.get_vocab(with_added_tokens=False).items():
        lengths[idx] = len(token)
    for idx, added_token in added.items():
        lengths[idx] = 0 if added_token.special else len(added_token.content.encode("utf-8"))
    return lengths
