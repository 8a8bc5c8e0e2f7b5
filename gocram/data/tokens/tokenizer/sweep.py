"""The vocabulary-size x trick-set sweep: train on the train split, measure on val, write the report.

Rows are kept in `<out>/tokenizers.json` (rewritten atomically after every cell, so an interrupted
sweep resumes where it stopped); `tokenizers.md` and `tokenizers.png` are derived from the rows only.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gocram.config import DataConfig
from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json
from gocram.data.corpus.docs import Doc, corpus_fingerprint, read_corpus
from gocram.data.corpus.split import split_by_package
from gocram.data.tokens.tokenizer.core import MAX_IDIOM_SHARE, train_bpe_with_idioms
from gocram.data.tokens.tokenizer.stats import EMBEDDING_CONFIGS, embedding_share, measure
from gocram.data.tokens.tokenizer.tricks import TRICKS, parse_tricks, tricks_name

VOCAB_SIZES = (2048, 4096, 8192, 16384, 32768, 50304)
# The combination the sweep reports as "best": every trick that cut tokens alone in the
# exploration (docs/tokenizer.md); 'digits' costs tokens, so it is measured alone only.
BEST = ("go", "ws", "idioms", "prefix", "closer")
ROWS_VERSION = 2


def default_trick_sets() -> list[tuple[str, ...]]:
    """Baseline, each trick alone (with what it requires), and the best combination."""
    sets: list[tuple[str, ...]] = [()]
    for trick in TRICKS.values():
        sets.append(parse_tricks((*trick.requires, trick.name)))
    sets.append(parse_tricks(BEST))
    return sets


@dataclass(frozen=True)
class CorpusSplit:
    """The trainer's split (by package, DataConfig's val_frac and salt): one place to change it."""

    train: list[Doc]
    val: list[Doc]


def corpus_split(corpus: str | Path) -> CorpusSplit:
    defaults = DataConfig()
    docs = read_corpus(corpus)
    train, val = split_by_package(docs, defaults.val_frac, defaults.split_salt)
    if not train or not val:
        raise GocramError(f"{corpus}: splitting {len(docs)} files by package left an empty split; "
                          "the corpus needs more packages")
    return CorpusSplit(train=train, val=val)


def log(msg: str) -> None:
    print(f"[tokenizer] {msg}", file=sys.stderr, flush=True)


def environment() -> dict:
    from gocram.core.env import cpu_name, git_sha

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "device": f"{cpu_name()} ({os.cpu_count()} logical CPUs)",
        "commit": git_sha(),
        "python": platform.python_version(),
        "tokenizers": version("tokenizers"),
        "numpy": version("numpy"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_cell(split: CorpusSplit, vocab_size: int, tricks: tuple[str, ...], min_s: float) -> dict:
    start = time.perf_counter()
    tok, idioms = train_bpe_with_idioms([d.text for d in split.train], vocab_size, tricks)
    train_s = time.perf_counter() - start
    stats = measure(tok, [d.text for d in split.val], [f"{d.repo}/{d.path}" for d in split.val],
                    min_s=min_s)
    return {
        "vocab_target": vocab_size, "tricks": tricks_name(tricks), "train_s": train_s,
        "idioms": len(idioms), "top_idioms": [i.text for i in idioms[:12]],
        "idiom_cap": int(vocab_size * MAX_IDIOM_SHARE) if "idioms" in tricks else 0,
        **stats.as_dict(),
        **{f"embedding_share_{c}": embedding_share(stats.vocab_size, c) for c in EMBEDDING_CONFIGS},
        "environment": environment(),  # per row: a resumed sweep may span commits
    }


def sweep(corpus: str | Path, out: str | Path, vocab_sizes: Sequence[int] = VOCAB_SIZES,
          trick_sets: Sequence[tuple[str, ...]] | None = None, *, resume: bool = True,
          min_s: float = 1.0) -> dict:
    """Train and measure every (vocab size, trick set) cell; returns the rows document."""
    from gocram.data.tokens.tokenizer.report import write_report

    trick_sets = list(trick_sets) if trick_sets is not None else default_trick_sets()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "tokenizers.json"
    split = corpus_split(corpus)
    identity = {
        "version": ROWS_VERSION, "corpus": str(corpus), "fingerprint": corpus_fingerprint(corpus),
        "train_files": len(split.train), "val_files": len(split.val),
        "train_bytes": sum(len(d.text.encode("utf-8")) for d in split.train),
        "val_bytes": sum(len(d.text.encode("utf-8")) for d in split.val),
    }
    rows: list[dict] = []
    if resume and rows_path.exists():
        previous = json.loads(rows_path.read_text())
        if previous.get("identity") == identity:
            rows = previous["rows"]
    done = {(r["vocab_target"], r["tricks"]) for r in rows}
    doc = {"identity": identity, "rows": rows}
    for vocab_size in vocab_sizes:
        for tricks in trick_sets:
            name = tricks_name(tricks)
            if (vocab_size, name) in done:
                continue
            log(f"vocab {vocab_size:,} tricks [{name or 'baseline'}] ...")
            row = run_cell(split, vocab_size, tricks, min_s)
            log(f"  {row['bytes_per_token']:.3f} bytes/token, trained in {row['train_s']:.1f}s")
            rows.append(row)
            atomic_write_json(rows_path, doc)
    atomic_write_json(rows_path, doc)
    write_report(doc, out)
    return doc
