"""The kernel benchmark harness: skips without CUDA, and (in --smoke) writes complete CSV rows."""

from __future__ import annotations

import csv

import pytest
import torch

from gocram.bench import kernels as bench_kernels
from gocram.core.errors import GocramError
from tests.kernel_device import needs_kernels


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the benchmark runs instead")
def test_without_cuda_it_prints_the_reason_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "kernels.csv"
    assert bench_kernels.main(["--out", str(out)]) == 0
    assert "skipped, needs CUDA" in capsys.readouterr().out
    assert not out.exists()


@needs_kernels
def test_smoke_run_appends_complete_rows(tmp_path, capsys):
    out = tmp_path / "results" / "kernels.csv"
    args = ["--smoke", "--no-compile", "--out", str(out)]
    assert bench_kernels.main(args) == 0
    assert "| kernel | impl | mode |" in capsys.readouterr().out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == bench_kernels.COLUMNS
    expected = {(k, i, m) for k in bench_kernels.BENCHES for i in ("triton", "eager")
                for m in bench_kernels.MODES}
    assert {(r["kernel"], r["impl"], r["mode"]) for r in rows} == expected
    for row in rows:
        assert row["status"].startswith("ok (smoke"), row
        assert float(row["ms"]) > 0 and row["device"] and row["torch"] and row["date"]
        if row["impl"] == "triton":
            assert float(row["speedup_vs_eager"]) > 0 and row["verdict"]
    bench_kernels.main(args)  # a second run appends below the first
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == 2 * len(rows)


def test_a_csv_with_other_columns_is_left_alone(tmp_path):
    out = tmp_path / "kernels.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(GocramError, match="other columns"):
        bench_kernels.append_csv(out, [])
    assert out.read_text() == "a,b\n1,2\n"


def test_unknown_kernel_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        bench_kernels.main(["--kernels", "layernorm,rmsnorm"])
    assert exit_info.value.code == 2


def verdict_for(**fields) -> str:
    row = {"impl": "triton", "speedup_vs_eager": None, "speedup_vs_compile": None,
           "mem_vs_eager": None, "target": "", **fields}
    return bench_kernels._verdict(row)


def test_the_verdict_says_where_a_kernel_loses():
    assert verdict_for(speedup_vs_eager=2.5, speedup_vs_compile=0.8,
                       target=">=2x eager, >=1x compile") == (
        "beats eager, LOSES to compile, target MISSED")
    assert verdict_for(speedup_vs_eager=2.5, speedup_vs_compile=1.1,
                       target=">=2x eager, >=1x compile").endswith("target met")
    assert verdict_for(speedup_vs_eager=1.4, target=">=1.5x eager").endswith("target MISSED")
    assert verdict_for(speedup_vs_eager=0.9, mem_vs_eager=0.3,
                       target="peak memory <=0.5x eager") == "LOSES to eager, target met"
