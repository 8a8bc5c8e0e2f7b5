"""The records ledger: the one-sided Welch test against reference values, the verdict on synthetic
rows (each way a challenge can fail), the ledger rebuilt byte for byte, and `gocram lab
--challenge` end to end on a seconds-long model."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from scipy import stats

from gocram.ablations.matrix import Cell, load_matrix
from gocram.ablations.records import (
    RULE,
    Rule,
    build_ledger,
    challenge_matrix,
    judge,
    ledger_markdown,
    parse_cell_spec,
    sample_efficiency,
    student_t_sf,
    tokens_to_reach,
    welch_df,
    welch_one_sided,
    write_ledger,
)
from gocram.ablations.results import has_row, load_rows
from gocram.core.errors import ConfigError

# -- the statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [-3.0, -0.5, 0.0, 0.7, 2.0, 6.3])
def test_student_t_matches_its_closed_forms(t):
    # df = 1 is the Cauchy distribution; df = 2 has F(t) = 1/2 + t / (2 sqrt(t^2 + 2))
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)
    assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(t * t + 2)), abs=1e-12)


@pytest.mark.parametrize(("t", "df", "p"), [
    # one-sided critical values from the standard t table (3 decimals)
    (6.965, 2, 0.01), (3.747, 4, 0.01), (2.764, 10, 0.01), (2.457, 30, 0.01),
    (2.015, 5, 0.05), (1.812, 10, 0.05), (2.326, 1e7, 0.01),  # large df: the normal's 2.326
])
def test_student_t_matches_the_table(t, df, p):
    assert student_t_sf(t, df) == pytest.approx(p, rel=2e-3)


def test_welch_by_hand():
    record, challenger = [2.0, 2.1, 2.2], [1.8, 1.9, 2.0]
    test = welch_one_sided(record, challenger, margin=0.005)
    se = math.sqrt(0.01 / 3 + 0.01 / 3)
    assert test.delta == pytest.approx(-0.2)
    assert test.se == pytest.approx(se)
    assert test.t == pytest.approx((0.2 - 0.005) / se)
    assert test.df == pytest.approx(4.0)  # equal n and variance: n_a + n_b - 2
    assert test.p == pytest.approx(student_t_sf((0.2 - 0.005) / se, 4))


@pytest.mark.parametrize(("record", "challenger"), [
    ([2.0, 2.1, 2.2], [1.8, 1.9, 2.0]),
    ([1.95, 1.97, 1.96, 1.99], [1.93, 1.90, 1.96]),  # unequal n and variance: a fractional df
    ([1.90, 1.91, 1.92], [1.93, 1.90, 1.99, 1.97, 1.95]),  # the challenger is worse
])
def test_welch_matches_scipys_ttest_with_the_margin_shifted_in(record, challenger):
    """H0: mean_c >= mean_r - m is scipy's `less` test of challenger against record - m."""
    ours = welch_one_sided(record, challenger, margin=0.005)
    ref = stats.ttest_ind(challenger, [x - 0.005 for x in record], equal_var=False, alternative="less")
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert -ours.t == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-9)


def test_welch_df_is_fractional_for_unequal_variances():
    assert welch_df(0.01, 3, 0.01, 3) == pytest.approx(4.0)
    # one side without spread: the other side's n - 1
    assert welch_df(0.0, 3, 0.02, 5) == pytest.approx(4.0)
    df = welch_df(0.0004, 4, 0.0025, 3)
    assert 2.0 < df < 5.0 and df != round(df)


def test_identical_values_give_a_certain_p():
    assert welch_one_sided([2.0] * 3, [1.9] * 3, 0.005).p == 0.0
    assert welch_one_sided([2.0] * 3, [2.0] * 3, 0.005).p == 1.0
    with pytest.raises(ValueError, match="two values"):
        welch_one_sided([2.0], [1.9, 1.8], 0.005)


# -- the verdict on synthetic rows -----------------------------------------------------------------

def _row(cell, seed, bpb, *, device="cpu-a", run="r1", status="ok", toggles=(), tps=1000.0,
         record="rec", challenger="ch", sha="abc123"):
    return {"matrix": "records", "matrix_run": run, "cell": cell, "seed": seed, "toggles": list(toggles),
            "status": status, "device_name": device, "val_bpb": bpb if status == "ok" else None,
            "tokens_per_s": tps, "xz_bpb": 2.0, "budget_s": 600.0, "git_sha": sha,
            "config_hash": f"{cell}-{seed}", "config": {"train.seed": seed, "model.toggled": list(toggles)},
            "challenge": {"record": record, "challenger": challenger}}


