"""`gocram lab`: run an ablation matrix and print its results table, or run a challenger against
the record (`--challenge`) and write the records ledger (`--records`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="run an ablation matrix on fixed wall-clock budgets")
    p.add_argument("--matrix", help="a shipped matrix name or a YAML path")
    p.add_argument("--toggles", action="store_true", help="list every toggle (kind, stage) and exit")
    p.add_argument("--budget", type=float, help="override the budget per cell (seconds)")
    p.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the matrix's seeds")
    p.add_argument("--profile", action="store_true", help="torch.profiler trace per cell")
    p.add_argument("--force", action="store_true", help="run grids larger than max_cells")
    p.add_argument("--results", default="results", help="where runs.jsonl and tables go")
    p.add_argument("--runs", default="runs/lab", help="where each cell's run directory goes")
    p.add_argument("--report-only", action="store_true", help="rebuild tables from runs.jsonl")
    p.add_argument("--list", action="store_true", help="print the cells and exit")
    p.add_argument("--cells", help="comma-separated cell names: run only these (the rest keep their rows)")
    p.add_argument("--challenge", metavar="SPEC",
                   help="run this cell (NAME, NAME:TOGGLE+TOGGLE or TOGGLE+TOGGLE) against the record, "
                        "seeds interleaved, and write the verdict to results/records.md; --matrix names "
                        "the record chain (default: records)")
    p.add_argument("--record", metavar="SPEC",
                   help="with --challenge: the record to run against (default: this machine's current "
                        "record in the ledger, else the chain's first cell)")
    p.add_argument("--matrix-run", metavar="ID", help="with --challenge: resume that interrupted run")
    p.add_argument("--records", action="store_true",
                   help="rewrite results/records.md and records.json from runs.jsonl and exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gocram.ablations.matrix import SHIPPED, load_matrix
    from gocram.ablations.report import write_reports
    from gocram.ablations.results import load_rows
    from gocram.ablations.runner import LabOptions, run_matrix
    from gocram.core.errors import ConfigError

    if args.toggles:
        print_toggles()
        return 0
    if args.records:
        return write_records(Path(args.results))
    if args.challenge:
        return run_challenge(args)
    if args.record or args.matrix_run:
        raise ConfigError("--record and --matrix-run go with --challenge SPEC")
    if not args.matrix:
        raise ConfigError("gocram lab needs --matrix NAME|PATH (shipped: "
                          f"{sorted(p.stem for p in SHIPPED.glob('*.yaml'))}) or --toggles")
    matrix = load_matrix(args.matrix)
    cells = matrix.expand(force=args.force)
    if args.list:
        for cell in cells:
            print(f"{cell.name}: {' '.join(cell.toggles) or '(baseline)'}")
        return 0
    results = Path(args.results)
    if not args.report_only:
        run_matrix(matrix, LabOptions(results_dir=results, runs_dir=Path(args.runs), budget_s=args.budget,
                                      seeds=args.seeds, profile=args.profile, force=args.force,
                                      only_cells=_names(args.cells)))
    written = write_reports(load_rows(results / "runs.jsonl"), results, matrix.name, matrix.description)
    tables = [p for p in written if p.suffix == ".md"]
    for table in tables:
        print(table.read_text())
    print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def write_records(results: Path) -> int:
    from gocram.ablations.records import write_ledger
    from gocram.ablations.results import load_rows

    _, written = write_ledger(load_rows(results / "runs.jsonl"), results)
    print(written[0].read_text())
    print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def run_challenge(args: argparse.Namespace) -> int:
    """The challenger against the record, N seeds each, interleaved, in one matrix run; the verdict
    comes from the ledger rebuilt from runs.jsonl, so the printed and the written verdict agree."""
    from gocram.ablations.matrix import Cell, load_matrix
    from gocram.ablations.records import (
        RECORDS_MATRIX,
        RULE,
        build_ledger,
        challenge_matrix,
        current_record,
        parse_cell_spec,
        write_ledger,
    )
    from gocram.ablations.results import load_rows, new_matrix_run
    from gocram.ablations.runner import LabOptions, run_matrix
    from gocram.config import load_config
    from gocram.core.errors import ConfigError
    from gocram.plan import Env

    for flag in ("cells", "list", "report_only", "profile"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} does not go with --challenge")
    chain = load_matrix(args.matrix or RECORDS_MATRIX)
    results = Path(args.results)
    ledger = build_ledger(load_rows(results / "runs.jsonl"))
    env = Env.detect(load_config(chain.base, list(chain.overrides)).impl.device)
    known = {c.name: c for c in chain.expand()}
    for device in [*(d for d in ledger["devices"] if d != env.device_name), env.device_name]:
        for rec in ledger["devices"].get(device, {}).get("records", []):  # this machine's last
            known[rec["name"]] = Cell(rec["name"], tuple(rec["toggles"]))
    if args.record:
        record = parse_cell_spec(args.record, known)
    else:
        current = current_record(ledger, env.device_name)
        record = known[current["name"]] if current else chain.expand()[0]
    challenger = parse_cell_spec(args.challenge, known)
    matrix = challenge_matrix(chain, record, challenger)
    seeds = max(len(chain.seeds), RULE.min_seeds) if args.seeds is None else args.seeds
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 for a challenge, got {seeds}")
    if seeds < RULE.min_seeds:
        print(f"[lab] {seeds} seed(s): the verdict will be 'too few seeds' (the rule needs "
              f"{RULE.min_seeds}); fine for screening", file=sys.stderr)
    roles = {"record": record.name, "challenger": challenger.name}
    matrix_run = args.matrix_run or new_matrix_run()
    earlier = {json.dumps(r.get("challenge"), sort_keys=True)
               for r in load_rows(results / "runs.jsonl") if r.get("matrix_run") == matrix_run}
    if earlier - {json.dumps(roles, sort_keys=True)}:
        raise ConfigError(f"--matrix-run {matrix_run}: that run challenged {sorted(earlier)}, "
                          f"not {roles}; resume it with the same --challenge and --record")
    run_matrix(matrix, LabOptions(
        results_dir=results, runs_dir=Path(args.runs) / "challenges" / matrix_run, budget_s=args.budget,
        seeds=seeds, force=args.force, matrix_run=matrix_run, resume_within_run=True,
        interleave_seeds=True,
        row_tags={"challenge": roles}), env=env)
    ledger, written = write_ledger(load_rows(results / "runs.jsonl"), results)
    entry = next(c for state in ledger["devices"].values() for c in state["challenges"]
                 if c["matrix_run"] == matrix_run)
    verdict = "accepted" if entry["accepted"] else "rejected"
    print(f"{challenger.name} against {record.name} on {env.device_name} (matrix run {matrix_run}): "
          f"{verdict}: {entry['reason']}")
    print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def print_toggles() -> None:
    from gocram.ablations.toggles import TOGGLES

    print(f"{'toggle':<22} {'kind':<12} {'writes':<34} what")
    for name, t in sorted(TOGGLES.items()):
        spec = f"{name}=VALUE" if t.takes_value else name
        print(f"{spec:<22} {t.kind:<12} {', '.join(t.writes):<34} {t.description}")
