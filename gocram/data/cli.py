"""`gocram data ...`: build corpora from Go sources."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build Go corpora")
    data = p.add_subparsers(dest="data_command", required=True)
    build = data.add_parser("build", help="filter, dedup and write a corpus directory")
    build.add_argument("--source", required=True, help="debian:LIST or dir:PATH")
    build.add_argument("--out", required=True)
    build.add_argument("--per-package-bytes", type=int, default=0,
                       help="keep at most this many bytes per package (0 = no cap)")
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    from gocram.data.build import build_corpus

    build_corpus(args.source, args.out, per_package_bytes=args.per_package_bytes)
    return 0
