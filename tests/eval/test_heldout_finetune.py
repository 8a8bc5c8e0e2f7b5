import json

import numpy as np
import pytest

from gocram.core.errors import GocramError
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.tokens.tokenizer import FIM_MIDDLE, FIM_PREFIX, load_tokenizer
from gocram.eval.finetune import (
    FinetuneBatches,
    FinetuneOptions,
    build_set,
    decontaminate,
    eval_ngrams,
    finetune,
    word_ngrams,
)
from gocram.eval.gofuncs import extract_functions
from gocram.eval.heldout import edit_similarity, gofmt_parses, heldout_functions, score_function
from gocram.eval.suites import load_suite
from tests.conftest import run_gocram

GO_FILE = '''package demo

import "strings"

// Upper returns s in upper case.
// It handles "{" in strings.
func Upper(s string) string {
	if s == "}" {
		return s
	}
	return strings.ToUpper(s)
}

func undocumented() {}

// One is on one line.
func One() int { return 1 }

// Method doubles.
func (t *T) Double(
	x int,
) int {
	return 2 * x
}
'''


def test_extract_functions_splits_doc_signature_and_body():
    found = extract_functions(GO_FILE, "demo.go")
    assert [f.name for f in found] == ["Upper", "Double"]
    upper = found[0]
    assert upper.doc.startswith("// Upper") and upper.signature == "func Upper(s string) string {\n"
    assert upper.body.endswith("return strings.ToUpper(s)\n}")
    assert upper.with_body(upper.body) == GO_FILE
    assert found[1].signature == "func (t *T) Double(\n\tx int,\n) int {\n"


def test_heldout_scores():
    fn = extract_functions(GO_FILE)[0]
    exact = score_function(fn, fn.body + "  ")
    assert exact["exact_match"] and exact["edit_similarity"] == 1.0 and exact["syntax_ok"]
    broken = score_function(fn, "\treturn strings.ToUpper(s\n}")
    assert not broken["exact_match"] and not broken["syntax_ok"] and broken["reference_syntax_ok"]
    assert 0.5 < broken["edit_similarity"] < 1.0
    assert edit_similarity("abc", "xyz") == 0.0
    assert not gofmt_parses("package x\nfunc {")


def test_heldout_functions_come_from_validation_packages_only(go_corpus):
    found = heldout_functions(go_corpus, 0.2, "gocram", limit=20)
    from gocram.data.corpus.docs import read_corpus
    from gocram.data.corpus.split import split_by_package

    _, val = split_by_package(read_corpus(go_corpus), 0.2, "gocram")
    val_sources = {f"{d.repo}/{d.path}" for d in val}
    assert found and all(f.source in val_sources for f in found)
    assert [f.name for f in found] == [f.name for f in heldout_functions(go_corpus, 0.2, "gocram", limit=20)]


def test_decontamination_drops_functions_overlapping_eval_sets():
    grams = eval_ngrams()
    task = load_suite("humaneval-x")[0]
    leaked = extract_functions(f"package x\n\n{task.prompt.split(')', 1)[1]}{task.canonical}")
    clean = extract_functions(GO_FILE)
    assert leaked, "the leaked HumanEval function was not extracted"
    kept, dropped = decontaminate(leaked + clean, grams)
    assert dropped == len(leaked) and [f.name for f in kept] == [f.name for f in clean]
    assert word_ngrams("a b c", n=2) == {("a", "b"), ("b", "c")}


def test_finetune_batches_mask_the_prompt_and_fim_form(go_tokenizer):
    tok = load_tokenizer(go_tokenizer)
    functions = extract_functions(GO_FILE)
    plain_set, counts = build_set(tok, functions, seq_len=128, fim_rate=0.0, seed=0, max_examples=None)
    assert counts["examples"] == 2 and counts["fim_examples"] == 0
    batches = FinetuneBatches(plain_set, seq_len=128, batch=6, seed=0)
    batch = batches.next_batch()
    for row in range(6):
        y = batch.y[row]
        real = y[y != IGNORE_INDEX].tolist()
        matched = [ex for ex in plain_set.examples if ex.ids[ex.first_target:].tolist() == real]
        assert matched, "targets must be exactly the body tokens (and the final EOS)"
        n = len(matched[0].ids) - 1
        assert batch.x[row, :n].tolist() == matched[0].ids[:-1].tolist()
    state = batches.state_dict()
    nxt = batches.next_batch()
    batches.load_state_dict(state)
    assert batches.next_batch().x.equal(nxt.x)

    fim_set, counts = build_set(tok, functions, seq_len=256, fim_rate=1.0, seed=0, max_examples=None)
    assert counts["fim_examples"] == counts["examples"] == 2
    ex = fim_set.examples[0]
    assert ex.ids[1] == tok.token_to_id(FIM_PREFIX)
    assert ex.ids[ex.first_target - 1] == tok.token_to_id(FIM_MIDDLE)
    with pytest.raises(GocramError, match="gocram finetune"):
        FinetuneBatches(np.zeros(10), seq_len=8, batch=1, seed=0)


def test_finetune_trains_on_its_set_and_reports_before_after(tmp_path, trained_run):
    report = finetune(trained_run, tmp_path / "ft", FinetuneOptions(
        budget_s=3, lr=1e-3, fim_rate=0.5, humaneval_limit=-1, device="cpu"))
    assert report["set"]["examples"] >= 5 and report["set"]["fim_examples"] > 0
    assert report["steps"] > 0 and report["before"]["val_bpb"] > 0 and report["after"]["val_bpb"] > 0
    assert report["before"]["humaneval_pass@1"] is None  # skipped on request, and said so
    log = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses and (tmp_path / "ft" / "finetune.json").is_file()
    assert (tmp_path / "ft" / "result.json").is_file()


def test_cli_finetune_and_heldout(tmp_path, trained_run):
    done = run_gocram("finetune", "--checkpoint", str(trained_run), "--out", str(tmp_path / "ft"),
                      "--budget", "2", "--humaneval-limit", "2")
    assert done.returncode == 0, done.stderr
    assert "held-out bits per byte" in done.stdout and "pass@1" in done.stdout
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert report["before"]["humaneval_pass@1"] is not None and report["humaneval_tasks"] == 2
    again = run_gocram("finetune", "--checkpoint", str(trained_run), "--out", str(tmp_path / "ft"))
    assert again.returncode == 2 and "not empty" in again.stderr

    done = run_gocram("eval", "heldout", "--checkpoint", str(tmp_path / "ft"), "--max-functions", "4",
                      "--max-new-tokens", "16", "--out", str(tmp_path / "heldout"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["functions"] == 4 and 0.0 <= summary["edit_similarity"] <= 1.0
    assert summary["reference_syntax_ok"] == 1.0
    rows = (tmp_path / "heldout" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 4
