"""`gocram compress` / `decompress`: exact round trips, size = scored bits, refusals, the coder."""

import json
import math
import struct

import numpy as np
import pytest

from gocram.core.errors import GocramError
from gocram.eval.compress import MAGIC, compress, decompress, read_header
from gocram.eval.rangecoder import FLUSH_BYTES, RangeDecoder, RangeEncoder, quantise
from tests.conftest import run_gocram
from tests.eval.conftest import go_tokenizer, make_run, trained_run  # noqa: F401  (fixtures)


def test_range_coder_round_trip_and_cost():
    rng = np.random.default_rng(0)
    for vocab in (2, 37, 700):
        tables, symbols, ideal = [], [], 0.0
        for _ in range(2000):
            p = rng.dirichlet(np.full(vocab, 0.1))
            cum = quantise(p.astype(np.float32))
            s = int(rng.choice(vocab, p=p))
            tables.append(cum)
            symbols.append(s)
            ideal -= math.log2((cum[s + 1] - cum[s]) / cum[-1])
        encoder = RangeEncoder()
        for cum, s in zip(tables, symbols, strict=True):
            encoder.encode(cum, s)
        data = encoder.finish()
        decoder = RangeDecoder(data)
        assert [decoder.decode(cum) for cum in tables] == symbols
        assert ideal <= 8 * len(data) <= ideal + 8 * FLUSH_BYTES + 1  # flush: the only overhead


def test_quantise_keeps_every_symbol():
    cum = quantise(np.array([1.0, 0.0, 0.0, 1e-30], dtype=np.float32))
    assert (np.diff(cum) >= 1).all()


@pytest.fixture(scope="module")
def go_text(go_corpus, tmp_path_factory):
    texts = [p.read_text() for p in sorted(go_corpus.rglob("*.go"))]
    text = "".join(texts)[:4000]
    path = tmp_path_factory.mktemp("in") / "in.go"
    path.write_text(text)
    return path


@pytest.mark.parametrize("stride", [0, 20])
def test_round_trip_is_exact_and_the_size_is_the_scored_bits(trained_run, go_text, tmp_path,  # noqa: F811
                                                            stride):
    packed, unpacked = tmp_path / "in.gcz", tmp_path / "out.go"
    report = compress(trained_run, go_text, packed, stride=stride)
    assert packed.stat().st_size == report["file_bytes"]
    payload_bits = 8 * (report["payload_bytes"] - FLUSH_BYTES)  # the flush: fixed, like the header
    assert abs(payload_bits - report["scored_bits"]) <= 0.005 * report["scored_bits"]
    assert report["quantised_bits"] <= payload_bits + 8 * FLUSH_BYTES
    assert report["bytes_per_s"] > 0
    header, _ = read_header(packed)
    assert header["stride"] == stride and header["threads"] == 1
    back = decompress(trained_run, packed, unpacked)
    assert unpacked.read_bytes() == go_text.read_bytes()
    assert back["output_bytes"] == go_text.stat().st_size


def test_decoding_refuses_what_breaks_determinism(trained_run, go_text, go_tokenizer, tmp_path):  # noqa: F811
    packed = tmp_path / "in.gcz"
    compress(trained_run, go_text, packed)
    other = make_run(tmp_path / "other", go_tokenizer)
    with pytest.raises(GocramError, match="checkpoint differs"):
        decompress(other, packed, tmp_path / "x")
    with pytest.raises(GocramError, match="thread count"):
        decompress(trained_run, packed, tmp_path / "x", threads=2)
    header, payload = read_header(packed)
    blob = json.dumps({**header, "torch": "0.0.1"}).encode()
    forged = tmp_path / "forged.gcz"
    forged.write_bytes(MAGIC + struct.pack(">I", len(blob)) + blob + payload)
    with pytest.raises(GocramError, match="torch version differs"):
        decompress(trained_run, forged, tmp_path / "x")
    damaged = tmp_path / "damaged.gcz"
    raw = bytearray(packed.read_bytes())
    raw[-len(payload) // 2] ^= 0x55
    damaged.write_bytes(bytes(raw))
    with pytest.raises(GocramError, match="sha256"):
        decompress(trained_run, damaged, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing written by a refused or failed decode
    with pytest.raises(GocramError, match="not a file written by gocram compress"):
        decompress(trained_run, go_text, tmp_path / "x")


def test_cli_round_trip_and_one_line_errors(trained_run, go_text, tmp_path):  # noqa: F811
    packed, unpacked = tmp_path / "in.gcz", tmp_path / "out.go"
    done = run_gocram("compress", "--checkpoint", str(trained_run), str(go_text), "-o", str(packed))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["input_bytes"] == go_text.stat().st_size
    done = run_gocram("decompress", "--checkpoint", str(trained_run), str(packed), "-o", str(unpacked))
    assert done.returncode == 0, done.stderr
    assert unpacked.read_bytes() == go_text.read_bytes()
    bad = run_gocram("decompress", "--checkpoint", str(trained_run), str(packed), "-o",
                     str(tmp_path / "y"), "--threads", "3")
    assert bad.returncode == 2 and "thread count" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    binary = tmp_path / "bin.go"
    binary.write_bytes(b"\xff\x00\x01")
    bad = run_gocram("compress", "--checkpoint", str(trained_run), str(binary), "-o", str(packed))
    assert bad.returncode == 2 and "not UTF-8" in bad.stderr
