"""`gocram lab`: run an ablation matrix and print its results table."""

from __future__ import annotations

import argparse
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


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def print_toggles() -> None:
    from gocram.ablations.toggles import TOGGLES

    print(f"{'toggle':<22} {'kind':<12} {'writes':<34} what")
    for name, t in sorted(TOGGLES.items()):
        spec = f"{name}=VALUE" if t.takes_value else name
        print(f"{spec:<22} {t.kind:<12} {', '.join(t.writes):<34} {t.description}")
