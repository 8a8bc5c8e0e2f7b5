"""The records ledger: which recipe is the record on each machine, and how it got there.

The rule (modded-nanogpt, parameter-golf): a challenger becomes the record only if it beats the
current record by at least `margin_bpb` val bits per byte at p < `alpha` (a one-sided Welch t-test
of H0: mean_challenger >= mean_record - margin), with at least `min_seeds` ok seeds on each side,
both measured in one matrix run (one `gocram lab --challenge` invocation) on one machine. Machines
differ by up to 2x in tokens/s, so a row from another machine is never the comparator.

A challenge's rows carry `matrix_run` (the invocation's id) and `challenge` ({record, challenger}:
the roles of its two cells). `results/records.md` and `records.json` are derived from
results/runs.jsonl and nothing else, so `gocram lab --records` rewrites them byte for byte.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

from gocram.ablations.matrix import Cell, Matrix, cell_name
from gocram.ablations.toggles import parse_spec
from gocram.core.errors import ConfigError

RECORDS_MATRIX = "records"  # the shipped matrix whose cells are the record chain


@dataclass(frozen=True, kw_only=True)
class Rule:
    margin_bpb: float = 0.005
    alpha: float = 0.01
    min_seeds: int = 3


RULE = Rule()


# -- the statistics --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WelchTest:
    delta: float  # mean_challenger - mean_record: negative when the challenger is better
    se: float  # standard error of that difference, sqrt(s_r^2/n_r + s_c^2/n_c)
    t: float  # (mean_record - mean_challenger - margin) / se
    df: float  # Welch-Satterthwaite degrees of freedom
    p: float  # P(T >= t) under H0: mean_challenger >= mean_record - margin


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    a, b = var_a / n_a, var_b / n_b
    if a + b == 0:
        return float(n_a + n_b - 2)
    return (a + b) ** 2 / (a ** 2 / (n_a - 1) + b ** 2 / (n_b - 1))


def student_t_sf(t: float, df: float) -> float:
    """P(T >= t) for Student's t with df degrees of freedom (df need not be an integer)."""
    from scipy.stats import t as student_t

    return float(student_t.sf(t, df))


def welch_one_sided(record: list[float], challenger: list[float], margin: float) -> WelchTest:
    """Test H0: mean_challenger >= mean_record - margin against H1: it is lower (lower bpb wins)."""
    if len(record) < 2 or len(challenger) < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    n_r, n_c = len(record), len(challenger)
    var_r, var_c = statistics.variance(record), statistics.variance(challenger)
    delta = statistics.fmean(challenger) - statistics.fmean(record)
    se = math.sqrt(var_r / n_r + var_c / n_c)
    gain = -delta - margin
    df = welch_df(var_r, n_r, var_c, n_c)
    if se == 0:  # identical values on both sides (e.g. a step-clocked, deterministic run)
        t = math.copysign(math.inf, gain) if gain else 0.0
        return WelchTest(delta=delta, se=0.0, t=t, df=df, p=0.0 if gain > 0 else 1.0)
    t = gain / se
    return WelchTest(delta=delta, se=se, t=t, df=df, p=student_t_sf(t, df))


# -- the verdict -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Verdict:
    code: str  # accepted | another_machine | another_run | too_few_seeds | below_margin | p_too_large
    reason: str
    test: WelchTest | None = None

    @property
    def accepted(self) -> bool:
        return self.code == "accepted"


def ok_bpb(rows: list[dict]) -> list[float]:
    return [r["val_bpb"] for r in rows if r["status"] == "ok" and r.get("val_bpb") is not None]


