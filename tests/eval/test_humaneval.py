import json
import math
import shutil
from itertools import combinations

import pytest

from gocram.core.errors import GocramError
from gocram.eval.gorun import sandbox_problem
from gocram.eval.harness import evaluate, select_tasks
from gocram.eval.passk import ks_for, pass_at_k
from gocram.eval.suites import SUITES, load_suite, used_packages
from tests.conftest import run_gocram


def needs_go():
    if shutil.which("go") is None:
        pytest.skip("needs Go: apt-get install golang-go golang-github-stretchr-testify-dev")
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"needs the bubblewrap sandbox: {problem}")


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (5, 2), (10, 3), (20, 19), (7, 7)])
def test_pass_at_k_is_the_exact_combinatorial_probability(n, c):
    for k in range(1, n + 1):
        # Brute force: the share of k-subsets of the n samples holding at least one pass.
        subsets = list(combinations([True] * c + [False] * (n - c), k))
        expected = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100))
    assert ks_for(1) == [1] and ks_for(10) == [1, 10] and ks_for(200) == [1, 10, 100]
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_suites_load_with_their_sizes():
    sizes = {name: len(load_suite(name)) for name in SUITES.names()}
    assert sizes == {"humaneval-x": 164, "multipl-e-humaneval": 154, "multipl-e-humaneval-keep": 154,
                     "multipl-e-mbpp": 371}
    with pytest.raises(GocramError, match="unknown eval suite"):
        load_suite("humaneval-y")


def test_humaneval_x_program_adds_only_used_imports():
    tasks = {t.task_id: t for t in load_suite("humaneval-x")}
    go65 = tasks["Go/65"]  # its prompt lacks the import block its solution needs
    program = go65.program(go65.canonical)
    assert '"strconv"' in program and program.startswith("package main")
    assert used_packages("// use math.Abs here\nx := 1") == []  # comments do not count
    assert used_packages("rand.Intn(3) + math.MaxInt", already='"math"') == ["math/rand"]
    assert used_packages("mystrings.Split(a)") == []
    assert tasks["Go/95"].canonical_repaired and not tasks["Go/0"].canonical_repaired


def test_select_tasks():
    tasks = load_suite("humaneval-x")
    assert [t.task_id for t in select_tasks(tasks, task_ids=["Go/3", "Go/1"])] == ["Go/3", "Go/1"]
    assert len(select_tasks(tasks, limit=5)) == 5
    with pytest.raises(GocramError, match="Go/999"):
        select_tasks(tasks, task_ids=["Go/999"])


HAS_CLOSE = """    for i := range numbers {
        for j := i + 1; j < len(numbers); j++ {
            d := numbers[i] - numbers[j]
            if d < threshold && -d < threshold {
                return true
            }
        }
    }
    return false
}
"""


def test_multipl_e_tasks_run_through_the_same_path(tmp_path):
    needs_go()
    tasks = select_tasks(load_suite("multipl-e-humaneval"), task_ids=["HumanEval_0_has_close_elements"])
    answers = [(HAS_CLOSE, "right"), ("    return true\n}\n", "wrong"), ("    return\n}\n", "no build")]
    summary = evaluate(tasks, lambda task: answers, tmp_path, suite="multipl-e-humaneval")
    (row,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [s["status"] for s in row["samples"]] == ["passed", "failed", "build_failed"]
    assert row["passed"] == 1 and row["pass@1"] == pytest.approx(1 / 3)
    assert summary["pass@1"] == pytest.approx(1 / 3) and "bubblewrap" in summary["sandbox"]


def test_canonical_solutions_pass_164_of_164(tmp_path):
    """The HumanEval-X self-check CI runs (about 1-1.5 min; Go/95's reference is repaired)."""
    needs_go()
    done = run_gocram("eval", "humaneval", "--canonical", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tasks"] == 164 and summary["statuses"] == {"passed": 164}, summary["failed_tasks"]
    assert summary["pass@1"] == 1.0 and summary["repaired"] == ["Go/95"]
    assert "| humaneval-x | 164 | 1 | 100.00% |" in done.stdout


def test_model_samples_end_to_end(tmp_path, trained_run):
    needs_go()
    done = run_gocram("eval", "humaneval", "--checkpoint", str(trained_run), "--limit", "2", "--n", "3",
                      "--max-new-tokens", "24", "--temperature", "0.8", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["Go/0", "Go/1"]
    for row in rows:
        assert row["n"] == 3 and len(row["samples"]) == 3 and "pass@1" in row
        assert all(s["stop_reason"] in {"function_end", "eos", "max_new_tokens", "stop_string"}
                   for s in row["samples"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "model" and summary["samples"] == 6
    assert sum(summary["statuses"].values()) == 6


@pytest.mark.parametrize("args, message", [
    (["--out", "x"], "either --checkpoint"),
    (["--canonical", "--suite", "multipl-e-mbpp", "--out", "x"], "no canonical solutions"),
    (["--canonical", "--tasks", "Go/0,nope", "--out", "x"], "unknown task id"),
])
def test_humaneval_cli_errors(args, message):
    done = run_gocram("eval", "humaneval", *args)
    assert done.returncode == 2 and message in done.stderr and done.stderr.startswith("gocram: error:")
