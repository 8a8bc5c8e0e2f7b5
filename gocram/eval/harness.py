"""Run a Go suite: completions -> one `*_test.go` each -> sandboxed `go test` -> pass@k.

Writes `results.jsonl` (one row per task: its samples, their statuses, pass@k) and
`summary.json` into the output directory; both appear atomically when the run completes, and
`results.jsonl.partial` holds finished tasks while it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json
from gocram.eval.gorun import (
    DEFAULT_LIMITS,
    Limits,
    describe_sandbox,
    find_toolchain,
    run_go_test,
    sandbox_problem,
)
from gocram.eval.passk import ks_for, pass_at_k
from gocram.eval.suites import Task

SAMPLE_OUTPUT_CHARS = 600  # per failed sample in results.jsonl

# task -> [(completion, how it stopped)]
CompletionSource = Callable[[Task], Iterable[tuple[str, str]]]


def select_tasks(tasks: list[Task], *, task_ids: Iterable[str] = (), limit: int | None = None) -> list[Task]:
    wanted = list(task_ids)
    if wanted:
        known = {t.task_id: t for t in tasks}
        missing = [t for t in wanted if t not in known]
        if missing:
            raise GocramError(f"--tasks: unknown task id(s) {', '.join(missing)}")
        tasks = [known[t] for t in wanted]
    return tasks[:limit] if limit else tasks


def go_version() -> str:
    done = subprocess.run(["go", "version"], capture_output=True, text=True)
    return done.stdout.strip()


def evaluate(tasks: list[Task], completions: CompletionSource, out: str | Path, *, suite: str,
             jobs: int = 2, limits: Limits = DEFAULT_LIMITS, meta: dict | None = None) -> dict:
    """Test every completion of every task; returns the summary (also written to out)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problem = sandbox_problem()
    if problem:
        raise GocramError(f"cannot run untrusted Go code: {problem}")
    toolchain = find_toolchain()
    t0 = time.perf_counter()
    partial = out / "results.jsonl.partial"
    rows = []
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool, open(partial, "w") as log:
        pending = []
        for task in tasks:
            samples = list(completions(task))
            futures = [pool.submit(run_go_test, task.program(text), filename=task.filename,
                                   limits=limits, toolchain=toolchain) for text, _ in samples]
            pending.append((task, samples, futures))
            # Keep the pool fed but write rows in task order as they complete.
            while pending and (all(f.done() for f in pending[0][2]) or len(pending) > 2 * jobs):
                row = _task_row(*pending.pop(0))
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
        for item in pending:
            row = _task_row(*item)
            rows.append(row)
            log.write(json.dumps(row) + "\n")
    os.replace(partial, out / "results.jsonl")
    summary = summarize(rows, suite=suite, elapsed_s=time.perf_counter() - t0)
    summary.update(meta or {})
    summary["go"] = go_version()
    summary["sandbox"] = describe_sandbox(limits)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _task_row(task: Task, samples: list[tuple[str, str]], futures) -> dict:
    results = [f.result() for f in futures]
    n, c = len(results), sum(r.passed for r in results)
    row = {"suite": task.suite, "task_id": task.task_id, "n": n, "passed": c}
    row.update({f"pass@{k}": pass_at_k(n, c, k) for k in ks_for(n)})
    if task.canonical_repaired:
        row["canonical_repaired"] = True
    row["samples"] = [
        {"completion": text, "stop_reason": stop, "status": r.status, "seconds": round(r.seconds, 3),
         **({} if r.passed else {"output": r.output[-SAMPLE_OUTPUT_CHARS:]})}
        for (text, stop), r in zip(samples, results, strict=True)
    ]
    return row


def summarize(rows: list[dict], *, suite: str, elapsed_s: float) -> dict:
    if not rows:
        raise GocramError("no tasks were evaluated")
    ns = {r["n"] for r in rows}
    n = min(ns)
    statuses = Counter(s["status"] for r in rows for s in r["samples"])
    summary = {"suite": suite, "tasks": len(rows), "n": n, "samples": sum(r["n"] for r in rows),
               "tasks_all_passed": sum(r["passed"] == r["n"] for r in rows)}
    for k in ks_for(n):
        summary[f"pass@{k}"] = sum(r[f"pass@{k}"] for r in rows) / len(rows)
    summary["statuses"] = dict(sorted(statuses.items()))
    summary["failed_tasks"] = [r["task_id"] for r in rows if r["passed"] < r["n"]][:50]
    summary["elapsed_s"] = round(elapsed_s, 1)
    return summary


def format_summary(summary: dict) -> str:
    ks = [key for key in ("pass@1", "pass@10", "pass@100") if key in summary]
    header = ["suite", "tasks", "n", *ks, "statuses"]
    values = [summary["suite"], str(summary["tasks"]), str(summary["n"]),
              *(f"{summary[k]:.2%}" for k in ks),
              ", ".join(f"{k} {v}" for k, v in summary["statuses"].items())]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
             "| " + " | ".join(values) + " |"]
    return "\n".join(lines)
