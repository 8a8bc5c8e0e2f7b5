"""`gocram data pretokenize`: corpus chunks -> token shards, one per chunk and split.

OUT/`chunk-00000.train.tok` etc. (format: shards.py) and OUT/`shards.json`, the index: tokenizer
sha256, vocabulary, dtype, and per shard its split, source chunk (and that chunk's sha256),
tokens and documents. Rerunning skips shards whose chunk and tokenizer are unchanged.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import sha256_file
from gocram.data.corpus.build import Progress, write_json
from gocram.data.corpus.docs import corpus_files, iter_parquet_rows, read_manifest
from gocram.data.tokens.shards import ShardWriter, TokenShard, encode_docs, token_dtype, tokenizer_hash
from gocram.data.tokens.tokenizer import load_tokenizer

INDEX = "shards.json"
FORMAT = "gocram-shards/1"


def _log(msg: str) -> None:
    print(f"[data pretokenize] {msg}", file=sys.stderr, flush=True)


def read_index(out: Path) -> dict | None:
    path = out / INDEX
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GocramError(f"{path}: not valid JSON ({err})") from None


def shard_paths(directory: str | Path, split: str = "train") -> list[Path]:
    """The shards of one split listed in DIR/shards.json, in order."""
    root = Path(directory)
    index = read_index(root)
    if index is None:
        raise GocramError(f"{root}: no {INDEX} (run `gocram data pretokenize` first)")
    if not index.get("complete"):
        raise GocramError(f"{root}: pretokenizing did not finish; rerun `gocram data pretokenize`")
    paths = [root / s["name"] for s in index["shards"] if s["split"] == split]
    if not paths:
        raise GocramError(f"{root}: no {split!r} shards")
    return paths


def _still_valid(out: Path, entry: dict, chunk_sha: str, tok_sha: str) -> bool:
    if entry.get("chunk_sha256") != chunk_sha:
        return False
    try:
        TokenShard.open(out / entry["name"], tokenizer_sha256=tok_sha)
    except GocramError:
        return False
    return True


def _encode_chunk(chunk: Path, prefix: Path, tok, tok_sha: str,
                  batch_docs: int) -> tuple[dict[str, ShardWriter], int]:
    """Open shard writers per split (prefix.SPLIT.tok), filled with the chunk's documents."""
    vocab = tok.get_vocab_size()
    dtype = token_dtype(vocab)
    writers: dict[str, ShardWriter] = {}
    texts: dict[str, list[str]] = {}
    n_bytes = 0

    def flush(split: str) -> None:
        if split not in writers:
            writers[split] = ShardWriter(prefix.with_name(f"{prefix.name}.{split}.tok"),
                                         vocab_size=vocab, tokenizer_sha256=tok_sha)
        writers[split].add_many(encode_docs(tok, texts[split], dtype))
        texts[split] = []

    progress = Progress(log=_log)
    t0 = time.perf_counter()
    try:
        for row in iter_parquet_rows(chunk, columns=["content", "split"]):
            split = row.get("split") or "train"
            texts.setdefault(split, []).append(row["content"])
            n_bytes += len(row["content"].encode("utf-8"))
            if len(texts[split]) >= batch_docs:
                flush(split)
                progress(lambda n=n_bytes: f"{chunk.name}: {n / 1e6:,.1f} MB encoded "
                         f"({n / 1e6 / (time.perf_counter() - t0):.2f} MB/s)")
        for split in list(texts):
            if texts[split] or split not in writers:
                flush(split)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return writers, n_bytes


def pretokenize(corpus: str | Path, tokenizer: str | Path, out_dir: str | Path, *,
                batch_docs: int = 512) -> dict:
    """Encode every chunk of a corpus directory; returns (and writes) the shard index."""
    corpus, out = Path(corpus), Path(out_dir)
    if not Path(tokenizer).is_file():
        raise GocramError(f"--tokenizer {tokenizer}: file not found")
    try:
        tok = load_tokenizer(tokenizer)
    except Exception as err:  # tokenizers raises a bare Exception for bad JSON
        raise GocramError(f"--tokenizer {tokenizer}: not a tokenizer.json ({err})") from None
    chunks = corpus_files(corpus)
    if not chunks:
        raise GocramError(f"--corpus {corpus}: no parquet chunks (build it with `gocram data build`)")
    manifest = read_manifest(corpus)
    known_sha = {c["name"]: c["sha256"] for c in manifest["chunks"]} if manifest else {}
    out.mkdir(parents=True, exist_ok=True)
    tok_sha, vocab = tokenizer_hash(tok), tok.get_vocab_size()
    previous = read_index(out) or {}
    if previous and previous.get("tokenizer_sha256") != tok_sha:
        raise GocramError(f"--out {out}: holds shards of another tokenizer; choose another --out")
    old = {s["name"]: s for s in previous.get("shards", [])}
    index = {"format": FORMAT, "corpus": str(corpus), "tokenizer": str(tokenizer),
             "tokenizer_sha256": tok_sha, "vocab_size": vocab, "dtype": token_dtype(vocab).name,
             "complete": False, "shards": []}
    t0, n_bytes, n_tokens = time.perf_counter(), 0, 0
    for chunk in chunks:
        chunk_sha = known_sha.get(chunk.name) or sha256_file(chunk)
        stem = chunk.name.removesuffix(".parquet")
        done = [e for name, e in old.items() if e.get("chunk") == chunk.name]
        if done and all(_still_valid(out, e, chunk_sha, tok_sha) for e in done):
            index["shards"] += done
            _log(f"{chunk.name}: shards up to date, skipped")
            continue
        # The index so far (incomplete): an interrupted run resumes after the last whole chunk.
        handled = {e["chunk"] for e in index["shards"]} | {chunk.name}
        later = [e for e in old.values() if e["chunk"] not in handled]
        write_json(out / INDEX, {**index, "shards": index["shards"] + later})
        writers, chunk_bytes = _encode_chunk(chunk, out / stem, tok, tok_sha, batch_docs)
        n_bytes += chunk_bytes
        for split, writer in sorted(writers.items()):
            writer.close()
            shard = TokenShard.open(writer.path)
            n_tokens += len(shard.tokens)
            index["shards"].append({"name": writer.path.name, "split": split, "chunk": chunk.name,
                                    "chunk_sha256": chunk_sha, "tokens": int(len(shard.tokens)),
                                    "docs": shard.n_docs})
        took = time.perf_counter() - t0
        _log(f"{chunk.name}: {n_bytes / 1e6:,.1f} MB -> {n_tokens:,} tokens so far "
             f"({n_bytes / 1e6 / took:.2f} MB/s)")
    index["complete"] = True
    index["tokens"] = {}
    for s in index["shards"]:
        index["tokens"][s["split"]] = index["tokens"].get(s["split"], 0) + s["tokens"]
    write_json(out / INDEX, index)
    return index
