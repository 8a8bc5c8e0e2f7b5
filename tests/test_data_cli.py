"""`gocram data build | report | pretokenize` as a user runs them."""

import json

from gocram.data.tokens.tokenizer import train_bpe
from tests.conftest import run_gocram
from tests.datagen import MIT, real_rows, write_stack


def test_build_report_pretokenize(tmp_path):
    write_stack(tmp_path / "in.parquet", real_rows(40, repos=20))
    out = tmp_path / "corpus"
    done = run_gocram("data", "build", "--source", f"parquet:{tmp_path}/in.parquet", "--out", str(out),
                      "--chunk-mb", "0.05", "--set", "near_dedup.num_perm=32", "--set", "split.val_frac=0.3")
    assert done.returncode == 0, done.stderr
    assert "[data build] ingest:" in done.stderr and "chunk-00001.parquet" in done.stderr  # progress
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["chunk_mb"] == 0.05 and report["config"]["near_dedup"]["num_perm"] == 32

    texts = [r["content"] for r in real_rows(40, repos=20)]
    train_bpe(texts, 400).save(str(tmp_path / "tok.json"))
    # The report (verified against the chunk hashes), then shards with a tokenizer of our own.
    done = run_gocram("data", "report", str(out), "--verify")
    assert done.returncode == 0, done.stderr
    assert f"files in   {report['files_in']}" in done.stdout and ": ok" in done.stdout
    assert "verified" in done.stdout
    done = run_gocram("data", "pretokenize", "--corpus", str(out), "--tokenizer",
                      str(tmp_path / "tok.json"), "--out", str(tmp_path / "shards"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["dtype"] == "uint16" and summary["tokens"]["train"] > 0


def test_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    done = run_gocram("data", "build", "--source", f"parquet:{tmp_path}/bad.parquet",
                      "--out", str(tmp_path / "out"), "--set", "filters.max_bites=1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("gocram: error: unknown build setting 'filters.max_bites' "
                                   "(did you mean 'filters.max_bytes'?)")
    done = run_gocram("data", "build", "--source", f"parquet:{tmp_path}/bad.parquet",
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gocram: error: ") and "bad.parquet: not a readable parquet file" in last
    assert not list((tmp_path / "out").glob("chunk-*")) and not (tmp_path / "out" / "manifest.json").exists()


def test_pointing_gocram_at_ones_own_repository(tmp_path):
    """The most natural first use (issue 19): a repository with an MIT LICENSE at its root."""
    repo = tmp_path / "myproject"
    for i, row in enumerate(real_rows(8, repos=8)):
        (repo / "pkg").mkdir(parents=True, exist_ok=True)
        (repo / "pkg" / f"f{i}.go").write_text(row["content"])
    out = tmp_path / "corpus"
    done = run_gocram("data", "build", "--source", f"dir:{repo}", "--out", str(out),
                      "--set", "near_dedup.num_perm=32")
    assert done.returncode == 2  # no licence file: nothing may be kept, and it says why in one line
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gocram: error: ") and "(8 read; dropped: license 8); see " in last
    assert json.loads((out / "report.json").read_text())["dropped"] == {"license": 8}
    (repo / "LICENSE").write_text(MIT)
    done = run_gocram("data", "build", "--source", f"dir:{repo}", "--out", str(out),
                      "--set", "near_dedup.num_perm=32")
    assert done.returncode == 0, done.stderr
    done = run_gocram("data", "report", str(out))
    assert "kept       8 " in done.stdout and "licences   .: MIT (LICENSE)" in done.stdout