def judge(record_rows: list[dict], challenger_rows: list[dict], rule: Rule = RULE) -> Verdict:
    """Whether the challenger's rows beat the record's under the rule; the reason either way."""
    rows = [*record_rows, *challenger_rows]
    devices = sorted({r["device_name"] for r in rows})
    if len(devices) > 1:
        return Verdict(code="another_machine", reason=f"another machine: rows from {devices}; a record "
                       "is compared only on the machine that measures the challenger")
    runs = sorted({str(r.get("matrix_run")) for r in rows})
    if len(runs) > 1 or any(r.get("matrix_run") is None for r in rows):
        return Verdict(code="another_run", reason=f"another matrix run: rows from {runs}; both sides "
                       "must be measured in one matrix run")
    rec, ch = ok_bpb(record_rows), ok_bpb(challenger_rows)
    if min(len(rec), len(ch)) < rule.min_seeds:
        return Verdict(code="too_few_seeds", reason=f"too few seeds: {len(rec)} ok for the record, "
                       f"{len(ch)} for the challenger; the rule needs {rule.min_seeds} each")
    test = welch_one_sided(rec, ch, rule.margin_bpb)
    gain = -test.delta
    if gain < rule.margin_bpb:
        return Verdict(code="below_margin", test=test,
                       reason=f"delta below margin: the challenger gains {gain:+.4f} bpb, "
                              f"the margin is {rule.margin_bpb:g}")
    if not test.p < rule.alpha:
        return Verdict(code="p_too_large", test=test,
                       reason=f"p too large: p = {test.p:.2g} >= {rule.alpha:g} for a gain of "
                              f"{gain:.4f} bpb over a margin of {rule.margin_bpb:g}")
    return Verdict(code="accepted", test=test,
                   reason=f"beats the record by {gain:.4f} bpb (margin {rule.margin_bpb:g}) "
                          f"at p = {test.p:.2g} < {rule.alpha:g}")


# -- cells: how a record and a challenger are named ------------------------------------------------

def parse_cell_spec(spec: str, known: dict[str, Cell]) -> Cell:
    """`NAME` (a known cell), `NAME:TOGGLE+TOGGLE` or `TOGGLE+TOGGLE` (named after its toggles).

    Toggles may also be separated by spaces; `NAME:` alone is the base config with no toggles.
    """
    spec = spec.strip()
    name, colon, rest = spec.partition(":")
    if not colon:
        if spec in known:
            return known[spec]
        name, rest = "", spec
    toggles = tuple(t for part in rest.replace("+", " ").split() for t in [part.strip()] if t)
    if not colon and not toggles:
        raise ConfigError(f"cell spec {spec!r}: give NAME, NAME:TOGGLE+TOGGLE or TOGGLE+TOGGLE")
    for toggle in toggles:
        try:
            parse_spec(toggle)
        except ConfigError as err:
            raise ConfigError(f"cell spec {spec!r}: {err}; known cells: {sorted(known)}") from None
    name = name.strip() or cell_name(toggles)
    if not name or any(c in name for c in ":/ "):
        raise ConfigError(f"cell spec {spec!r}: a cell name needs at least one character and no ':', '/' "
                          "or space")
    return Cell(name, toggles)


def spec_of(name: str, toggles: list[str] | tuple[str, ...]) -> str:
    return f"{name}:{'+'.join(toggles)}"


def challenge_matrix(records: Matrix, record: Cell, challenger: Cell) -> Matrix:
    """The records matrix reduced to the record and the challenger, side by side."""
    from dataclasses import replace

    if record.name == challenger.name:
        raise ConfigError(f"the challenger and the record are both named {record.name!r}; name the "
                          "challenger (NAME:TOGGLE+TOGGLE)")
    if sorted(record.toggles) == sorted(challenger.toggles):
        raise ConfigError(f"challenger {challenger.name!r} has the record's toggles "
                          f"{list(record.toggles)}: there is nothing to compare")
    return replace(records, mode="list", cells=(record, challenger), toggles=(), axes={})


# -- the ledger ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ChallengeRun:
    matrix_run: str
    matrix: str
    device: str
    record: str
    challenger: str
    record_rows: list[dict]
    challenger_rows: list[dict]


def _latest_per_seed(rows: list[dict]) -> list[dict]:
    """The newest row per (device, seed): a resumed run's retry supersedes its failed attempt."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        latest[(row["device_name"], row["seed"])] = row
    return list(latest.values())


def challenge_runs(rows: list[dict]) -> list[ChallengeRun]:
    """Every challenge in runs.jsonl, in the order it started (the file is append-only)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if isinstance(row.get("challenge"), dict) and row.get("matrix_run"):
            groups.setdefault(row["matrix_run"], []).append(row)
    runs = []
    for matrix_run, group in groups.items():
        roles = group[0]["challenge"]
        runs.append(ChallengeRun(
            matrix_run=matrix_run, matrix=group[0]["matrix"], device=group[0]["device_name"],
            record=roles["record"], challenger=roles["challenger"],
            record_rows=_latest_per_seed([r for r in group if r["cell"] == roles["record"]]),
            challenger_rows=_latest_per_seed([r for r in group if r["cell"] == roles["challenger"]])))
    return runs


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def _stat(values: list[float]) -> dict:
    return {"mean": _round(statistics.fmean(values)) if values else None,
            "sd": _round(statistics.stdev(values)) if len(values) >= 2 else None, "n": len(values)}


