"""Data pipeline throughput: `python -m gocram.bench.data tokenize | loader | build`.

- tokenize: MB/s of batch encoding (tokenizers' Rust threads, all cores) into shard documents.
- loader:   tokens/s served by each layout from token shards (B*T positions per batch), in
            process and through DataLoader workers; the target is >= 700k tokens/s on 2 cores.
- build:    corpus build MB/s for a source, with the report's sizes.

Each prints one JSON line per measurement with the conditions it ran under; with `--results DIR` it
also writes DIR/<benchmark>.json (the rows, the device, commit, versions and the load average before and
after), the artifact docs/data.md's numbers are checked against.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from gocram.data.corpus.docs import read_corpus
from gocram.data.tokens.shards import encode_docs, token_dtype
from gocram.data.tokens.tokenizer import load_tokenizer, train_bpe

REPO_ROOT = Path(__file__).resolve().parents[2]


def _emit(rows: list[dict], row: dict) -> None:
    row = {**row, "cpus": os.cpu_count()}
    rows.append(row)
    print(json.dumps(row), flush=True)


def write_report(out: Path, bench: str, rows: list[dict], load_before: tuple[float, ...]) -> Path:
    """DIR/<bench>.json: the rows and what they were measured on (another job sharing the machine
    shows in the load average)."""
    import torch

    from gocram.core.env import device_name, git_sha, versions
    from gocram.core.files import atomic_write_json

    path = out / f"{bench}.json"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {
        "bench": bench, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": device_name(torch.device("cpu")), "git_sha": git_sha(), "versions": versions(),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "rows": rows})
    return path


def _tokenizer(corpus: Path, tokenizer: str | None, vocab: int):
    if tokenizer:
        return load_tokenizer(tokenizer)
    texts = [d.text for d in read_corpus(corpus)]
    return train_bpe(texts, vocab)


def bench_tokenize(corpus: Path, tokenizer: str | None, vocab: int, batch: int, repeat: int) -> list[dict]:
    rows: list[dict] = []
    texts = [d.text for d in read_corpus(corpus)]
    tok = _tokenizer(corpus, tokenizer, vocab)
    dtype = token_dtype(tok.get_vocab_size())
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        tokens = 0
        for start in range(0, len(texts), batch):
            tokens += sum(len(d) for d in encode_docs(tok, texts[start:start + batch], dtype))
        best = min(best, time.perf_counter() - t0)
    _emit(rows, {"bench": "tokenize", "corpus": str(corpus), "files": len(texts), "mb": n_bytes / 1e6,
           "tokens": tokens, "vocab": tok.get_vocab_size(), "batch_docs": batch, "seconds": best,
           "mb_per_s": n_bytes / 1e6 / best, "tokens_per_s": tokens / best})
    return rows


def bench_loader(corpus: Path, shards: str | None, tokenizer: str | None, vocab: int, layouts: list[str],
                 seq_len: int, batch: int, workers: list[int], seconds: float) -> list[dict]:
    from gocram.data.batching.loader import ShardDataset, ShardLoader
    from gocram.data.tokens.pretokenize import pretokenize, shard_paths

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        if shards is None:
            tok = _tokenizer(corpus, tokenizer, vocab)
            tok.save(f"{scratch}/tokenizer.json")
            pretokenize(corpus, f"{scratch}/tokenizer.json", f"{scratch}/shards")
            shards = f"{scratch}/shards"
        paths = shard_paths(shards, "train")
        for layout in layouts:
            for n_workers in workers:
                loader = ShardLoader(ShardDataset(paths, layout=layout, seq_len=seq_len, batch=batch,
                                                  seed=0, rank=0, world_size=1), num_workers=n_workers)
                loader.next_batch()  # worker start-up is not throughput
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    loader.next_batch()
                    n += 1
                took = time.perf_counter() - t0
                _emit(rows, {"bench": "loader", "layout": layout, "workers": n_workers, "seq_len": seq_len,
                       "batch": batch, "batches": n, "seconds": took,
                       "tokens_per_s": n * batch * seq_len / took,
                       "padding_fraction": loader.padding_fraction})
    return rows


def bench_build(source: str, out: str, per_package_bytes: int | None, overrides: list[str]) -> list[dict]:
    from gocram.data.corpus.build import build_corpus
    from gocram.data.corpus.options import build_options

    cfg = build_options(overrides=overrides + ([f"per_package_bytes={per_package_bytes}"]
                                               if per_package_bytes is not None else []))
    t0 = time.perf_counter()
    report = build_corpus(source, out, cfg)
    took = time.perf_counter() - t0
    parquet = sum(p.stat().st_size for p in Path(out).glob("chunk-*.parquet"))
    rows: list[dict] = []
    _emit(rows, {"bench": "build", "source": source, "seconds": took, "settings": overrides,
           "mb_in": report["bytes_in"] / 1e6, "mb_per_s": report["bytes_in"] / 1e6 / took,
           "files_in": report["files_in"], "kept": report["kept"], "mb_kept": report["bytes_kept"] / 1e6,
           "parquet_mb": parquet / 1e6, "chunks": report["chunks"], "dropped": report["dropped"],
           "timings_s": report["timings_s"], "splits": report["splits"],
           "redactions": report["redactions"], "near_dedup_clusters": report["near_dedup"].get("clusters")})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gocram.bench.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("tokenize", "loader"):
        p = sub.add_parser(name)
        p.add_argument("--corpus", type=Path, default=REPO_ROOT / "corpus" / "sample")
        p.add_argument("--tokenizer", default=None, help="a tokenizer.json (default: train one)")
        p.add_argument("--vocab", type=int, default=8192)
    sub.choices["tokenize"].add_argument("--batch-docs", type=int, default=512)
    sub.choices["tokenize"].add_argument("--repeat", type=int, default=3)
    loader = sub.choices["loader"]
    loader.add_argument("--shards", default=None, help="a pretokenized directory (default: make one)")
    loader.add_argument("--layouts", default="concat,padded,packed")
    loader.add_argument("--seq-len", type=int, default=1024)
    loader.add_argument("--batch", type=int, default=16)
    loader.add_argument("--workers", default="0,2")
    loader.add_argument("--seconds", type=float, default=5.0)
    build = sub.add_parser("build")
    build.add_argument("--source", default=f"debian:{REPO_ROOT / 'corpus' / 'debian-go-packages.txt'}")
    build.add_argument("--out", required=True, help="outside the repository, e.g. /tmp/gocram-debian")
    build.add_argument("--per-package-bytes", type=int, default=None)
    build.add_argument("--set", dest="overrides", action="append", default=[])
    for p in sub.choices.values():
        p.add_argument("--results", type=Path, default=None,
                       help="also write the rows to RESULTS/<benchmark>.json, e.g. results/data-bench")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.what == "tokenize":
        rows = bench_tokenize(args.corpus, args.tokenizer, args.vocab, args.batch_docs, args.repeat)
    elif args.what == "loader":
        rows = bench_loader(args.corpus, args.shards, args.tokenizer, args.vocab, args.layouts.split(","),
                            args.seq_len, args.batch, [int(w) for w in args.workers.split(",")],
                            args.seconds)
    else:
        rows = bench_build(args.source, args.out, args.per_package_bytes, args.overrides)
    if args.results is not None:
        print(f"wrote {write_report(args.results, args.what, rows, load_before)}", flush=True)


if __name__ == "__main__":
    main()
