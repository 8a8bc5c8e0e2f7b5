"""`gocram eval bpb`: score any Go tree with a trained checkpoint."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint")
    evals = p.add_subparsers(dest="eval_command", required=True)
    bpb = evals.add_parser("bpb", help="bits per byte over every .go file under a directory")
    bpb.add_argument("--checkpoint", required=True, help="a run directory or a ckpt-*.pt file")
    bpb.add_argument("--dir", required=True, help="directory of Go files to score")
    bpb.add_argument("--batch", type=int, default=16)
    bpb.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bpb.set_defaults(handler=run_bpb)


def run_bpb(args: argparse.Namespace) -> int:
    from gocram.eval.tree import score_tree

    print(json.dumps(score_tree(args.checkpoint, args.dir, batch=args.batch, device=args.device),
                     indent=1))
    return 0
