"""Test inputs for the data pipeline: real Go rows in The Stack's schema, and crafted bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gocram.data.corpus.docs import STACK_COLUMNS, STACK_SCHEMA
from tests.conftest import REPO, SAMPLE

# The Stack's own columns only, as a real download has them.
STACK_ONLY = pa.schema([STACK_SCHEMA.field(c) for c in STACK_COLUMNS])

# The MIT licence as a repository's LICENSE file has it.
MIT = """MIT License

Copyright (c) 2026 Jane Roe

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

GO = 'package x\n\n// Add adds.\nfunc Add(a, b int) int {\n\treturn a + b // "é"\n}\n'


def real_rows(n: int, *, max_chars: int = 6000, repos: int = 30) -> list[dict]:
    """n rows of real Go from the embedded sample, spread over at most `repos` packages."""
    table = pq.read_table(SAMPLE, columns=["content", "max_stars_repo_name", "max_stars_repo_path",
                                           "licenses"])
    rows, per_repo = [], {}
    for row in table.to_pylist():
        repo = row["max_stars_repo_name"]
        if repo not in per_repo and len(per_repo) >= repos:
            continue
        if per_repo.get(repo, 0) >= max(n // repos, 1) or len(row["content"]) > max_chars:
            continue
        per_repo[repo] = per_repo.get(repo, 0) + 1
        rows.append(stack_row(row["content"], repo, row["max_stars_repo_path"], row["licenses"]))
        if len(rows) == n:
            break
    return rows


def stack_row(content: str, repo: str, path: str, licenses=("MIT",), stars: int | None = None) -> dict:
    return {"content": content, "size": len(content.encode()), "ext": "go", "lang": "Go",
            "max_stars_count": stars, "max_stars_repo_name": repo, "max_stars_repo_path": path,
            "licenses": list(licenses), "avg_line_length": None, "max_line_length": None,
            "alphanum_fraction": None, "hexsha": None}


def write_stack(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=STACK_ONLY), path, compression="zstd")
    return path


def humaneval_solution(task: int = 0) -> str:
    """A HumanEval-X Go problem's prompt and canonical solution, as a file would copy it."""
    with gzip.open(REPO / "evaldata" / "humaneval_go.jsonl.gz", "rt") as handle:
        row = [json.loads(line) for line in handle][task]
    return "package x\n\n" + row["prompt"] + row["canonical_solution"]