def _ok(rows: list[dict]) -> list[dict]:
    return sorted((r for r in rows if r["status"] == "ok" and r.get("val_bpb") is not None),
                  key=lambda r: r["seed"])


def what_changed(before: list[dict], after: list[dict]) -> list[str]:
    """Toggles added (+) and removed (-), then every config field that differs (the seed aside)."""
    if not before or not after:
        return []
    old_t, new_t = before[0]["toggles"], after[0]["toggles"]
    changes = [f"+{t}" for t in new_t if t not in old_t] + [f"-{t}" for t in old_t if t not in new_t]
    old_c, new_c = before[0].get("config") or {}, after[0].get("config") or {}
    for key in sorted(set(old_c) | set(new_c)):
        if key != "train.seed" and old_c.get(key) != new_c.get(key):
            changes.append(f"{key}: {json.dumps(old_c.get(key))} -> {json.dumps(new_c.get(key))}")
    return changes


def reproduce_command(run: ChallengeRun, record_toggles: list[str], challenger_toggles: list[str],
                      seeds: int, budget_s: float | None) -> str:
    parts = ["gocram", "lab", "--challenge", spec_of(run.challenger, challenger_toggles),
             "--record", spec_of(run.record, record_toggles), "--seeds", str(seeds)]
    if budget_s is not None:
        parts += ["--budget", f"{budget_s:g}"]
    if run.matrix != RECORDS_MATRIX:
        parts += ["--matrix", run.matrix]
    return shlex.join(parts)


def _side(rows: list[dict]) -> dict:
    ok = _ok(rows)
    return {
        "val_bpb": _stat([r["val_bpb"] for r in ok]),
        "tokens_per_s": _stat([r["tokens_per_s"] for r in ok if r.get("tokens_per_s") is not None]),
        "xz_bpb": _stat([r["xz_bpb"] for r in ok if r.get("xz_bpb") is not None])["mean"],
        "git_sha": sorted({str(r.get("git_sha")) for r in ok}),
        "config_hash": {str(r["seed"]): r["config_hash"] for r in ok},
        "toggles": (ok or rows or [{"toggles": []}])[0]["toggles"],
    }


def tokens_to_reach(row: dict, target_bpb: float) -> float | None:
    """Training tokens a run took to first reach `target_bpb` on its validation curve, or None.

    The curve holds (budget seconds, val bpb) at each validation; between two points the bpb is
    taken as linear in time, and seconds become tokens at the row's mean tokens/s (the rate is
    steady after the first steps, so this slightly overstates the tokens of an early crossing).
    """
    rate = row.get("tokens_per_s")
    previous = (0.0, math.inf)
    for t, bpb in row.get("val_curve") or []:
        if bpb <= target_bpb and rate:
            t0, b0 = previous
            crossing = t if not math.isfinite(b0) else t0 + (t - t0) * (b0 - target_bpb) / (b0 - bpb)
            return crossing * rate
        previous = (t, bpb)
    return None


def sample_efficiency(record_rows: list[dict], challenger_rows: list[dict]) -> dict | None:
    """How many of the record's tokens the challenger needed to reach the record's final bpb.

    The target is the record's mean final val bpb over its ok seeds; the ratio is the challenger's
    mean tokens to reach it over the record's mean trained tokens (below 1: it learns more per
    token). A challenger seed that never gets there makes the ratio unknown (None), counted apart.
    """
    record, challenger = _ok(record_rows), _ok(challenger_rows)
    if not record or not challenger:
        return None
    target = statistics.fmean(r["val_bpb"] for r in record)
    trained = [r.get("tokens") for r in record]
    record_tokens = statistics.fmean(trained) if all(trained) else None
    reached = [tokens_to_reach(r, target) for r in challenger]
    hits = [t for t in reached if t is not None]
    ratio = statistics.fmean(hits) / record_tokens if record_tokens and len(hits) == len(reached) else None
    return {"target_bpb": _round(target), "record_tokens": _round(record_tokens),
            "challenger_tokens": [_round(t) for t in reached], "ratio": _round(ratio),
            "not_reached": len(reached) - len(hits)}


