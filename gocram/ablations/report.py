"""Tables and plots for a matrix on one device, derived from runs.jsonl rows and nothing else.

Per cell: mean +- sd over seeds; tokens/s and val bits per byte as deltas against the baseline
of the same commit (and, as every table is one device's, the same machine), flagged only where the
delta exceeds the seed noise (two standard errors of the difference; with a single seed the noise
is unknown and nothing is flagged). A cell without a same-commit baseline gets its delta against
the newest baseline marked with a dagger and never flagged: code changed between the two.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Stat:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.values) if self.n >= 2 else None

    def fmt(self, spec: str) -> str:
        if self.mean is None:
            return "-"
        text = format(self.mean, spec)
        return f"{text} ± {format(self.sd, spec)}" if self.sd is not None else text


def noise(a: Stat, b: Stat) -> float | None:
    if a.sd is None or b.sd is None:
        return None
    return 2.0 * math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n)


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def latest_per_run(rows: list[dict]) -> list[dict]:
    """The newest row for each (cell, seed); reruns supersede earlier attempts."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        latest[(row["cell"], row["seed"])] = row
    return list(latest.values())


@dataclass
class CellSummary:
    cell: str
    toggles: list[str]
    kinds: str
    status: str
    rows: list[dict]

    def stat(self, key: str) -> Stat:
        return Stat([r[key] for r in self.rows if r["status"] == "ok" and r.get(key) is not None])


def summarise(rows: list[dict]) -> list[CellSummary]:
    by_cell: dict[str, list[dict]] = {}
    for row in latest_per_run(rows):
        by_cell.setdefault(row["cell"], []).append(row)
    summaries = []
    for cell, cell_rows in by_cell.items():
        statuses = sorted({r["status"] for r in cell_rows})
        kinds = sorted(set(cell_rows[0]["kinds"].values())) or ["baseline"]
        summaries.append(CellSummary(cell, cell_rows[0]["toggles"], "/".join(kinds),
                                     "ok" if statuses == ["ok"] else "; ".join(statuses), cell_rows))
    base = base_cell(summaries)
    summaries.sort(key=lambda s: (s is not base, s.status != "ok"))
    return summaries


def base_cell(summaries: list[CellSummary]) -> CellSummary | None:
    """The cell every delta is against: the one named `baseline`, else the one without toggles
    (a matrix may name its base for what it is, as block's `plain`)."""
    named = [s for s in summaries if s.cell == "baseline"]
    bare = [s for s in summaries if not s.toggles]
    return next(iter(named or bare), None)


OTHER_COMMIT = "†"  # marks a delta against a baseline from another commit than the cell's


def _delta(cell: Stat, base: Stat, relative: bool, same_commit: bool = True) -> tuple[str, bool]:
    if cell.mean is None or base.mean is None:
        return "-", False
    diff = cell.mean - base.mean
    n = noise(cell, base)
    flagged = same_commit and n is not None and abs(diff) > n
    text = f"{100 * diff / base.mean:+.1f}%" if relative else f"{diff:+.4f}"
    if not same_commit:
        return text + OTHER_COMMIT, False
    return (f"**{text}**" if flagged else text), flagged


def commits_of(s: CellSummary) -> set[str | None]:
    return {r["git_sha"] for r in s.rows if r["status"] == "ok"}


def baseline_for(cell: CellSummary, base: CellSummary, runs: list[dict]) -> tuple[CellSummary, bool]:
    """The baseline to compare `cell` with: its newest rows at the cell's commit, when the cell's
    rows are all of one commit and the baseline ran there; else the newest baseline, marked."""
    commits = commits_of(cell)
    if len(commits) == 1:
        (commit,) = commits
        same = [r for r in runs if r["cell"] == base.cell and r["git_sha"] == commit and r["status"] == "ok"]
        if same:
            return CellSummary(base.cell, base.toggles, base.kinds, "ok", latest_per_run(same)), True
    return base, False


def _util(s: CellSummary) -> str:
    gpu = s.stat("mean_gpu_util")
    return f"GPU {gpu.fmt('.0f')}%" if gpu.mean is not None else f"CPU {s.stat('mean_cpu_util').fmt('.0f')}%"


MEASURED_PEAK = "measured matmul peak"  # how gocram.measure.flops.mfu names a measured basis


def _row_peak(row: dict) -> float | None:
    """The measured peak (FLOP/s) a row's MFU was computed against, recovered from the row."""
    if not str(row.get("mfu_note") or "").startswith(MEASURED_PEAK) or not row.get("mfu"):
        return None
    return row["tokens_per_s"] * row["flops_per_token"] / row["mfu"]


