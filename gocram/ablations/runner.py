"""Run a matrix: each cell in a fresh subprocess under its wall-clock budget and a hard timeout.

A crashing or timed-out cell becomes a `failed: <error>` row and the matrix goes on; a cell the
device cannot run becomes `unsupported: <reason>`; a rerun skips cells that already have an ok row
for the same config hash on the same device, so an interrupted matrix resumes where it stopped.
Every row carries the invocation's `matrix_run` id; a challenge (records.py) skips only cells done
in its own matrix run, with seeds interleaved.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gocram.ablations.matrix import Matrix
from gocram.ablations.results import append_row, has_row, load_rows, make_row, new_matrix_run
from gocram.ablations.toggles import apply_toggles, unsupported_reason
from gocram.config import RunConfig, load_config
from gocram.core.errors import ConfigError
from gocram.plan import Env

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class LabOptions:
    results_dir: Path
    runs_dir: Path
    budget_s: float | None = None
    seeds: int | None = None
    profile: bool = False
    force: bool = False
    only_cells: tuple[str, ...] | None = None  # run just these cells of the matrix
    # Every row of one invocation carries its matrix_run id (a new one unless given, to resume a run).
    matrix_run: str | None = None
    # Skip only cells done in this matrix_run (a challenge measures both sides afresh), not any run.
    resume_within_run: bool = False
    interleave_seeds: bool = False  # seed-major order (a s0, b s0, a s1, ...): drift hits both cells
    row_tags: dict[str, Any] = field(default_factory=dict)  # extra fields on every row (roles)


def _say(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def default_timeout(budget_s: float) -> float:
    """Budget plus room for start-up, data preparation, compilation overrun and validation."""
    return 2 * budget_s + 600


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:80]


def cell_launcher(cfg: RunConfig) -> list[str]:
    """python, or torchrun with one process per GPU (two gloo processes on CPU) for the engines
    that need a process group; rank 0 writes the cell's result.json."""
    from gocram.train.engines import ENGINES, launch_nproc

    if not ENGINES.get(cfg.impl.engine).distributed:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={launch_nproc()}"]


def run_cell_process(cfg: RunConfig, run_dir: Path, *, timeout_s: float,
                     profile: bool) -> tuple[str, dict | None]:
    """(status, result): stream the cell's progress lines, keep its last lines for a failure reason."""
    if run_dir.exists():  # an earlier failed attempt: keep it aside, start clean
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}"))
    run_dir.mkdir(parents=True)
    spec = run_dir / "cell.json"
    spec.write_text(json.dumps({"config": cfg.to_dict(), "out": str(run_dir), "profile": profile}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([*cell_launcher(cfg), "-m", "gocram.ablations.cell", str(spec)],
                            cwd=os.getcwd(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def pump() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip())
            print(f"    {line.rstrip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun passes it on to its workers, which run in sessions of their own
        # and would survive a SIGKILL of the launcher's group.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
        return f"failed: timeout after {timeout_s:.0f}s", None
    reader.join(timeout=5)
    result_file = run_dir / "result.json"
    if code == 0 and result_file.exists():
        return "ok", json.loads(result_file.read_text())
    errors = [line for line in tail if line.startswith("gocram: error:") or "Error" in line]
    reason = (errors[-1] if errors else (tail[-1] if tail else "no output")).removeprefix("gocram: error: ")
    return f"failed: exit {code}: {reason}", None


def run_matrix(matrix: Matrix, opts: LabOptions, env: Env | None = None) -> list[dict]:
    """Run every (cell, seed) not already done; returns this matrix's rows for this device."""
    cells = matrix.expand(force=opts.force)
    if opts.only_cells:
        unknown = sorted(set(opts.only_cells) - {c.name for c in cells})
        if unknown:
            raise ConfigError(f"matrix {matrix.name!r} has no cells {unknown}; "
                              f"its cells: {[c.name for c in cells]}")
        cells = [c for c in cells if c.name in opts.only_cells]
    budget = opts.budget_s or matrix.budget_s
    seeds = tuple(range(opts.seeds)) if opts.seeds else matrix.seeds
    base = load_config(matrix.base, [*matrix.overrides, f"train.budget_s={budget}"])
    env = env or Env.detect(base.impl.device)
    rows_file = opts.results_dir / "runs.jsonl"
    timeout = matrix.timeout_s or default_timeout(budget)
    work = ([(cell, seed) for seed in seeds for cell in cells] if opts.interleave_seeds
            else [(cell, seed) for cell in cells for seed in seeds])
    matrix_run = opts.matrix_run or new_matrix_run()
    row_ids = {"matrix_run": matrix_run, "tags": opts.row_tags}
    done_in = {"matrix_run": matrix_run} if opts.resume_within_run else {}
    _say(f"matrix {matrix.name!r}: {len(cells)} cells x {len(seeds)} seeds on {env.device_name}, "
         f"{budget:g}s budget per cell, matrix run {matrix_run}")
    for i, (cell, seed) in enumerate(work, 1):
        label = f"{i}/{len(work)} {cell.name} seed {seed}"
        seeded = _with_seed(base, seed)
        try:
            cfg = apply_toggles(seeded, cell.toggles)
        except ConfigError as err:
            row = make_row(matrix=matrix.name, cell=cell.name, toggles=cell.toggles, seed=seed,
                           cfg=seeded, status=f"failed: config: {err}", device_name=env.device_name,
                           **row_ids)
            append_row(rows_file, row)
            _say(f"{label}: {row['status']}")
            continue
        existing = load_rows(rows_file)
        reason = unsupported_reason(env, cfg)
        if reason:
            status = f"unsupported: {reason}"
            if not has_row(existing, matrix=matrix.name, cell=cell.name, config_hash=cfg.hash(),
                           device_name=env.device_name, status=status, **done_in):
                append_row(rows_file, make_row(matrix=matrix.name, cell=cell.name, toggles=cell.toggles,
                                               seed=seed, cfg=cfg, status=status,
                                               device_name=env.device_name, **row_ids))
            _say(f"{label}: {status}")
            continue
        if has_row(existing, matrix=matrix.name, cell=cell.name, config_hash=cfg.hash(),
                   device_name=env.device_name, **done_in):
            _say(f"{label}: already done (ok row for config {cfg.hash()}), skipped")
            continue
        run_dir = opts.runs_dir / _slug(matrix.name) / f"{_slug(cell.name)}-s{seed}"
        _say(f"{label}: running ({budget:g}s budget, hard timeout {timeout:.0f}s) -> {run_dir}")
        status, result = run_cell_process(cfg, run_dir, timeout_s=timeout, profile=opts.profile)
        append_row(rows_file, make_row(matrix=matrix.name, cell=cell.name, toggles=cell.toggles,
                                       seed=seed, cfg=cfg, status=status, device_name=env.device_name,
                                       result=result, run_dir=str(run_dir), **row_ids))
        summary = (f"val_bpb {result['val_bpb']:.4f}, {result['tokens_per_s']:,.0f} tok/s"
                   if result else "")
        _say(f"{label}: {status} {summary}")
    return [r for r in load_rows(rows_file)
            if r["matrix"] == matrix.name and r["device_name"] == env.device_name]


def _with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    return replace(cfg, train=replace(cfg.train, seed=seed))