def _challenge_entry(run: ChallengeRun, verdict: Verdict) -> dict:
    record, challenger = _side(run.record_rows), _side(run.challenger_rows)
    every = [*run.record_rows, *run.challenger_rows]
    budgets = sorted({r["budget_s"] for r in every if r.get("budget_s") is not None})
    seeds = len({r["seed"] for r in every})
    test = verdict.test
    return {
        "matrix_run": run.matrix_run, "matrix": run.matrix, "device": run.device,
        "record": run.record, "challenger": run.challenger, "verdict": verdict.code,
        "accepted": verdict.accepted, "reason": verdict.reason,
        "delta_bpb": _round(test.delta) if test else None, "se": _round(test.se) if test else None,
        "t": _round(test.t) if test else None, "df": _round(test.df) if test else None,
        "p": _round(test.p) if test else None,
        "record_side": record, "challenger_side": challenger,
        "changed": what_changed(_ok(run.record_rows), _ok(run.challenger_rows)),
        "sample_efficiency": sample_efficiency(run.record_rows, run.challenger_rows),
        "budget_s": budgets[0] if len(budgets) == 1 else budgets,
        "command": reproduce_command(run, record["toggles"], challenger["toggles"], seeds,
                                     budgets[0] if len(budgets) == 1 else None),
    }


def _record_entry(name: str, side: dict, entry: dict, *, founding: bool) -> dict:
    return {
        "name": name, "founding": founding, "since_run": entry["matrix_run"],
        "beat": None if founding else entry["record"], "toggles": side["toggles"],
        "changed": [] if founding else entry["changed"],
        "delta_bpb": None if founding else entry["delta_bpb"], "se": None if founding else entry["se"],
        "p": None if founding else entry["p"], "val_bpb": side["val_bpb"],
        "tokens_per_s": side["tokens_per_s"], "xz_bpb": side["xz_bpb"], "git_sha": side["git_sha"],
        "config_hash": side["config_hash"], "command": entry["command"],
    }


def build_ledger(rows: list[dict], rule: Rule = RULE) -> dict:
    """Per device, in time order: every challenge with its verdict, and the record chain it made.

    The first clean challenge on a device (its record side with enough ok seeds) founds the chain
    with its record; a later challenge counts only against the record current on that device.
    """
    devices: dict[str, dict] = {}
    for run in challenge_runs(rows):
        state = devices.setdefault(run.device, {"records": [], "challenges": []})
        verdict = judge(run.record_rows, run.challenger_rows, rule)
        clean = verdict.code not in ("another_machine", "another_run")
        current = state["records"][-1]["name"] if state["records"] else None
        if current is not None and run.record != current:
            verdict = Verdict(code="not_the_record", test=verdict.test,
                              reason=f"not against the record: it ran against {run.record!r}, the "
                                     f"record on this machine is {current!r}")
        entry = _challenge_entry(run, verdict)
        if current is None and clean and entry["record_side"]["val_bpb"]["n"] >= rule.min_seeds:
            state["records"].append(_record_entry(run.record, entry["record_side"], entry, founding=True))
        state["challenges"].append(entry)
        if verdict.accepted:
            state["records"].append(_record_entry(run.challenger, entry["challenger_side"], entry,
                                                  founding=False))
    for state in devices.values():
        state["current"] = state["records"][-1]["name"] if state["records"] else None
    return {"rule": {"margin_bpb": rule.margin_bpb, "alpha": rule.alpha, "min_seeds": rule.min_seeds,
                     "test": "one-sided Welch t-test, H0: mean_challenger >= mean_record - margin_bpb"},
            "devices": {name: devices[name] for name in sorted(devices)}}


def current_record(ledger: dict, device: str) -> dict | None:
    state = ledger["devices"].get(device)
    return state["records"][-1] if state and state["records"] else None


# -- the ledger as text ----------------------------------------------------------------------------

def _fmt_stat(stat: dict, spec: str) -> str:
    if stat["mean"] is None:
        return "-"
    text = format(stat["mean"], spec)
    return f"{text} ± {format(stat['sd'], spec)}" if stat["sd"] is not None else text


def _fmt_delta(entry: dict) -> str:
    if entry["delta_bpb"] is None:
        return "-"
    return f"{entry['delta_bpb']:+.4f} ± {entry['se']:.4f}"


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _xz_ratio(record: dict) -> str:
    bpb, xz = record["val_bpb"]["mean"], record["xz_bpb"]
    return f"{bpb / xz:.3f}" if bpb is not None and xz else "-"


