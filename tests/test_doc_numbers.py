"""Every measured number marked in README.md and docs/*.md matches its artifact under results/, and
the pages this checker was first applied to carry no unmarked measurement."""

from __future__ import annotations

import json
import re

import pytest

from gocram.bench.doc_numbers import check_docs, check_text, parse_number
from tests.conftest import REPO

# Pages whose measured numbers are all marked (or were removed for want of an artifact). Other
# pages join this list once their numbers are marked.
FULLY_SOURCED = ["README.md", "docs/engines.md", "docs/tokenizer.md", "docs/kernels.md",
                 "docs/attention.md", "docs/ablations.md", "docs/eval.md", "docs/data.md",
                 "docs/health.md"]
# What a measurement looks like: a rate, a size, a time or a bpb/loss with 3+ decimals.
MEASURED = re.compile(r"\d[\d,]*(?:\.\d+)? ?(?:tok/s|tokens/s|MiB|GiB|TFLOPS|GB/s|ms\b)|\b\d\.\d{3,}\b")
MARKED = re.compile(r"<!-- from .*?<!-- end -->", re.DOTALL)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def test_every_marked_number_matches_its_artifact():
    problems, spans = check_docs(REPO)
    assert not problems, "\n".join(map(str, problems))
    assert spans > 0


@pytest.mark.parametrize("page", FULLY_SOURCED)
def test_no_unmarked_measurement_on_the_sourced_pages(page):
    text = CODE.sub("", MARKED.sub("", (REPO / page).read_text()))
    found = [(text.count("\n", 0, m.start()) + 1, m.group()) for m in MEASURED.finditer(text)]
    assert not found, f"{page}: unmarked measurements (line, text): {found}"


def test_the_checker_catches_a_wrong_number_a_missing_artifact_and_a_bad_selector(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text(json.dumps(
        {"rows": [{"cell": "a", "bpb": 2.14247, "share": 0.1234}, {"cell": "b", "bpb": 1.5}]}))
    (tmp_path / "results" / "t.csv").write_text("cell,delta\nx,+13.4%†\n")
    good = ("<!-- from results/r.json rows[cell=a].bpb -->2.1425<!-- end --> "
            "<!-- from results/r.json rows[cell=a].share *100 -->12.3%<!-- end --> "
            "<!-- from results/t.csv [cell=x].delta -->+13.4%<!-- end --> "
            "<!-- from results/r.json rows.1.bpb -->1.50<!-- end -->")
    assert check_text(good, tmp_path, "doc.md") == ([], 4)
    bad = ("line one\n<!-- from results/r.json rows[cell=a].bpb -->2.1426<!-- end -->\n"
           "<!-- from results/nope.json x -->1<!-- end -->\n"
           "<!-- from results/r.json rows[cell=c].bpb -->1<!-- end -->\n"
           "<!-- from results/r.json rows[cell=a].nope -->1<!-- end -->\n"
           "<!-- from results/r.json rows[cell=a].bpb -->two numbers 2.14 2.14<!-- end -->")
    problems, spans = check_text(bad, tmp_path, "doc.md")
    assert spans == 5 and [p.where for p in problems] == [f"doc.md:{n}" for n in range(2, 7)]
    messages = [p.message for p in problems]
    assert "shows '2.1426' but results/r.json rows[cell=a].bpb is 2.14247" == messages[0]
    assert "no artifact" in messages[1] and "matches 0 entries, not one" in messages[2]
    assert "no 'nope'" in messages[3] and "expected one number" in messages[4]


def test_numbers_are_read_as_shown():
    assert parse_number("1,363 tok/s") == (1363.0, 0)
    assert parse_number("−7.6%") == (-7.6, 1)
    assert parse_number("9.2e-7") == (9.2e-7, 8)  # shown to 1e-8
