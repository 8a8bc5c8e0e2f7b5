"""The `gocram` command: each room adds its own subcommands; user errors exit 2 in one line."""

from __future__ import annotations

import argparse
import sys

from gocram.core.errors import GocramError


def build_parser() -> argparse.ArgumentParser:
    from gocram.ablations import cli as lab_cli
    from gocram.data import cli as data_cli
    from gocram.data.tokens.tokenizer import cli as tokenizer_cli
    from gocram.eval import cli as eval_cli
    from gocram.train import cli as train_cli

    parser = argparse.ArgumentParser(prog="gocram", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for room in (train_cli, lab_cli, eval_cli, data_cli, tokenizer_cli):
        room.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except GocramError as err:
        print(f"gocram: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gocram: interrupted", file=sys.stderr)
        return 130
