"""The scoring benchmark script on a tiny run trained in seconds (its files, not its timings)."""

import json

import pytest

from gocram.bench.scoring import main
from tests.eval.conftest import trained_run  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def go_dir(go_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_dir")
    for i, path in enumerate(sorted(go_corpus.rglob("*.go"))[-3:]):
        (out / f"f{i}.go").write_text(path.read_text()[:1200])
    return out


def test_bench_writes_every_mode_and_comparator(trained_run, go_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "scoring"
    assert main([str(trained_run), "--dir", str(go_dir), "--out", str(out), "--stride-divs", "2",
                 "--compress-bytes", "1500"]) == 0
    report = json.loads((out / "scoring.json").read_text())
    md = (out / "scoring.md").read_text()
    assert md in capsys.readouterr().out
    val, directory = report["sets"]["validation set"], report["sets"][f"directory {go_dir}"]
    names = [m["name"] for m in val["modes"]]
    assert names == ["chunked, per file (headline)", "sliding S=T/2, per file", "chunked, stream",
                     "sliding S=T/2, stream", "sliding S=T/2, stream, adapt"]
    # the trainer's val_bpb is chunked over the joined validation set: the same number
    result = json.loads((trained_run / "result.json").read_text())
    stream_chunked = next(m for m in val["modes"] if m["name"] == "chunked, stream")
    assert stream_chunked["bpb"] == pytest.approx(result["val_bpb"], rel=1e-5)
    assert val["bytes"] == result["val_bytes"]
    for name in ("xz -9e", "zstd -19 --long", "ppmd"):
        assert name in directory["comparators"] and f"| {name} |" in md
    assert directory["files"] == 3
    rt = report["round_trip"]
    assert rt["exact"] and rt["input_bytes"] <= 1500
    assert abs(rt["payload_over_scored_bits"] - 1) <= 0.005
    assert "round trip" in md


def test_bench_refuses_nothing_to_do(trained_run, tmp_path):  # noqa: F811
    assert main([str(trained_run), "--no-val", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_no_modes_runs_only_the_round_trip(trained_run, go_dir, tmp_path):  # noqa: F811
    out = tmp_path / "rt"
    assert main([str(trained_run), "--dir", str(go_dir), "--out", str(out), "--no-modes",
                 "--compress-bytes", "800"]) == 0
    report = json.loads((out / "scoring.json").read_text())
    assert report["sets"] == {} and report["round_trip"]["exact"]
    assert main([str(trained_run), "--dir", str(go_dir), "--out", str(tmp_path / "y"), "--no-modes"]) == 2
    assert not (tmp_path / "y").exists()
