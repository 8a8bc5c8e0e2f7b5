"""Token shards (header, dtype, offsets, damage) and `pretokenize` over a built corpus."""

import struct
import zlib

import numpy as np
import pytest

from gocram.core.errors import GocramError
from gocram.data.corpus.build import build_corpus
from gocram.data.corpus.docs import read_corpus
from gocram.data.corpus.options import build_options
from gocram.data.tokens.pretokenize import INDEX, pretokenize, shard_paths
from gocram.data.tokens.shards import HEADER_BYTES, TokenShard, tokenizer_hash, write_shard
from gocram.data.tokens.tokenizer import eos_id, load_tokenizer, train_bpe
from tests.datagen import real_rows, write_stack

SHA = "ab" * 32


def docs_of(lengths, start=0):
    return [np.arange(start + 100 * i, start + 100 * i + n) for i, n in enumerate(lengths)]


def test_round_trip_uint16_with_offsets(tmp_path):
    docs = docs_of([3, 1, 7, 0, 2])
    shard = TokenShard.open(write_shard(tmp_path / "a.tok", docs, vocab_size=1000, tokenizer_sha256=SHA),
                            tokenizer_sha256=SHA)
    assert shard.tokens.dtype == np.uint16 and shard.n_docs == 5 and shard.vocab_size == 1000
    for i, doc in enumerate(docs):
        assert shard.doc(i).tolist() == doc.tolist()
    assert shard.tokenizer_sha256 == SHA


def test_large_vocabularies_use_uint32(tmp_path):
    docs = [np.array([70_000, 1, 65_536]), np.array([99_999])]
    shard = TokenShard.open(write_shard(tmp_path / "a.tok", docs, vocab_size=100_000, tokenizer_sha256=SHA))
    assert shard.tokens.dtype == np.uint32 and shard.doc(0).tolist() == [70_000, 1, 65_536]
    with pytest.raises(GocramError, match="token id 70000 >= vocab size 1000"):
        write_shard(tmp_path / "b.tok", docs, vocab_size=1000, tokenizer_sha256=SHA)
    assert not list(tmp_path.glob("b.tok*"))  # the failed write left nothing behind


def _header(path):
    return bytearray(path.read_bytes()[:HEADER_BYTES])


