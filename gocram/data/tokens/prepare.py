"""From a corpus directory to token shards, cached: read, split, train BPE, encode.

The split is the corpus's own repository-level train/val split when it was built with one
(`gocram data build`), else a split by Go package (directory) with data.val_frac. Train and the
fixed validation set are written as token shards with document offsets (shards.py), so layouts
that need document boundaries (padded, packed) get them.

The cache key covers everything that changes the tokens, so a second run (or another harness
cell with the same data settings) starts in seconds. A lock keeps parallel runs from racing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gocram.config import DataConfig, EvalConfig
from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json
from gocram.data.corpus.docs import Doc, corpus_fingerprint, read_corpus
from gocram.data.corpus.split import split_by_package, unit_hash
from gocram.data.tokens.shards import ShardWriter, TokenShard, encode_docs, token_dtype, tokenizer_hash
from gocram.data.tokens.tokenizer import load_tokenizer, token_byte_lengths, train_bpe
from gocram.eval.comparators import compare

PREP_VERSION = 3  # 3: meta.json holds the comparators (xz, zstd, PPMd per file and joined)


@dataclass
class PreparedData:
    train: np.ndarray  # token stream of the train split (memmap)
    val: np.ndarray  # token stream of the fixed validation set
    token_bytes: np.ndarray  # UTF-8 bytes per token id
    tokenizer_path: Path
    vocab_size: int
    meta: dict  # sizes, file counts, xz baseline
    train_offsets: np.ndarray | None = None  # document i of train is train[off[i]:off[i+1]]
    val_offsets: np.ndarray | None = None


def default_cache_dir() -> Path:
    return Path(os.environ.get("GOCRAM_CACHE", Path.home() / ".cache" / "gocram"))


def log(msg: str) -> None:
    print(f"[data] {msg}", file=sys.stderr, flush=True)


def xz_bits_per_byte(data: bytes) -> float:
    """The classical-compression yardstick: `xz -9e` size in bits per input byte."""
    compressed = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    return 8.0 * len(compressed) / max(len(data), 1)


def fixed_val_docs(val_docs: list[Doc], max_bytes: int, salt: str) -> list[Doc]:
    """Whole val files in a stable hashed order, up to max_bytes (at least one file)."""
    ordered = sorted(val_docs, key=lambda d: unit_hash(f"{d.repo}/{d.path}", salt))
    chosen, total = [], 0
    for doc in ordered:
        size = len(doc.text.encode("utf-8"))
        if chosen and total + size > max_bytes:
            continue
        chosen.append(doc)
        total += size
    return chosen


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_key(data: DataConfig, ev: EvalConfig, vocab_size: int) -> str:
    tokenizer_id = None
    if data.tokenizer:
        tokenizer_id = hashlib.sha256(Path(data.tokenizer).read_bytes()).hexdigest()
    parts = {
        "version": PREP_VERSION, "corpus": corpus_fingerprint(data.corpus),
        "val_frac": data.val_frac, "salt": data.split_salt, "vocab_size": vocab_size,
        "tokenizer": tokenizer_id, "val_max_bytes": ev.max_bytes,
        "tokenizer_tricks": data.tokenizer_tricks,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def split_docs(docs: list[Doc], data: DataConfig) -> tuple[list[Doc], list[Doc], str]:
    """(train, held-out val, how): the corpus's own split if it has train and val files."""
    if all(d.split for d in docs):
        train = [d for d in docs if d.split == "train"]
        val = [d for d in docs if d.split == "val"]
        if train and val:
            return train, val, "corpus (repository-level, from the build)"
        docs = [d for d in docs if d.split != "test"]
    train, val = split_by_package(docs, data.val_frac, data.split_salt)
    if not train or not val:
        raise GocramError(
            f"{data.corpus}: splitting {len(docs)} files by package with data.val_frac="
            f"{data.val_frac} left an empty split; the corpus needs more packages"
        )
    return train, val, f"package (data.val_frac={data.val_frac})"


def encode_to_shard(tok, texts: list[str], path: Path, batch: int = 1024) -> TokenShard:
    writer = ShardWriter(path, vocab_size=tok.get_vocab_size(), tokenizer_sha256=tokenizer_hash(tok))
    dtype = token_dtype(tok.get_vocab_size())
    try:
        for start in range(0, len(texts), batch):
            writer.add_many(encode_docs(tok, texts[start:start + batch], dtype))
    except BaseException:
        writer.abort()
        raise
    return TokenShard.open(writer.close())