def _side(cell, values, **kw):
    return [_row(cell, s, v, **kw) for s, v in enumerate(values)]


RECORD = [2.000, 2.004, 1.998]
WIN = [1.950, 1.953, 1.948]  # 0.05 better, spread of ~0.003: p far below 0.01


def test_a_clear_win_is_accepted():
    verdict = judge(_side("rec", RECORD), _side("ch", WIN, toggles=["compile"]))
    assert verdict.accepted and verdict.code == "accepted"
    assert verdict.test.p < 1e-4 and verdict.test.delta == pytest.approx(-0.0503, abs=1e-4)
    assert "beats the record by 0.0503" in verdict.reason


@pytest.mark.parametrize(("record", "challenger", "code", "words"), [
    (_side("rec", RECORD), _side("ch", WIN[:2]), "too_few_seeds", "2 for the challenger"),
    (_side("rec", RECORD), _side("ch", [x - 0.002 for x in RECORD]), "below_margin", "+0.0020"),
    (_side("rec", RECORD), _side("ch", [x + 0.01 for x in RECORD]), "below_margin", "-0.0100"),
    # 0.02 better on average, but the challenger's seeds spread by 0.05: not significant
    (_side("rec", RECORD), _side("ch", [1.93, 2.03, 1.98]), "p_too_large", "p = 0."),
    (_side("rec", RECORD), _side("ch", WIN, device="cpu-b"), "another_machine", "cpu-b"),
    (_side("rec", RECORD), _side("ch", WIN, run="r2"), "another_run", "r2"),
    (_side("rec", RECORD), [{**r, "matrix_run": None} for r in _side("ch", WIN)], "another_run", "None"),
])
def test_every_way_to_fail_has_its_reason(record, challenger, code, words):
    verdict = judge(record, challenger)
    assert not verdict.accepted
    assert verdict.code == code and words in verdict.reason, verdict.reason


def test_failed_cells_do_not_count_as_seeds():
    challenger = [*_side("ch", WIN), _row("ch", 3, None, status="failed: exit 1: boom")]
    assert judge(_side("rec", RECORD), challenger).accepted
    challenger[2] = _row("ch", 2, None, status="failed: timeout after 900s")
    assert judge(_side("rec", RECORD), challenger).code == "too_few_seeds"


def test_the_rule_is_a_parameter():
    strict = Rule(margin_bpb=0.06, alpha=0.01, min_seeds=3)
    assert judge(_side("rec", RECORD), _side("ch", WIN), strict).code == "below_margin"
    assert judge(_side("rec", RECORD[:2]), _side("ch", WIN[:2]), Rule(min_seeds=2)).accepted


# -- cell specs ------------------------------------------------------------------------------------

def test_cell_specs():
    known = {"tiny": Cell("tiny", ())}
    assert parse_cell_spec("tiny", known) == Cell("tiny", ())
    assert parse_cell_spec("fast:compile+attention=math", known) == Cell("fast",
                                                                          ("compile", "attention=math"))
    assert parse_cell_spec("compile attention=math", known) == Cell("compile+attention=math",
                                                                      ("compile", "attention=math"))
    assert parse_cell_spec("plain:", known) == Cell("plain", ())
    for bad, words in [("fast:warp", "unknown toggle 'warp'"), ("", "give NAME"),
                       ("a/b:compile", "no ':', '/'"), ("compile=3", "takes no value")]:
        with pytest.raises(ConfigError, match=words):
            parse_cell_spec(bad, known)
    chain = load_matrix("records")
    with pytest.raises(ConfigError, match="both named"):
        challenge_matrix(chain, Cell("x", ()), Cell("x", ("compile",)))
    with pytest.raises(ConfigError, match="nothing to compare"):
        challenge_matrix(chain, Cell("x", ("compile",)), Cell("y", ("compile",)))
    matrix = challenge_matrix(chain, Cell("tiny", ()), Cell("y", ("compile",)))
    assert [c.name for c in matrix.expand()] == ["tiny", "y"] and matrix.base == chain.base


# -- the ledger ------------------------------------------------------------------------------------