def best_measured_peaks(rows: list[dict]) -> dict[str, float]:
    """Per precision, the best matmul peak any ok row of this table measured: one basis for every
    cell, so a cell whose own measurement a neighbour's burst lowered cannot rank above its speed."""
    best: dict[str, float] = {}
    for row in rows:
        peak = _row_peak(row) if row["status"] == "ok" and row.get("flops_per_token") else None
        if peak is not None:
            best[row.get("precision")] = max(best.get(row.get("precision"), 0.0), peak)
    return best


def _mfu(s: CellSummary, best_peaks: dict[str, float]) -> str:
    """Mean MFU (a measured CPU peak replaced by the table's best for that precision), or an
    error where a row's exceeds 100% (the peak it was measured against is an underestimate)."""
    values, errors = [], False
    for row in (r for r in s.rows if r["status"] == "ok"):
        if row.get("mfu") is None:
            errors |= str(row.get("mfu_note") or "").startswith("error")
        elif _row_peak(row) is not None and row.get("precision") in best_peaks:
            values.append(row["tokens_per_s"] * row["flops_per_token"] / best_peaks[row.get("precision")])
        else:
            values.append(row["mfu"])
    if errors or any(v > 1.0 for v in values):
        return "error: MFU > 100%"
    return Stat(values).fmt(".1%") if values else "n/a"


# How far an exact cell's first training losses may sit from its base cell's (same seed, same
# commit) and still count as the same losses: fp32 reorders sums only; bf16 and fp16 round each
# matmul's inputs, so fusing or chunking them moves the losses by a few bf16 ulps of the loss.
LOSS_MATCH_ATOL = {"fp32": 1e-4, "bf16": 1e-2, "fp16": 1e-2}
LOSS_MATCH = "loss ≡ base"  # the column, shown where the rows carry their first losses


def loss_match(cell: CellSummary, base: CellSummary) -> str:
    """Whether the cell's first training losses equal its base cell's, seed by seed, within
    LOSS_MATCH_ATOL of the row's precision; n/a where the learning rates differed (the LR follows
    the wall clock during warm-up and decay, so equal losses cannot be promised there)."""
    base_by_seed = {r["seed"]: r for r in base.rows if r["status"] == "ok" and r.get("first_losses")}
    deltas, ok = [], True
    for row in (r for r in cell.rows if r["status"] == "ok" and r.get("first_losses")):
        ref = base_by_seed.get(row["seed"])
        if ref is None:
            continue
        pairs = list(zip(row["first_losses"], ref["first_losses"], strict=False))
        if any(not math.isclose(lr, ref_lr, rel_tol=1e-9) for (_, lr), (_, ref_lr) in pairs):
            return "n/a (LR differs)"
        atol = LOSS_MATCH_ATOL.get(row.get("precision"), LOSS_MATCH_ATOL["fp32"])
        for (loss, _), (ref_loss, _) in pairs:
            if loss is None or ref_loss is None:
                continue
            deltas.append(abs(loss - ref_loss))
            ok &= deltas[-1] <= atol
    if not deltas:
        return "-"
    return f"{'yes' if ok else 'NO'} (max Δ {max(deltas):.0e})"


def _compile_s(s: CellSummary) -> str:
    """Compile seconds, with the inductor cache state (cold, warm) where the rows report it."""
    text = s.stat("compile_s").fmt(".1f")
    caches = sorted({r["compile_cache"] for r in s.rows if r["status"] == "ok" and r.get("compile_cache")})
    return f"{text} ({'/'.join(caches)})" if caches else text


def table_rows(summaries: list[CellSummary], runs: list[dict] | None = None) -> list[dict]:
    """One row per cell; `runs` (all rows of this matrix and device, superseded ones too) is where
    each cell's same-commit baseline is looked up (default: the summaries' own rows)."""
    base = base_cell(summaries)
    runs = runs if runs is not None else [r for s in summaries for r in s.rows]
    best_peaks = best_measured_peaks(runs)
    with_losses = any(r.get("first_losses") for r in runs)
    out = []
    for s in summaries:
        tps, bpb = s.stat("tokens_per_s"), s.stat("val_bpb")
        d_tps = d_bpb = ("-", False)
        same_losses = "base" if s is base else "-"
        if base and s is not base:
            ref, same_commit = baseline_for(s, base, runs)
            d_tps = _delta(tps, ref.stat("tokens_per_s"), True, same_commit)
            d_bpb = _delta(bpb, ref.stat("val_bpb"), False, same_commit)
            if s.kinds == "exact" and same_commit:
                same_losses = loss_match(s, ref)
        first = s.rows[0]
        extra = {LOSS_MATCH: same_losses} if with_losses else {}
        out.append({
            "cell": s.cell, "kind": s.kinds, "status": s.status, "seeds": tps.n,
            "tokens/s": tps.fmt(",.0f"), "Δ tokens/s": d_tps[0],
            "bytes/s": s.stat("bytes_per_s").fmt(",.0f"), "val bpb": bpb.fmt(".4f"),
            "Δ bpb": d_bpb[0], "steps": s.stat("steps").fmt(".0f"),
            "compile s": _compile_s(s), "util": _util(s),
            "peak MiB": (f"{s.stat('peak_mem_bytes').mean / 2**20:,.0f}"
                         if s.stat("peak_mem_bytes").mean else "-"),
            "MFU": _mfu(s, best_peaks),
            "config": first["config_hash"], "git": (first["git_sha"] or "?")[:12],
            # numeric columns for the CSV
            "_tps_mean": tps.mean, "_tps_sd": tps.sd, "_bpb_mean": bpb.mean, "_bpb_sd": bpb.sd,
            "_xz_bpb": s.stat("xz_bpb").mean, "_toggles": " ".join(s.toggles),
            **extra,
        })
    return out


