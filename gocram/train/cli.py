"""`gocram train`: one budgeted run, printing its result table; `gocram status`: how a run is doing."""

from __future__ import annotations

import argparse
import os
import shlex

from gocram.config import load_config


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train for a wall-clock budget and write result.json")
    p.add_argument("--config", default="tiny", help="a YAML path or a named size in configs/")
    p.add_argument("--budget", type=float, help="training budget in seconds (train.budget_s)")
    p.add_argument("--out", required=True, help="run directory (result.json, checkpoint/, logs)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--engine", help="impl.engine: single, ddp, fsdp, zero1, zero2 or zero3 "
                                    "(all but single run under torchrun, one process per device)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.set_defaults(handler=run)

    p = sub.add_parser("status", help="how a run is doing (live or finished): progress, ETA, "
                                      "val bpb, tokens/s, device, data wait, guard events")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run's --out directory")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 2) until the run ends")
    p.add_argument("--json", action="store_true", help="machine-readable (one line per refresh)")
    p.set_defaults(handler=status)


def format_result(result: dict) -> str:
    rows = [
        ("val bits per byte", f"{result['val_bpb']:.4f}"),
        ("xz -9e on the same val bytes", f"{result['xz_bpb']:.4f}"),
        ("val loss (nats/token)", f"{result['val_loss']:.4f}"),
        ("tokens/s", f"{result['tokens_per_s']:,.0f}"),
        ("bytes/s", f"{result['bytes_per_s']:,.0f}"),
        ("MFU", f"{result['mfu']:.1%}" if result["mfu"] is not None else result["mfu_note"]),
        ("steps / tokens", f"{result['steps']:,} / {result['tokens']:,}"),
        ("budget / train / eval / compile s", f"{result['budget_s']:.0f} / {result['elapsed_s']:.1f}"
                                              f" / {result['eval_s']:.1f} / {result['compile_s']:.1f}"),
        ("peak memory", f"{result['peak_mem_bytes'] / 2**20:,.0f} MiB ({result['peak_mem_kind']})"),
        ("parameters", f"{result['n_params']:,}"),
        ("device", result["device_name"]),
        ("config hash / git", f"{result['config_hash']} / {result['git_sha']}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from gocram.train.trainer import train  # torch import deferred until needed

    overrides = list(args.overrides)
    if args.budget is not None:
        overrides.append(f"train.budget_s={args.budget}")
    if args.engine is not None:
        overrides.append(f"impl.engine={args.engine}")
    cfg = load_config(args.config, overrides)
    result = train(cfg, args.out, resume=args.resume)
    if result.get("world_size", 1) > 1 and os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 prints the table for the whole run
    if result["status"] == "stopped":
        print(f"[train] stopped by {result['signal']} at step {result['steps']} with a checkpoint; "
              f"resume with: {resume_command(args)}")
        return 0
    print(format_result(result))
    print(f"\nresult row: {args.out}/result.json")
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The `gocram train` line that continues this run (under torchrun, with the same process
    count: a multi-process checkpoint refuses another)."""
    words = ["gocram", "train", "--config", args.config]
    if args.budget is not None:
        words += ["--budget", str(args.budget)]
    if args.engine is not None:
        words += ["--engine", args.engine]
    words += ["--out", args.out, "--resume", *args.overrides]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        words = ["torchrun", "--nproc_per_node", per_node, "-m", *words]
    return shlex.join(words)


def status(args: argparse.Namespace) -> int:
    from gocram.train.status import show

    return show(args.run_dir, as_json=args.json, watch=args.watch)