def _fmt_efficiency(eff: dict | None) -> str:
    if not eff:
        return "-"
    if eff["ratio"] is None:
        missed = eff["not_reached"]
        return f"not reached by {missed} seed{'s' if missed != 1 else ''}" if missed else "-"
    return f"{eff['ratio']:.2f}x"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def ledger_markdown(ledger: dict) -> str:
    rule = ledger["rule"]
    lines = [
        "# Records ledger", "",
        f"The rule (modded-nanogpt, parameter-golf): a challenger becomes the record on a machine only if "
        f"it beats the current record there by at least {rule['margin_bpb']:g} val bits per byte at "
        f"p < {rule['alpha']:g} (one-sided Welch t-test of H0: mean_challenger >= mean_record - "
        f"{rule['margin_bpb']:g}), with at least {rule['min_seeds']} seeds each, both measured in one "
        "matrix run (`gocram lab --challenge`) on that machine. A row from another machine is never "
        "the comparator: machines differ by up to 2x in tokens/s. The first challenge on a machine "
        "founds its chain with the record it ran against.", "",
        "Δ bpb is challenger minus record (negative is better) ± the standard error of that "
        "difference; × xz is val bpb over `xz -9e` on the same validation bytes; config is the "
        "config hash of the lowest seed. Tokens to the record's bpb: the challenger's mean "
        "training tokens to first reach the record's mean final val bpb (its validation curve, "
        "linear between validations, seconds to tokens at its mean rate), over the record's mean "
        "trained tokens: below 1x it learns more per token. A reproduce command names its "
        "toggles over the records chain's base (configs/tiny), which moves to each new record: "
        "run it at the commit shown "
        "(`git worktree add DIR COMMIT`) to measure the same configs again.", "",
    ]
    if not ledger["devices"]:
        lines += ["No challenge has been run yet. Start one with "
                  "`gocram lab --challenge NAME:TOGGLE+TOGGLE --seeds 3`.", ""]
    for device, state in ledger["devices"].items():
        lines += [f"## {device}", ""]
        if state["current"]:
            rec = state["records"][-1]
            lines += [f"Current record: **{rec['name']}**, val bpb {_fmt_stat(rec['val_bpb'], '.4f')} "
                      f"over {rec['val_bpb']['n']} seeds, {_xz_ratio(rec)}× xz, "
                      f"{_fmt_stat(rec['tokens_per_s'], ',.0f')} tokens/s.", ""]
        else:
            lines += ["No record yet: no challenge here had a clean record side with enough seeds.", ""]
        if state["records"]:
            cols = ["#", "record", "what changed", "val bpb", "Δ bpb", "p", "tokens/s", "× xz",
                    "commit", "config", "reproduce"]
            lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
            for i, rec in enumerate(state["records"]):
                changed = "(founding record)" if rec["founding"] else "; ".join(rec["changed"]) or "-"
                config = next(iter(rec["config_hash"].values()), "-")
                lines.append("| " + " | ".join(_cell(x) for x in [
                    str(i), rec["name"], changed, _fmt_stat(rec["val_bpb"], ".4f"),
                    _fmt_delta(rec), _fmt_p(rec["p"]), _fmt_stat(rec["tokens_per_s"], ",.0f"),
                    _xz_ratio(rec), ", ".join(s[:12] for s in rec["git_sha"]) or "-", config,
                    f"`{rec['command']}`"]) + " |")
            lines.append("")
        cols = ["matrix run", "record", "challenger", "verdict", "reason", "Δ bpb", "p", "seeds",
                "tokens to the record's bpb"]
        lines += ["### Challenges", "", "| " + " | ".join(cols) + " |",
                  "|" + "|".join("---" for _ in cols) + "|"]
        for ch in state["challenges"]:
            seeds = f"{ch['record_side']['val_bpb']['n']} + {ch['challenger_side']['val_bpb']['n']}"
            lines.append("| " + " | ".join(_cell(x) for x in [
                ch["matrix_run"], ch["record"], ch["challenger"],
                "accepted" if ch["accepted"] else "rejected", ch["reason"], _fmt_delta(ch),
                _fmt_p(ch["p"]), seeds, _fmt_efficiency(ch.get("sample_efficiency"))]) + " |")
        lines.append("")
    lines.append("Generated by `gocram lab --records` (and after each `gocram lab --challenge`) from "
                 "results/runs.jsonl; do not edit.")
    return "\n".join(lines) + "\n"


def write_ledger(rows: list[dict], results_dir: Path, rule: Rule = RULE) -> tuple[dict, list[Path]]:
    ledger = build_ledger(rows, rule)
    results_dir.mkdir(parents=True, exist_ok=True)
    md, js = results_dir / "records.md", results_dir / "records.json"
    md.write_text(ledger_markdown(ledger))
    js.write_text(json.dumps(ledger, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return ledger, [md, js]
