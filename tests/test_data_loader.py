"""Layouts (concat, padded, packed), the streaming ShardDataset/ShardLoader, and the trainer's use."""

import io
import json

import numpy as np
import pytest
import torch

from gocram.config import load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.batches import LAYOUTS, layout_options
from gocram.data.batching.layouts import ConcatBatches, PackedBatches, PaddedBatches
from gocram.data.batching.loader import ShardDataset, ShardLoader
from gocram.data.batching.packing import best_fit_decreasing, split_document
from gocram.data.batching.windows import RandomWindows
from gocram.data.corpus.build import build_corpus
from gocram.data.corpus.options import build_options
from gocram.data.tokens.prepare import prepare_data
from gocram.data.tokens.shards import TokenShard, write_shard
from gocram.train.trainer import Trainer
from tests.datagen import real_rows, write_stack

T, B = 16, 3
# Awkward document lengths around T: single tokens, exactly T and T+1, several rows long.
LENGTHS = [1, 2, 5, T - 1, T, T + 1, T + 2, 3 * T + 5, 7, 9, 11, 4, 13, 2, 30, 1, 17, 6, 8, 40]
SHA = "ab" * 32


def encoded(doc: int, index: int) -> int:
    """Token value naming its document and its index in it: a target can be checked exactly."""
    return 1000 * doc + index


def make_docs(lengths=LENGTHS):
    docs = [np.array([encoded(d, i) for i in range(n)], dtype=np.int64) for d, n in enumerate(lengths)]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.concatenate(docs), offsets


def build(name, *, seed=0, slot=(0, 1), **kw):
    tokens, offsets = make_docs()
    return LAYOUTS.build(name, tokens, seq_len=T, batch=B, seed=seed, doc_offsets=offsets, slot=slot, **kw)


def test_layouts_are_registered_with_their_document_mask():
    assert LAYOUTS.get("concat") is ConcatBatches and LAYOUTS.get("padded") is PaddedBatches
    assert LAYOUTS.get("packed") is PackedBatches and LAYOUTS.get("random") is RandomWindows
    assert PackedBatches.document_mask is True
    assert not ConcatBatches.document_mask and not PaddedBatches.document_mask
    assert RandomWindows.document_mask is False
    with pytest.raises(ConfigError, match="unknown data layout 'pakced'.*did you mean 'packed'"):
        LAYOUTS.get("pakced")


def test_concat_reads_the_epoch_stream_once():
    src = build("concat")
    order = src.order().copy()
    stream = np.concatenate([make_docs()[0][np.arange(*o)] for o in
                             [(make_docs()[1][g], make_docs()[1][g + 1]) for g in order]])
    n_batches = (len(stream) - 1) // (B * T)
    xs, ys = [], []
    for _ in range(n_batches):
        b = src.next_batch()
        assert b.x.shape == b.y.shape == (B, T) and b.positions is None and b.document_ids is None
        assert torch.equal(b.x.reshape(-1)[1:], b.y.reshape(-1)[:-1])
        xs.append(b.x.reshape(-1))
        ys.append(b.y.reshape(-1))
    got = torch.cat(xs).numpy()
    assert got.tolist() == stream[:len(got)].tolist()
    assert torch.cat(ys).numpy().tolist() == stream[1:len(got) + 1].tolist()
    assert src.padding_fraction == 0.0 and src.epoch == 0


def test_padded_rows_hold_one_document_prefix():
    src = build("padded")
    total_pad = 0
    for _ in range(6):
        b = src.next_batch()
        for r in range(B):
            x, y = b.x[r].numpy(), b.y[r].numpy()
            doc = x[0] // 1000
            real = y != IGNORE_INDEX
            n = int(real.sum())
            assert real[:n].all() and not real[n:].any()  # targets first, then padding
            assert (x[:n] == [encoded(doc, i) for i in range(n)]).all()
            assert (y[:n] == x[:n] + 1).all()  # the next token of the same document
            assert n == min(LENGTHS[doc] - 1, T)  # truncated to T targets, never a 1-token document
            total_pad += T - n
    assert src.padding_fraction == pytest.approx(total_pad / (6 * B * T))