def _build(data: DataConfig, ev: EvalConfig, vocab_size: int, out: Path) -> None:
    t0 = time.perf_counter()
    docs = read_corpus(data.corpus)
    train_docs, val_docs, how = split_docs(docs, data)
    val_set = fixed_val_docs(val_docs, ev.max_bytes, data.split_salt)
    train_text = [d.text for d in train_docs]
    train_bytes = sum(len(t.encode("utf-8")) for t in train_text)
    log(f"read {len(docs):,} files: train {len(train_docs):,} files ({train_bytes / 1e6:.1f} MB), "
        f"val set {len(val_set):,} of {len(val_docs):,} held-out files; split by {how} "
        f"({time.perf_counter() - t0:.1f}s)")
    if data.tokenizer:
        tok = load_tokenizer(data.tokenizer)
    else:
        t1 = time.perf_counter()
        log(f"training a {vocab_size}-token byte-level BPE on the train split ...")
        tok = train_bpe(train_text, vocab_size, data.tokenizer_tricks)
        log(f"tokenizer trained in {time.perf_counter() - t1:.1f}s")
    if tok.get_vocab_size() > vocab_size:
        raise GocramError(
            f"tokenizer has {tok.get_vocab_size()} tokens, more than model.vocab_size={vocab_size}"
        )
    tok.save(str(out / "tokenizer.json"))
    t2 = time.perf_counter()
    train_tokens = encode_to_shard(tok, train_text, out / "train.tok").tokens
    val_tokens = encode_to_shard(tok, [d.text for d in val_set], out / "val.tok").tokens
    log(f"encoded {len(train_tokens):,} train and {len(val_tokens):,} val tokens "
        f"({time.perf_counter() - t2:.1f}s)")
    val_blobs = [d.text.encode("utf-8") for d in val_set]
    val_bytes = b"".join(val_blobs)
    t3 = time.perf_counter()
    comparators = compare(val_blobs)
    log(f"comparators on the val set's {len(val_bytes):,} bytes ({time.perf_counter() - t3:.1f}s)")
    meta = {
        "corpus": str(data.corpus), "split": how, "files": len(docs), "train_files": len(train_docs),
        "val_files_held_out": len(val_docs), "val_set_files": len(val_set),
        "train_bytes": train_bytes, "train_tokens": int(len(train_tokens)),
        "val_bytes": len(val_bytes), "val_tokens": int(len(val_tokens)),
        "xz_bpb": xz_bits_per_byte(val_bytes), "comparators": comparators,
        "vocab_size": tok.get_vocab_size(),
        "val_set": [f"{d.repo}/{d.path}" for d in val_set],
    }
    atomic_write_json(out / "meta.json", meta)  # written last: its presence marks a complete cache entry


def cache_root(data: DataConfig) -> Path:
    """The run's cache directory: data.cache_dir, else $GOCRAM_CACHE or ~/.cache/gocram."""
    return Path(data.cache_dir) if data.cache_dir else default_cache_dir()


def prepare_data(data: DataConfig, ev: EvalConfig, vocab_size: int) -> PreparedData:
    cache = cache_root(data)
    out = cache / "prepared" / _cache_key(data, ev, vocab_size)
    with _locked(out.with_suffix(".lock")):
        if not (out / "meta.json").exists():
            out.mkdir(parents=True, exist_ok=True)
            _build(data, ev, vocab_size, out)
    meta = json.loads((out / "meta.json").read_text())
    tok = load_tokenizer(out / "tokenizer.json")
    tok_sha = tokenizer_hash(tok)
    train = TokenShard.open(out / "train.tok", tokenizer_sha256=tok_sha)
    val = TokenShard.open(out / "val.tok", tokenizer_sha256=tok_sha)
    return PreparedData(
        train=train.tokens,
        val=val.tokens,
        token_bytes=token_byte_lengths(tok),
        tokenizer_path=out / "tokenizer.json",
        vocab_size=tok.get_vocab_size(),
        meta=meta,
        train_offsets=train.offsets,
        val_offsets=val.offsets,
    )