MD_COLUMNS = ["cell", "kind", "status", "seeds", "tokens/s", "Δ tokens/s", "bytes/s", "val bpb", "Δ bpb",
              "steps", "compile s", "util", "peak MiB", "MFU", "config", "git"]


def markdown(matrix: str, device: str, rows: list[dict], runs: list[dict], description: str = "") -> str:
    ok = [r for r in runs if r["status"] == "ok"]
    versions = ok[0]["versions"] if ok else (runs[0]["versions"] if runs else {})
    budgets = sorted({r["budget_s"] for r in runs})
    xz = [r["xz_bpb"] for r in ok if r.get("xz_bpb") is not None]
    commits = ", ".join(sorted({(r["git_sha"] or "?")[:12] for r in runs}))
    lines = [f"# Matrix `{matrix}` on {device}", ""]
    if description:
        lines += [description.strip(), ""]
    columns = MD_COLUMNS + ([LOSS_MATCH] if rows and LOSS_MATCH in rows[0] else [])
    lines += [
        f"Budget per cell: {', '.join(f'{b:g}' for b in budgets)} s of training (compile included, "
        f"validation excluded). Versions: torch {versions.get('torch')}, triton {versions.get('triton')}, "
        f"python {versions.get('python')}. Commits: {commits}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    lines += [""]
    if xz:
        lines.append(f"`xz -9e` on the same validation bytes: {statistics.fmean(xz):.4f} bits per byte.")
    if any(OTHER_COMMIT in str(r["Δ tokens/s"]) + str(r["Δ bpb"]) for r in rows):
        lines.append(f"{OTHER_COMMIT} No baseline ran at this cell's commit: the delta is against the newest "
                     "baseline, from another commit, and is not flagged; rerun the baseline to compare.")
    if any(r["MFU"] not in ("n/a", "-") and not str(r["MFU"]).startswith("error") for r in rows):
        lines.append("MFU on a CPU: against the best matmul peak that any run in this table measured "
                     "in the same precision (one basis for every cell).")
    if any(str(r["MFU"]).startswith("error") for r in rows):
        lines.append("error: MFU > 100% means the matmul peak it was measured against was an "
                     "underestimate (a noisy CPU measurement); no figure is given.")
    seeds = max((r["seeds"] for r in rows), default=0)
    if seeds < 2:
        lines.append("One seed per cell: the seed noise is unknown, so no delta is flagged; "
                     "run with `--seeds 3` to flag deltas larger than the noise.")
    else:
        lines.append("Deltas in **bold** exceed two standard errors of the difference over seeds.")
    if LOSS_MATCH in columns:
        atol = ", ".join(f"{p} {t:g}" for p, t in LOSS_MATCH_ATOL.items())
        kept = max((len(r["first_losses"]) for r in runs if r.get("first_losses")), default=0)
        lines.append(f"{LOSS_MATCH}: an exact cell's first {kept} training losses against its "
                     f"same-commit base cell's, seed by seed: yes within {atol} (by precision); n/a "
                     f"where the learning rates differed (the LR follows the wall clock).")
    lines.append("Kinds: *exact* toggles may only change speed; *approximate* ones are judged by val bpb "
                 "at equal budget. Generated by `gocram lab` from results/runs.jsonl; do not edit.")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = ["cell", "_toggles", "kind", "status", "seeds", "_tps_mean", "_tps_sd", "bytes/s",
               "_bpb_mean", "_bpb_sd", "_xz_bpb", "Δ tokens/s", "Δ bpb", "steps", "compile s", "util",
               "peak MiB", "MFU", "config", "git"]
    if rows and LOSS_MATCH in rows[0]:
        columns.append(LOSS_MATCH)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.lstrip("_") for c in columns])
        for r in rows:
            writer.writerow([r[c] for c in columns])