def _history() -> list[dict]:
    """Machine A: founded by rec, beaten by ch (compile); then a loser, a challenge against the old
    record, and a resumed run whose last rows came from machine B. Machine B: its own chain."""
    rows = _side("rec", RECORD) + _side("ch", WIN, toggles=["compile"])
    wrong = {"run": "r-wrong", "record": "rec", "challenger": "old"}
    rows += _side("rec", [2.1, 2.2, 2.3], **wrong)
    rows += _side("old", [1.5, 1.5, 1.6], **wrong, toggles=["vocab=1"])
    for cell, values, toggles in [("ch", WIN, ["compile"]), ("worse", [1.96, 1.95, 1.97], ["vocab=2"])]:
        rows += _side(cell, values, run="r3", record="ch", challenger="worse", toggles=toggles)
    rows += [_row("ch", 0, 1.95, run="r-mixed", record="ch", challenger="mix"),
             _row("mix", 0, 1.5, run="r-mixed", record="ch", challenger="mix", device="cpu-b")]
    # machine B: ch is its founding record, however A's chain goes
    rows += _side("ch", [2.5, 2.52, 2.49], device="cpu-b", run="rb", record="ch", challenger="b1")
    rows += _side("b1", [2.3, 2.31, 2.29], device="cpu-b", run="rb", record="ch", challenger="b1",
                  toggles=["compile", "vocab=3"], tps=500.0)
    return rows


def test_the_ledger_chains_records_per_machine():
    ledger = build_ledger(_history())
    a, b = ledger["devices"]["cpu-a"], ledger["devices"]["cpu-b"]
    assert [r["name"] for r in a["records"]] == ["rec", "ch"] and a["current"] == "ch"
    assert [(c["matrix_run"], c["verdict"]) for c in a["challenges"]] == [
        ("r1", "accepted"), ("r-wrong", "not_the_record"), ("r3", "below_margin"),
        ("r-mixed", "another_machine")]
    beat = a["records"][1]
    assert beat["beat"] == "rec" and beat["p"] < 1e-4
    assert beat["delta_bpb"] == pytest.approx(-0.0503, abs=1e-4)
    assert beat["changed"] == ["+compile", 'model.toggled: [] -> ["compile"]']
    assert beat["command"] == "gocram lab --challenge ch:compile --record rec: --seeds 3 --budget 600"
    assert beat["config_hash"] == {"0": "ch-0", "1": "ch-1", "2": "ch-2"}
    assert a["records"][0]["founding"] and a["records"][0]["val_bpb"]["n"] == 3
    wrong = a["challenges"][1]
    assert "'rec', the record on this machine is 'ch'" in wrong["reason"] and wrong["p"] < 0.01
    assert (wrong["record"], wrong["challenger"]) == ("rec", "old")
    assert [r["name"] for r in b["records"]] == ["ch", "b1"]  # B compares only with B
    assert b["records"][1]["tokens_per_s"]["mean"] == 500.0


def test_no_clean_record_side_founds_nothing():
    rows = _side("rec", RECORD[:2]) + _side("ch", WIN)
    state = build_ledger(rows)["devices"]["cpu-a"]
    assert state["records"] == [] and state["current"] is None
    assert state["challenges"][0]["verdict"] == "too_few_seeds"
    assert "No record yet" in ledger_markdown(build_ledger(rows))


def test_the_ledger_text_is_regenerated_identically(tmp_path):
    rows_file = tmp_path / "runs.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in _history()))
    _, written = write_ledger(load_rows(rows_file), tmp_path)
    first = [p.read_bytes() for p in written]
    _, again = write_ledger(load_rows(rows_file), tmp_path)
    assert [p.read_bytes() for p in again] == first
    text = first[0].decode()
    assert "## cpu-a" in text and "## cpu-b" in text and "Current record: **ch**" in text
    assert "| 1 | ch | +compile; model.toggled: [] -> [\"compile\"] | 1.9503 ± 0.0025 |" in text
    assert "`gocram lab --challenge ch:compile --record rec: --seeds 3 --budget 600`" in text
    assert "| r3 | ch | worse | rejected | delta below margin" in text
    assert json.loads(first[1])["devices"]["cpu-a"]["current"] == "ch"


def test_an_empty_ledger_states_the_rule(tmp_path):
    _, written = write_ledger([], tmp_path)
    text = written[0].read_text()
    assert "at least 0.005 val bits per byte at p < 0.01" in text and "No challenge has been run" in text
    assert f"at least {RULE.min_seeds} seeds each" in text


def test_resuming_skips_only_rows_of_the_same_matrix_run():
    rows = [_row("rec", 0, 2.0, run="r1")]
    kw = {"matrix": "records", "cell": "rec", "config_hash": "rec-0", "device_name": "cpu-a"}
    assert has_row(rows, **kw) and has_row(rows, **kw, matrix_run="r1")
    assert not has_row(rows, **kw, matrix_run="r2")


# -- end to end ------------------------------------------------------------------------------------

