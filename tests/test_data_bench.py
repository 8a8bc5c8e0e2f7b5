"""`python -m gocram.bench.data --results DIR` writes the artifact docs/data.md's numbers come from."""

from __future__ import annotations

import json

from gocram.bench.data import main

GO_FILE = """package demo{i}

// Sum{i} adds the numbers of a slice; file {i} of the benchmark's tiny tree.
func Sum{i}(xs []int) int {{
\ttotal := 0
\tfor _, x := range xs {{
\t\ttotal += x * {i}
\t}}
\treturn total
}}
"""


def test_build_tokenize_and_loader_write_their_rows_with_provenance(tmp_path):
    tree = tmp_path / "tree"
    for i in range(12):
        (tree / f"pkg{i}").mkdir(parents=True)
        (tree / f"pkg{i}" / "sum.go").write_text(GO_FILE.format(i=i))
    corpus, results = tmp_path / "corpus", tmp_path / "results"
    main(["build", "--source", f"dir:{tree}", "--out", str(corpus), "--results", str(results),
          "--set", "filters.license_allow=[]", "--set", "near_dedup.enabled=false"])
    main(["tokenize", "--corpus", str(corpus), "--vocab", "300", "--repeat", "1",
          "--results", str(results)])
    main(["loader", "--corpus", str(corpus), "--vocab", "300", "--seq-len", "16", "--batch", "2",
          "--workers", "0", "--seconds", "0.2", "--layouts", "concat,packed", "--results", str(results)])

    build = json.loads((results / "build.json").read_text())
    assert build["bench"] == "build" and build["device"] and build["versions"]["torch"]
    assert len(build["load_average_before"]) == 3
    (row,) = build["rows"]
    assert row["files_in"] == 12 and row["kept"] == 12 and row["mb_per_s"] > 0
    assert row["settings"] == ["filters.license_allow=[]", "near_dedup.enabled=false"]

    (tokenize,) = json.loads((results / "tokenize.json").read_text())["rows"]
    assert tokenize["files"] == 12 and tokenize["tokens"] > 0 and tokenize["mb_per_s"] > 0

    loader = json.loads((results / "loader.json").read_text())["rows"]
    assert [r["layout"] for r in loader] == ["concat", "packed"]
    assert all(r["batches"] > 0 and r["tokens_per_s"] > 0 for r in loader)
    assert loader[0]["padding_fraction"] == 0
