"""`gocram data ...`: build corpora, report on them, pretokenize them into shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build Go corpora and token shards")
    data = p.add_subparsers(dest="data_command", required=True)

    build = data.add_parser("build", help="filter, dedup, decontaminate, redact and chunk a corpus")
    build.add_argument("--source", required=True,
                       help="dir:PATH | debian:LIST | parquet:GLOB | stack (see docs/data.md)")
    build.add_argument("--out", required=True)
    build.add_argument("--chunk-mb", type=float, default=None,
                       help="uncompressed Go per chunk file in MB (default 200)")
    build.add_argument("--per-package-bytes", type=int, default=None,
                       help="debian sources: keep at most this many bytes per package (0 = no cap)")
    build.add_argument("--options", default=None, help="a YAML file of build settings")
    build.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a build setting, e.g. filters.max_bytes=500000 or near_dedup.enabled=false")
    build.set_defaults(handler=run_build)

    report = data.add_parser("report", help="summarise a built corpus directory")
    report.add_argument("dir")
    report.add_argument("--verify", action="store_true", help="recompute every chunk's sha256")
    report.add_argument("--json", action="store_true", help="print report.json as is")
    report.set_defaults(handler=run_report)

    pre = data.add_parser("pretokenize", help="encode a corpus into token shards")
    pre.add_argument("--corpus", required=True)
    pre.add_argument("--tokenizer", required=True, help="a tokenizer.json")
    pre.add_argument("--out", required=True)
    pre.set_defaults(handler=run_pretokenize)


def run_build(args: argparse.Namespace) -> int:
    import yaml

    from gocram.core.errors import ConfigError
    from gocram.data.corpus.build import build_corpus
    from gocram.data.corpus.options import build_options

    values = {}
    if args.options:
        path = Path(args.options)
        if not path.is_file():
            raise ConfigError(f"--options {path}: file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"--options {path}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"--options {path}: expected a mapping of settings")
    overrides = list(args.overrides)
    if args.chunk_mb is not None:
        overrides.append(f"chunk_mb={args.chunk_mb}")
    if args.per_package_bytes is not None:
        overrides.append(f"per_package_bytes={args.per_package_bytes}")
    build_corpus(args.source, args.out, build_options(values, overrides))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from gocram.data.corpus.report import print_report

    print_report(Path(args.dir), verify=args.verify, as_json=args.json)
    return 0


def run_pretokenize(args: argparse.Namespace) -> int:
    from gocram.data.tokens.pretokenize import pretokenize

    index = pretokenize(args.corpus, args.tokenizer, args.out)
    print(json.dumps({"shards": len(index["shards"]), "tokens": index["tokens"],
                      "dtype": index["dtype"], "tokenizer_sha256": index["tokenizer_sha256"]}))
    return 0