def plot_curves(path: Path, summaries: list[CellSummary], title: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, s in enumerate(x for x in summaries if x.status == "ok"):
        color = f"C{i % 10}"
        for j, row in enumerate(r for r in s.rows if r.get("val_curve")):
            xs, ys = zip(*row["val_curve"], strict=True)
            ax.plot(xs, ys, marker="o", ms=3, color=color, alpha=0.8, label=s.cell if j == 0 else None)
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("val bits per byte")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(path: Path, summaries: list[CellSummary], title: str) -> None:
    points = [(s.stat("tokens_per_s").mean, s.stat("val_bpb").mean, s.cell)
              for s in summaries if s.status == "ok" and s.stat("val_bpb").mean is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    for x, y, name in points:
        ax.scatter(x, y, color="C3" if (x, y, name) in front else "C0")
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front.sort()
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="C3", alpha=0.5, label="Pareto front")
        ax.legend(fontsize=7)
    ax.set_xlabel("tokens/s")
    ax.set_ylabel("final val bits per byte (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bpb_vs_params(path: Path, summaries: list[CellSummary], title: str) -> list[Path]:
    """Final val bpb against parameters (log x), one point per cell with its sd over seeds: written
    only where the cells differ in size (a size sweep), so the written paths are returned."""
    sized = [s for s in summaries if s.status == "ok" and s.stat("val_bpb").mean is not None
             and s.stat("n_params").mean is not None]
    if len({s.stat("n_params").mean for s in sized}) < 2:
        return []
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in sized:
        x, bpb = s.stat("n_params").mean, s.stat("val_bpb")
        ax.errorbar(x, bpb.mean, yerr=bpb.sd, fmt="o", color="C0", capsize=3)
        ax.annotate(s.cell, (x, bpb.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):  # "4M", not "4x10^6"
        axis(matplotlib.ticker.EngFormatter(sep=""))
    ax.set_xlabel("parameters")
    ax.set_ylabel("final val bits per byte (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def write_reports(all_rows: list[dict], results_dir: Path, matrix: str, description: str = "") -> list[Path]:
    """For each device that ran this matrix: table.md, table.csv, bpb_vs_time.png, pareto.png, and
    bpb_vs_params.png where the cells differ in size."""
    written = []
    devices = sorted({r["device_name"] for r in all_rows if r["matrix"] == matrix})
    for device in devices:
        runs = [r for r in all_rows if r["matrix"] == matrix and r["device_name"] == device]
        summaries = summarise(runs)
        rows = table_rows(summaries, runs)
        out = results_dir / matrix / device_slug(device)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(markdown(matrix, device, rows, latest_per_run(runs), description))
        write_csv(out / "table.csv", rows)
        plot_curves(out / "bpb_vs_time.png", summaries, f"{matrix}: val bpb over training time")
        plot_pareto(out / "pareto.png", summaries, f"{matrix}: speed vs quality")
        written += [out / "table.md", out / "table.csv", out / "bpb_vs_time.png", out / "pareto.png"]
        written += plot_bpb_vs_params(out / "bpb_vs_params.png", summaries, f"{matrix}: val bpb by size")
        profiled = [r for r in latest_per_run(runs) if r.get("profile_top_ops")]
        if profiled:  # runs with --profile: where the step time goes
            (out / "profile.md").write_text(profile_markdown(matrix, device, profiled))
            written.append(out / "profile.md")
    return written


def profile_markdown(matrix: str, device: str, rows: list[dict]) -> str:
    lines = [f"# Where the time goes: `{matrix}` on {device}", "",
             "torch.profiler over a few steady training steps per cell (`gocram lab --profile`): the "
             "operators with the most self time, and their share of all self time in those steps. "
             "Full tables, Chrome and TensorBoard traces: `RUN_DIR/profile/`.", ""]
    for row in rows:
        lines += [f"## {row['cell']} (seed {row['seed']}, config {row['config_hash'][:16]}, "
                  f"git {str(row.get('git_sha'))[:12]})", "",
                  "| operator | self ms | share | calls |", "|---|---|---|---|"]
        lines += [f"| `{op['op']}` | {op['self_ms']:,.1f} | {100 * op['share']:.1f}% | {op['calls']} |"
                  for op in row["profile_top_ops"]]
        lines.append("")
    lines.append("Generated by `gocram lab` from results/runs.jsonl; do not edit.")
    return "\n".join(lines) + "\n"
