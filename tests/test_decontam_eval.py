"""The decontamination measurement: it counts benchmark copies caught and idioms wrongly hit."""

from __future__ import annotations

import gzip
import json

import pytest

from gocram.core.errors import GocramError
from gocram.data.corpus.decontam_eval import evaluate, main

SOLUTION = ("func LongestCommonPrefixLength(words []string) int {\n\tshortest := words[0]\n"
            "\tfor _, word := range words {\n\t\tif len(word) < len(shortest) {\n"
            "\t\t\tshortest = word\n\t\t}\n\t}\n\treturn len(shortest)\n}\n")
IDIOM = "for i := 0; i < n; i++ {\n\t\tif x[i] > y {\n\t\t\treturn i\n\t\t}\n\t}\n\treturn -1\n"


def test_recall_counts_copies_and_false_hits_name_the_idiom(tmp_path):
    evaldir = tmp_path / "eval"
    evaldir.mkdir()
    with gzip.open(evaldir / "humaneval_go.jsonl.gz", "wt") as handle:
        for task, body in (("Go/0", SOLUTION), ("Go/1", IDIOM), ("Go/2", "return 1\n}\n")):
            handle.write(json.dumps({"task_id": task, "prompt": "// doc\n", "declaration": "package p\n",
                                     "canonical_solution": body}) + "\n")
    (evaldir / "multiple_humaneval-go-keep.jsonl").write_text(json.dumps(
        {"name": "HumanEval_0", "prompt": "package p\n" + SOLUTION}) + "\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "loop.go").write_text("package q\n\nfunc find(x []int, n, y int) int {\n\t" + IDIOM + "}\n")
    (tree / "other.go").write_text("package q\n\nvar answer = 42\n")

    report = evaluate(None, [tree], evaldir)
    plain, default = report["rules"]["plain"], report["rules"]["default"]
    he = "humaneval-x declaration+solution"
    # Go/2 is too short to hold a 10-gram; Go/1 is all idiom, so only the plain rule catches it
    assert plain["recall"][he] == {"total": 3, "caught": 2, "missed": ["Go/2"]}
    assert default["recall"][he] == {"total": 3, "caught": 1, "missed": ["Go/1", "Go/2"]}
    assert default["recall"]["multipl-e humaneval-go-keep prompt"]["caught"] == 1
    (hits,) = plain["false_hits"]
    assert (hits["where"], hits["files"], hits["hit"]) == (str(tree), 2, 1)
    assert hits["hits"][0]["file"] == "loop.go" and hits["hits"][0]["task"] == "humaneval-x/Go/1"
    assert default["false_hits"][0]["hit"] == 0

    main(["--no-corpus", "--tree", str(tree), "--eval-dir", str(evaldir), "--out", str(tmp_path / "out")])
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["rules"]["plain"]["false_hits"][0]["hit"] == 1
    with pytest.raises(GocramError, match="--corpus .*none: no chunk"):
        main(["--corpus", str(tmp_path / "none"), "--eval-dir", str(evaldir), "--out", str(tmp_path / "o")])
    with pytest.raises(GocramError, match="--tree .*: not a directory"):
        main(["--no-corpus", "--tree", str(tree / "loop.go"), "--eval-dir", str(evaldir)])
