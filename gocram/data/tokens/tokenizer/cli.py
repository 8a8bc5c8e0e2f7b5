"""`gocram tokenizer train|eval|sweep`: the tokenizer lab from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import atomic_path

SPLITS = ("val", "train", "all")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from gocram.data.tokens.tokenizer.tricks import TRICKS

    trick_help = "comma-separated tricks (empty: GPT-2-style baseline): " + ", ".join(TRICKS)
    p = sub.add_parser("tokenizer", help="train, evaluate and sweep Go tokenizers")
    tk = p.add_subparsers(dest="tokenizer_command", required=True)

    train = tk.add_parser("train", help="train a byte-level BPE on a corpus's train split")
    train.add_argument("--corpus", required=True, help="directory of .go files or Stack parquet")
    train.add_argument("--vocab", type=int, default=8192, help="vocabulary size (special tokens included)")
    train.add_argument("--tricks", default="", help=trick_help)
    train.add_argument("--out", required=True, help="where to write tokenizer.json")
    train.set_defaults(handler=run_train)

    ev = tk.add_parser("eval", help="bytes/token, tokens per file, vocab use, speed; checks round trip")
    ev.add_argument("--tokenizer", required=True, help="a tokenizer.json")
    ev.add_argument("--corpus", required=True)
    ev.add_argument("--split", choices=SPLITS, default="val",
                    help="which files to measure (the trainer's package split); default val")
    ev.set_defaults(handler=run_eval)

    sw = tk.add_parser("sweep", help="vocab sizes x trick sets; writes tokenizers.md/.png/.json")
    sw.add_argument("--corpus", default="corpus/sample")
    sw.add_argument("--out", default="results", help="directory for tokenizers.{md,png,json}")
    sw.add_argument("--vocab", default=None, help="comma-separated sizes (default 2k..50k)")
    sw.add_argument("--sets", default=None,
                    help="';'-separated trick sets, 'baseline' for none (default: baseline, each "
                         "trick alone, the best combination)")
    sw.add_argument("--fresh", action="store_true", help="ignore rows of an earlier sweep")
    sw.set_defaults(handler=run_sweep)


def _positive_ints(spec: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise GocramError(f"{flag}: expected comma-separated integers, got {spec!r}") from None
    if not values or min(values) < 1:
        raise GocramError(f"{flag}: expected positive integers, got {spec!r}")
    return values


def run_train(args: argparse.Namespace) -> int:
    from gocram.data.tokens.tokenizer.core import train_bpe_with_idioms
    from gocram.data.tokens.tokenizer.sweep import corpus_split, log
    from gocram.data.tokens.tokenizer.tricks import parse_tricks

    tricks = parse_tricks(args.tricks, where="--tricks")
    out = Path(args.out)
    if out.is_dir():
        raise GocramError(f"--out {out}: is a directory; give a file name such as {out}/tokenizer.json")
    split = corpus_split(args.corpus)
    start = time.perf_counter()
    tok, idioms = train_bpe_with_idioms([d.text for d in split.train], args.vocab, tricks)
    log(f"trained a {tok.get_vocab_size():,}-token BPE on {len(split.train):,} train files "
        f"in {time.perf_counter() - start:.1f}s ({len(idioms)} idioms)")
    for idiom in idioms[:20]:
        log(f"  idiom {idiom.text!r}: saves {idiom.gain:,} tokens on the mined sample")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    print(out)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from gocram.data.tokens.tokenizer.core import load_tokenizer
    from gocram.data.tokens.tokenizer.stats import measure
    from gocram.data.tokens.tokenizer.sweep import corpus_split

    tok = load_tokenizer(args.tokenizer)
    split = corpus_split(args.corpus)
    docs = {"val": split.val, "train": split.train, "all": split.train + split.val}[args.split]
    stats = measure(tok, [d.text for d in docs], [f"{d.repo}/{d.path}" for d in docs])
    print(json.dumps({"tokenizer": str(args.tokenizer), "corpus": str(args.corpus),
                      "split": args.split, "round_trip": "exact", **stats.as_dict()}, indent=1))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from gocram.data.tokens.tokenizer.sweep import VOCAB_SIZES, sweep
    from gocram.data.tokens.tokenizer.tricks import parse_tricks

    vocab_sizes = _positive_ints(args.vocab, "--vocab") if args.vocab else list(VOCAB_SIZES)
    sets = None
    if args.sets:
        sets = [parse_tricks("" if s.strip() == "baseline" else s, where="--sets")
                for s in args.sets.split(";") if s.strip()]
    doc = sweep(args.corpus, args.out, vocab_sizes, sets, resume=not args.fresh)
    print(f"{len(doc['rows'])} cells -> {Path(args.out) / 'tokenizers.md'}")
    return 0