def _rewrite_header(path, **changes):
    data = bytearray(path.read_bytes())
    fields = list(struct.unpack("<8sIIQQI32s", bytes(data[:68])))
    names = ["magic", "version", "itemsize", "n_tokens", "n_docs", "vocab", "tok"]
    for k, v in changes.items():
        fields[names.index(k)] = v
    packed = struct.pack("<8sIIQQI32s", *fields)
    data[:72] = packed + struct.pack("<I", zlib.crc32(packed))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "token shard truncated"),
    ("append", "longer than its header says"),
    ("magic", "not a gocram token shard"),
    ("crc", "header is corrupt"),
    ("version", "format version 9"),
    ("itemsize", "3-byte tokens"),
    ("offsets", "document index is corrupt"),
    ("empty", "not a gocram token shard"),
])
def test_damaged_shards_are_one_line_errors_naming_the_file(tmp_path, damage, message):
    path = write_shard(tmp_path / "a.tok", docs_of([5, 4, 3]), vocab_size=1000, tokenizer_sha256=SHA)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-5])
    elif damage == "append":
        path.write_bytes(data + b"\0" * 8)
    elif damage == "magic":
        path.write_bytes(b"NOTGOCRM" + data[8:])
    elif damage == "crc":
        path.write_bytes(data[:20] + b"\xff" + data[21:])
    elif damage == "version":
        _rewrite_header(path, version=9)
    elif damage == "itemsize":
        _rewrite_header(path, itemsize=3)
    elif damage == "offsets":
        path.write_bytes(data[:-8] + struct.pack("<Q", 5))  # the last offset no longer = n_tokens
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(GocramError, match=message) as err:
        TokenShard.open(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_another_tokenizer_is_refused(tmp_path):
    path = write_shard(tmp_path / "a.tok", docs_of([5]), vocab_size=1000, tokenizer_sha256=SHA)
    with pytest.raises(GocramError, match="made with another tokenizer"):
        TokenShard.open(path, tokenizer_sha256="cd" * 32)


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretok")
    write_stack(root / "in.parquet", real_rows(60))
    corpus = root / "corpus"
    build_corpus(f"parquet:{root}/in.parquet", corpus, build_options(overrides=[
        "chunk_mb=0.08", "near_dedup.num_perm=64", "split.val_frac=0.3", "split.test_frac=0.2"]))
    tok = train_bpe([d.text for d in read_corpus(corpus)], 500)
    tok.save(str(root / "tokenizer.json"))
    return corpus, root / "tokenizer.json"


def test_pretokenize_writes_a_shard_per_chunk_and_split(corpus_and_tokenizer, tmp_path, capsys):
    corpus, tok_path = corpus_and_tokenizer
    out = tmp_path / "shards"
    index = pretokenize(corpus, tok_path, out)
    tok = load_tokenizer(tok_path)
    assert index["complete"] and index["dtype"] == "uint16"
    assert index["tokenizer_sha256"] == tokenizer_hash(tok)
    docs = read_corpus(corpus)
    for split in ("train", "val", "test"):
        texts = [d.text for d in docs if d.split == split]
        shards = [TokenShard.open(p, tokenizer_sha256=index["tokenizer_sha256"])
                  for p in shard_paths(out, split)]
        decoded = [tok.decode(s.doc(i)[1:].tolist()) for s in shards for i in range(s.n_docs)]
        assert decoded == texts  # every document, in order, exactly
        assert all(s.doc(i)[0] == eos_id(tok) for s in shards for i in range(s.n_docs))
        assert sum(len(s.tokens) for s in shards) == index["tokens"][split]
    assert len({s["chunk"] for s in index["shards"]}) >= 2

    capsys.readouterr()
    victim = out / index["shards"][0]["name"]
    victim.write_bytes(victim.read_bytes()[:-3])  # damaged shards are rebuilt on a rerun
    again = pretokenize(corpus, tok_path, out)
    log = capsys.readouterr().err
    assert "shards up to date, skipped" in log
    assert again["shards"] == index["shards"]
    TokenShard.open(victim)

    other = train_bpe(["package x\nfunc F() {}\n"] * 10, 300)
    other.save(str(tmp_path / "other.json"))
    with pytest.raises(GocramError, match="holds shards of another tokenizer"):
        pretokenize(corpus, tmp_path / "other.json", out)


def test_pretokenize_bad_inputs(corpus_and_tokenizer, tmp_path):
    corpus, tok_path = corpus_and_tokenizer
    with pytest.raises(GocramError, match="--tokenizer .*: file not found"):
        pretokenize(corpus, tmp_path / "missing.json", tmp_path / "o")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GocramError, match="not a tokenizer.json"):
        pretokenize(corpus, tmp_path / "bad.json", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GocramError, match="no parquet chunks"):
        pretokenize(tmp_path / "empty", tok_path, tmp_path / "o")
    with pytest.raises(GocramError, match=f"no {INDEX}"):
        shard_paths(tmp_path / "o")


def test_in_memory_offsets_are_checked():
    tokens = np.arange(10, dtype=np.uint16)
    assert TokenShard.from_arrays(tokens).n_docs == 1
    assert TokenShard.from_arrays(tokens, np.array([0, 4, 10], dtype=np.uint64)).doc(1).tolist() == \
        list(range(4, 10))
    for bad in ([0, 6, 4, 10], [1, 10], [0, 9]):
        with pytest.raises(ValueError, match="must rise from 0"):
            TokenShard.from_arrays(tokens, np.array(bad, dtype=np.uint64))
