"""Token shards: documents as token ids in one file, with a header and a document offsets index.

Layout of a `.tok` file (little-endian):

    [0, 128)      header: magic b"GOCRAMTK", format version (u32), bytes per token (u32: 2 or 4),
                  n_tokens (u64), n_docs (u64), vocab size (u32), tokenizer sha256 (32 bytes),
                  crc32 of the preceding header bytes (u32), zeros
    [128, ...)    n_tokens token ids (uint16 when the vocabulary fits, else uint32)
    (8-aligned)   n_docs + 1 document offsets (u64): document i is tokens[off[i]:off[i+1]]

Every document is stored as [EOS, ids...], so concatenating documents gives the GPT-2 style
stream and each document's first real token is predicted from EOS. Files are written to a temp
name and renamed; a reader checks magic, version, header crc, size and offsets, so a truncated or
foreign file is a one-line error naming it, never silently wrong tokens.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gocram.core.errors import GocramError
from gocram.core.files import replace_durably, temp_path
from gocram.data.tokens.tokenizer import eos_id

MAGIC = b"GOCRAMTK"
VERSION = 1
HEADER_BYTES = 128
_FIELDS = struct.Struct("<8sIIQQI32s")  # magic, version, itemsize, n_tokens, n_docs, vocab, tok sha
_CRC = struct.Struct("<I")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def tokenizer_hash(tok: Tokenizer) -> str:
    """sha256 of the tokenizer's canonical JSON: shards record which tokenizer made them."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def encode_docs(tok: Tokenizer, texts: list[str], dtype: np.dtype) -> list[np.ndarray]:
    """[EOS, ids...] per text, batch-encoded on all cores by the tokenizers library."""
    eos = eos_id(tok)
    return [np.asarray([eos, *enc.ids], dtype=dtype)
            for enc in tok.encode_batch(texts, add_special_tokens=False)]


def encode_stream(tok: Tokenizer, texts: list[str], batch: int = 1024) -> np.ndarray:
    """[EOS, doc0..., EOS, doc1..., ...] as one array."""
    dtype = token_dtype(tok.get_vocab_size())
    parts = [a for s in range(0, len(texts), batch) for a in encode_docs(tok, texts[s:s + batch], dtype)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class ShardWriter:
    """Streams documents into a shard; `close()` writes the index and header, then renames."""

    def __init__(self, path: Path, *, vocab_size: int, tokenizer_sha256: str):
        self.path = Path(path)
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.tok_hash = bytes.fromhex(tokenizer_sha256)
        self.tmp = temp_path(self.path)
        self.handle = open(self.tmp, "wb")
        self.handle.write(b"\0" * HEADER_BYTES)
        self.offsets = [0]

    def add(self, doc: np.ndarray) -> None:
        if doc.size and int(doc.max()) >= self.vocab_size:
            raise GocramError(f"{self.path}: token id {int(doc.max())} >= vocab size {self.vocab_size}")
        self.handle.write(np.ascontiguousarray(doc, dtype=self.dtype).tobytes())
        self.offsets.append(self.offsets[-1] + len(doc))

    def add_many(self, docs: Iterable[np.ndarray]) -> None:
        for doc in docs:
            self.add(doc)

    def close(self) -> Path:
        n_tokens = self.offsets[-1]
        body = n_tokens * self.dtype.itemsize
        self.handle.write(b"\0" * (_align8(body) - body))
        self.handle.write(np.asarray(self.offsets, dtype="<u8").tobytes())
        fields = _FIELDS.pack(MAGIC, VERSION, self.dtype.itemsize, n_tokens, len(self.offsets) - 1,
                              self.vocab_size, self.tok_hash)
        header = fields + _CRC.pack(zlib.crc32(fields))
        self.handle.seek(0)
        self.handle.write(header.ljust(HEADER_BYTES, b"\0"))
        self.handle.close()
        replace_durably(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def write_shard(path: Path, docs: Iterable[np.ndarray], *, vocab_size: int,
                tokenizer_sha256: str) -> Path:
    writer = ShardWriter(path, vocab_size=vocab_size, tokenizer_sha256=tokenizer_sha256)
    try:
        writer.add_many(docs)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


@dataclass
class TokenShard:
    """Token ids and document offsets (memory-mapped when opened from a file)."""

    tokens: np.ndarray  # (n_tokens,) uint16 or uint32
    offsets: np.ndarray  # (n_docs + 1,) document boundaries
    vocab_size: int | None = None
    tokenizer_sha256: str | None = None
    path: Path | None = None

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]

    @classmethod
    def from_arrays(cls, tokens: np.ndarray, offsets: np.ndarray | None = None) -> TokenShard:
        """An in-memory shard; without offsets the whole stream is one document."""
        if offsets is None:
            offsets = np.asarray([0, len(tokens)], dtype=np.int64)
        offsets = np.asarray(offsets)
        rising = np.all(np.diff(offsets.astype(np.int64)) >= 0)  # int64: uint64 differences wrap
        if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(tokens) or not rising:
            raise ValueError("document offsets must rise from 0 to len(tokens)")
        return cls(tokens=tokens, offsets=offsets)

    @classmethod
    def open(cls, path: str | Path, *, tokenizer_sha256: str | None = None) -> TokenShard:
        path = Path(path)
        try:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                header = handle.read(HEADER_BYTES)
        except OSError as err:
            raise GocramError(f"{path}: cannot read token shard ({err.strerror})") from None
        if len(header) < _FIELDS.size + _CRC.size or header[:8] != MAGIC:
            raise GocramError(f"{path}: not a gocram token shard (bad magic)")
        fields = header[:_FIELDS.size]
        magic, version, itemsize, n_tokens, n_docs, vocab, tok_hash = _FIELDS.unpack(fields)
        (crc,) = _CRC.unpack(header[_FIELDS.size:_FIELDS.size + _CRC.size])
        if crc != zlib.crc32(fields):
            raise GocramError(f"{path}: token shard header is corrupt (checksum mismatch)")
        if version != VERSION:
            raise GocramError(f"{path}: token shard format version {version}, this gocram reads {VERSION}")
        if itemsize not in (2, 4):
            raise GocramError(f"{path}: token shard has {itemsize}-byte tokens (expected 2 or 4)")
        body = _align8(n_tokens * itemsize)
        expected = HEADER_BYTES + body + 8 * (n_docs + 1)
        if size != expected:
            what = "truncated" if size < expected else "longer than its header says"
            raise GocramError(f"{path}: token shard {what} ({size} bytes, expected {expected})")
        if tokenizer_sha256 is not None and tok_hash.hex() != tokenizer_sha256:
            raise GocramError(f"{path}: made with another tokenizer (sha256 {tok_hash.hex()[:12]}..., "
                              f"expected {tokenizer_sha256[:12]}...)")
        dtype = np.dtype("<u2") if itemsize == 2 else np.dtype("<u4")
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(n_tokens,)) \
            if n_tokens else np.zeros(0, dtype=dtype)
        offsets = np.memmap(path, dtype="<u8", mode="r", offset=HEADER_BYTES + body, shape=(n_docs + 1,))
        if offsets[0] != 0 or offsets[-1] != n_tokens or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise GocramError(f"{path}: token shard document index is corrupt")
        return cls(tokens=tokens, offsets=offsets, vocab_size=vocab, tokenizer_sha256=tok_hash.hex(),
                   path=path)
