"""The append-only results/runs.jsonl: one JSON row per cell run (ok, failed or unsupported)."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from pathlib import Path

from gocram.ablations.toggles import parse_spec
from gocram.config import RunConfig

# Fields copied from a run's result.json into its row (the rest of result.json stays in the run dir).
RESULT_FIELDS = (
    "steps", "tokens", "bytes", "tokens_per_s", "tokens_per_s_steady", "bytes_per_s", "mfu",
    "mfu_note", "flops_per_token", "peak_mem_bytes", "peak_mem_kind", "mean_gpu_util",
    "mean_cpu_util", "gpu_monitor_note", "mean_power_w", "energy_j", "gpu_mem_used_peak_bytes",
    "compile_s", "compile_cache", "eval_s", "ckpt_s", "elapsed_s", "val_loss", "val_bpb", "xz_bpb",
    "val_bytes", "threads", "n_params", "precision", "val_curve", "first_losses", "profile_dir",
    "profile_top_ops",
)


def new_matrix_run() -> str:
    """An id for one invocation of a matrix: UTC time (sortable) plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def make_row(*, matrix: str, cell: str, toggles: tuple[str, ...], seed: int, cfg: RunConfig,
             status: str, device_name: str, result: dict | None = None,
             run_dir: str | None = None, matrix_run: str | None = None,
             tags: dict | None = None) -> dict:
    from gocram.core.env import git_sha, versions

    row = {
        "run_id": uuid.uuid4().hex[:12], "matrix": matrix, "matrix_run": matrix_run,
        "cell": cell, "toggles": list(toggles),
        "kinds": {t: parse_spec(t)[0].kind for t in toggles}, "seed": seed,
        "budget_s": cfg.train.budget_s, "status": status, "device_name": device_name,
        "config_hash": cfg.hash(), "git_sha": git_sha(), "versions": versions(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_dir": run_dir,
        # the 1-minute load average when the row was written: a shared machine shows here
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for key in RESULT_FIELDS:
        row[key] = (result or {}).get(key)
    row["config"] = cfg.flat()
    row.update(tags or {})
    return row


def append_row(path: Path, row: dict) -> None:
    """Append one line under an exclusive lock, fsynced: parallel labs never interleave rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        fcntl.flock(handle, fcntl.LOCK_UN)


def load_rows(path: Path) -> list[dict]:
    """All rows; a torn last line (a crash mid-write) is skipped, not fatal."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def has_row(rows: list[dict], *, matrix: str, cell: str, config_hash: str, device_name: str,
            status_prefix: str = "ok", status: str | None = None, matrix_run: str | None = None) -> bool:
    """Whether this cell of this matrix already has a row for this exact config on this device
    (and, given matrix_run, in that run of the matrix)."""
    return any(r["matrix"] == matrix and r["cell"] == cell and r["config_hash"] == config_hash
               and r["device_name"] == device_name
               and (matrix_run is None or r.get("matrix_run") == matrix_run)
               and (r["status"] == status if status else r["status"].startswith(status_prefix))
               for r in rows)