def test_packed_targets_never_cross_a_document_and_cover_each_token_once():
    # One packing group holds the whole epoch, so its rows can be checked for exact coverage.
    src = build("packed", group_tokens=1000 * (T + 1))
    first = src.next_batch()
    rows_in_epoch = B + len(src.pending)
    batches = [first] + [src.next_batch() for _ in range((rows_in_epoch - 1) // B)]
    rows = [(b, r) for b in batches for r in range(B)][:rows_in_epoch]
    targets, pad = [], 0
    for b, r in rows:
        x, y = b.x[r].numpy(), b.y[r].numpy()
        ids, pos = b.document_ids[r].numpy(), b.positions[r].numpy()
        real = y != IGNORE_INDEX
        assert (y[real] == x[real] + 1).all()  # same document, next index: never across a boundary
        assert (ids[real] >= 0).all()
        for k in set(ids[ids >= 0].tolist()):
            where = np.flatnonzero(ids == k)
            assert (np.diff(where) == 1).all() and (pos[where] == np.arange(len(where))).all()
            doc_index = x[where] % 1000
            assert (np.diff(doc_index) == 1).all()  # contiguous piece of one document
        pad += int((ids == -1).sum())
        assert (x[ids == -1] == 0).all() and not real[ids == -1].any()
        targets += y[real].tolist()
    expected = sorted(encoded(d, i) for d, n in enumerate(LENGTHS) for i in range(1, n))
    assert sorted(targets) == expected  # every token after a document's first: exactly once
    assert 0.0 < src.padding_fraction < 0.5


def test_a_larger_packing_group_mixes_more_documents_into_each_batch():
    # 40 documents of ten rows each: a one-row group packs one document at a time, so a batch
    # is pieces of one or two files; a group holding the epoch spreads each batch over many.
    tokens, offsets = make_docs([10 * T] * 40)

    def distinct_docs_per_batch(group_tokens):
        src = LAYOUTS.build("packed", tokens, seq_len=T, batch=8, seed=0, doc_offsets=offsets,
                            slot=(0, 1), group_tokens=group_tokens)
        counts = []
        for _ in range(40):
            x = src.next_batch().x.numpy()
            counts.append(len(set((x[:, 0] // 1000).tolist())))
        return np.mean(counts)

    assert distinct_docs_per_batch(T + 1) <= 2.0
    assert distinct_docs_per_batch(10**6) >= 6.0


def test_the_packing_group_comes_from_the_config_for_packed_only():
    packed = load_config("tiny", ["data.layout=packed", "impl.attention=math",
                                  "data.pack_group_tokens=5000"])
    assert layout_options(packed.data) == {"group_tokens": 5000}
    assert layout_options(load_config("tiny", ["data.layout=random"]).data) == {}
    with pytest.raises(ConfigError, match="data.pack_group_tokens must be >= 1, got 0"):
        load_config("tiny", ["data.pack_group_tokens=0"])


@pytest.mark.parametrize("name", ["concat", "padded", "packed"])
def test_layouts_resume_exactly_and_are_seeded(name):
    src = build(name, seed=5)
    for _ in range(7):  # past an epoch boundary for every layout
        src.next_batch()
    buffer = io.BytesIO()
    torch.save(src.state_dict(), buffer)
    expected = [src.next_batch() for _ in range(6)]
    again = build(name, seed=5)
    buffer.seek(0)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    for e, g in zip(expected, (again.next_batch() for _ in range(6)), strict=True):
        assert torch.equal(e.x, g.x) and torch.equal(e.y, g.y)
        if e.document_ids is not None:
            assert torch.equal(e.document_ids, g.document_ids) and torch.equal(e.positions, g.positions)
    assert again.padding_fraction == src.padding_fraction
    same = build(name, seed=5).next_batch()
    other = build(name, seed=6).next_batch()
    assert torch.equal(same.x, build(name, seed=5).next_batch().x) and not torch.equal(same.x, other.x)
    with pytest.raises(ValueError, match="another slot"):
        build(name, seed=5, slot=(1, 2)).load_state_dict(src.state_dict())


def test_slots_read_disjoint_documents():
    n_slots = 3
    seen = [set(build("packed", slot=(k, n_slots)).order().tolist()) for k in range(n_slots)]
    assert set().union(*seen) == set(range(len(LENGTHS)))
    assert sum(len(s) for s in seen) == len(LENGTHS)
    with pytest.raises(ValueError, match="cannot feed"):
        build("concat", slot=(0, len(LENGTHS) + 1))


def test_packing_helpers():
    assert split_document(1, 5) == [] and split_document(5, 5) == [(0, 5)]
    assert split_document(13, 5) == [(0, 5), (4, 9), (8, 13)]
    assert split_document(10, 5) == [(0, 5), (4, 9)] + [(8, 10)]
    bins = best_fit_decreasing([5, 3, 3, 2, 2, 1], 6)
    assert sorted(sorted(b) for b in bins) == [[0, 5], [1, 2], [3, 4]]
    with pytest.raises(ValueError):
        best_fit_decreasing([7], 6)


@pytest.fixture
def shard_files(tmp_path):
    tokens, offsets = make_docs()
    docs = [tokens[offsets[i]:offsets[i + 1]] for i in range(len(LENGTHS))]
    a = write_shard(tmp_path / "a.tok", docs[:12], vocab_size=50_000, tokenizer_sha256=SHA)
    b = write_shard(tmp_path / "b.tok", docs[12:], vocab_size=50_000, tokenizer_sha256=SHA)
    return [a, b]


def docs_in(batch):
    return set((batch.x.numpy()[batch.y.numpy() != IGNORE_INDEX] // 1000).tolist())


def test_dataset_ranks_and_workers_read_disjoint_documents(shard_files):
    per_rank = []
    for rank in range(2):
        loader = ShardLoader(ShardDataset(shard_files, layout="padded", seq_len=T, batch=1, seed=3,
                                          rank=rank, world_size=2, tokenizer_sha256=SHA), num_workers=2)
        per_rank.append(set().union(*(docs_in(loader.next_batch()) for _ in range(4))))
    # 4 readers over 18 documents with two or more tokens: 4 batches each stay inside epoch 0.
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]


def test_loader_with_workers_resumes_exactly(shard_files):
    def loader():
        return ShardLoader(ShardDataset(shard_files, layout="packed", seq_len=T, batch=B, seed=1,
                                        rank=0, world_size=1), num_workers=2)

    first = loader()
    for _ in range(5):  # an odd count: the next batch comes from the second worker
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))
    expected = [first.next_batch() for _ in range(4)]
    resumed = loader()
    resumed.load_state_dict(state)
    for e, g in zip(expected, (resumed.next_batch() for _ in range(4)), strict=True):
        assert torch.equal(e.x, g.x) and torch.equal(e.document_ids, g.document_ids)
    assert resumed.document_mask and 0.0 <= resumed.padding_fraction < 1.0
    in_process = ShardLoader(ShardDataset(shard_files, layout="packed", seq_len=T, batch=B, seed=1,
                                          rank=0, world_size=1))
    with pytest.raises(ValueError, match="saved with 2 workers"):
        in_process.load_state_dict(state)


def test_dataset_rejects_bad_shards_up_front(shard_files, tmp_path):
    broken = tmp_path / "broken.tok"
    broken.write_bytes(shard_files[0].read_bytes()[:-9])
    with pytest.raises(GocramError, match="broken.tok: token shard truncated"):
        ShardDataset([shard_files[0], broken], seq_len=T, batch=B, seed=0)
    with pytest.raises(GocramError, match="another tokenizer"):
        ShardDataset(shard_files, seq_len=T, batch=B, seed=0, tokenizer_sha256="00" * 32)
    with pytest.raises(ConfigError, match="unknown data layout"):
        ShardDataset(shard_files, layout="nope", seq_len=T, batch=B, seed=0)
    assert TokenShard.open(shard_files[1]).n_docs == len(LENGTHS) - 12


@pytest.fixture(scope="module")
def built_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("built_for_training")
    write_stack(root / "in.parquet", real_rows(90, repos=30))
    out = root / "corpus"
    build_corpus(f"parquet:{root}/in.parquet", out, build_options(overrides=[
        "near_dedup.num_perm=64", "split.val_frac=0.25", "split.test_frac=0.1"]))
    return out


def test_prepare_uses_the_corpus_split_and_document_offsets(built_corpus, cache_dir):
    cfg = load_config("tiny", [f"data.corpus={built_corpus}", f"data.cache_dir={cache_dir}",
                               "model.vocab_size=400", "eval.max_bytes=30000"])
    data = prepare_data(cfg.data, cfg.eval, cfg.model.vocab_size)
    meta = data.meta
    assert meta["split"].startswith("corpus") and meta["val_set_files"] >= 1
    assert data.train_offsets[-1] == len(data.train) and data.val_offsets[-1] == len(data.val)
    assert len(data.train_offsets) - 1 == meta["train_files"]
    report = json.loads((built_corpus / "report.json").read_text())
    assert meta["train_files"] == report["splits"]["train"]["files"]
    assert meta["val_files_held_out"] == report["splits"]["val"]["files"]


@pytest.mark.parametrize("layout, extra", [
    ("concat", []), ("padded", []), ("packed", ["impl.attention=math", "model.position=rope"]),
])
def test_trainer_runs_each_layout(layout, extra, tmp_path, small_overrides):
    cfg = load_config("tiny", small_overrides + [f"data.layout={layout}", "train.clock=steps",
                                                 "train.max_steps=3", "impl.log_every_steps=1"] + extra)
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.run()
    assert result["status"] == "ok" and result["steps"] == 3
    assert type(trainer.sampler) is LAYOUTS.get(layout)
    full = 3 * 4 * 64  # steps * micro_batch * seq_len
    pad = trainer.sampler.pad_tokens
    assert pad == round(trainer.sampler.padding_fraction * full)
    if layout == "packed":  # padding predicts nothing, nor a piece's last token unless it ends a row
        assert result["tokens"] <= full - pad
    else:  # padding is not counted as work
        assert result["tokens"] == full - pad
