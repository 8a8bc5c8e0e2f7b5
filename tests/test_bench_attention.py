"""The attention benchmark: one subprocess per case, rows for what cannot run, exponents."""

from __future__ import annotations

import csv

import pytest

from gocram.bench.attention import document_ids, main, memory_exponents
from gocram.core.errors import GocramError


def test_memory_exponent_is_the_log_log_slope():
    rows = [{"backend": "m", "mask": "causal", "mode": "fwd", "status": "ok", "seq_len": t,
             "peak_mem_mib": mem} for t, mem in ((256, 1.0), (1024, 16.0), (2048, 64.0))]
    # A constant share flattens small T: the slope comes from the two largest.
    rows += [{**rows[i], "backend": "f", "peak_mem_mib": mem} for i, mem in ((0, 6.0), (1, 8.0), (2, 16.0))]
    found = memory_exponents(rows)
    assert found[("m", "causal", "fwd")] == pytest.approx(2.0)
    assert found[("f", "causal", "fwd")] == pytest.approx(1.0)


def test_packed_rows_for_the_benchmark():
    ids = document_ids(3, 50)
    assert ids.shape == (3, 50)
    assert ((ids.diff(dim=1) == 0) | (ids.diff(dim=1) == 1)).all()  # contiguous, increasing
    assert (ids.max(dim=1).values > 0).all()  # more than one document per row


def test_bench_writes_csv_and_markdown(tmp_path):
    assert main(["--backends", "math", "xformers", "--seq-lens", "48", "--masks", "documents",
                 "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "cpu.csv").open()))
    assert [(r["backend"], r["seq_len"]) for r in rows] == [("math", "48"), ("xformers", "48")]
    assert rows[0]["status"] == "ok" and float(rows[0]["tokens_per_s"]) > 0
    assert rows[0]["mode"] == "fwd+bwd" and rows[0]["mem_kind"] == "rss_peak_above_inputs"
    assert rows[1]["status"].startswith("unsupported: ") and "xformers" in rows[1]["status"]
    markdown = (tmp_path / "cpu.md").read_text()
    assert "| math | documents | fwd+bwd | 48 |" in markdown and "load average" in markdown


def test_bench_names_an_unknown_backend(tmp_path):
    with pytest.raises(GocramError, match="--backends: unknown attention 'flsh'"):
        main(["--backends", "flsh", "--out", str(tmp_path)])