def test_a_challenge_end_to_end(tmp_path, small_overrides):
    from tests.conftest import run_gocram

    chain = {"name": "records-smoke", "base": "tiny", "budget_s": 60, "seeds": 3, "mode": "list",
             "overrides": [*small_overrides, "train.clock=steps", "train.max_steps=3"],
             "cells": [{"name": "base", "toggles": []}]}
    path = tmp_path / "records-smoke.yaml"
    path.write_text(yaml.safe_dump(chain))
    results, runs = tmp_path / "results", tmp_path / "runs"
    args = ["lab", "--challenge", "math:attention=math", "--matrix", str(path), "--results", str(results),
            "--runs", str(runs)]
    done = run_gocram(*args, "--seeds", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = load_rows(results / "runs.jsonl")
    assert [(r["cell"], r["seed"], r["status"]) for r in rows] == [
        ("base", 0, "ok"), ("math", 0, "ok"), ("base", 1, "ok"), ("math", 1, "ok"),
        ("base", 2, "ok"), ("math", 2, "ok")]  # interleaved: drift hits both sides
    run_id = rows[0]["matrix_run"]
    assert {r["matrix_run"] for r in rows} == {run_id}
    assert all(r["challenge"] == {"record": "base", "challenger": "math"} for r in rows)
    # an exact toggle over 3 deterministic steps cannot gain the margin
    assert f"math against base on {rows[0]['device_name']} (matrix run {run_id}): rejected: delta " \
           "below margin" in done.stdout
    ledger_md = (results / "records.md").read_bytes()
    state = json.loads((results / "records.json").read_text())["devices"][rows[0]["device_name"]]
    assert state["current"] == "base" and state["challenges"][0]["verdict"] == "below_margin"
    assert state["records"][0]["changed"] == [] and "attention=math" in state["challenges"][0]["command"]

    resumed = run_gocram(*args, "--matrix-run", run_id)  # nothing left to run in that matrix run
    assert resumed.returncode == 0 and resumed.stderr.count("already done") == 6
    assert len(load_rows(results / "runs.jsonl")) == 6
    assert (results / "records.md").read_bytes() == ledger_md
    wrong = run_gocram(*args[:2], "other:compile", *args[3:], "--matrix-run", run_id)
    assert wrong.returncode == 2 and "resume it with the same --challenge" in wrong.stderr

    (results / "records.md").write_text("edited by hand")
    rebuilt = run_gocram("lab", "--records", "--results", str(results))
    assert rebuilt.returncode == 0 and (results / "records.md").read_bytes() == ledger_md


def test_cli_rejects_bad_challenges_in_one_line(tmp_path):
    from tests.conftest import run_gocram

    for args, words in [(["--challenge", "fast:compile", "--seeds", "0"], "--seeds must be at least 1"),
                        (["--record", "tiny"], "--record and --matrix-run go with --challenge")]:
        done = run_gocram("lab", *args, "--results", str(tmp_path))
        assert done.returncode == 2 and f"gocram: error: {words}" in done.stderr, done.stderr
    assert not (tmp_path / "runs.jsonl").exists()


def test_tokens_to_reach_interpolates_the_curve_and_the_ledger_reports_the_ratio():
    curve = [[100.0, 3.0], [200.0, 2.0], [300.0, 1.5]]
    row = {"val_curve": curve, "tokens_per_s": 10.0}
    assert tokens_to_reach(row, 2.5) == pytest.approx(1500.0)  # halfway from 100 s to 200 s
    assert tokens_to_reach(row, 3.5) == pytest.approx(1000.0)  # already there at the first point
    assert tokens_to_reach(row, 1.0) is None
    record = [{**_row("rec", s, 1.5), "val_curve": curve, "tokens": 3000.0, "tokens_per_s": 10.0}
              for s in range(3)]
    fast = [{**_row("ch", s, 1.2, toggles=["compile"]), "tokens_per_s": 10.0,
             "val_curve": [[100.0, 2.0], [150.0, 1.5], [300.0, 1.2]]} for s in range(3)]
    eff = sample_efficiency(record, fast)
    assert eff["target_bpb"] == 1.5 and eff["ratio"] == pytest.approx(0.5) and eff["not_reached"] == 0
    slow = [{**row, "val_curve": [[300.0, 1.6]]} for row in fast]
    assert sample_efficiency(record, slow)["ratio"] is None
    assert sample_efficiency(record, slow)["not_reached"] == 3
    md = ledger_markdown(build_ledger(record + fast))
    assert "| 0.50x |" in md and "tokens to the record's bpb" in md
    assert "not reached by 3 seeds" in ledger_markdown(build_ledger(record + slow))
