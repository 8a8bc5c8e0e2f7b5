"""Scoring modes: sliding windows, stream, score-first adaptation, comparators, `eval bpb`."""

import json
import math

import numpy as np
import pytest
import torch

from gocram.config import load_config
from gocram.core.errors import GocramError
from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.windows import eval_chunks, sliding_windows
from gocram.eval.bpb import score_chunks
from gocram.eval.comparators import COMPRESSORS, compare
from gocram.eval.scoring import (
    AdaptConfig,
    OnlineAdapter,
    document_windows,
    score_adaptive,
    score_directory,
    token_nlls,
    windows_for,
)
from gocram.models.gpt import GPT
from tests.conftest import SMALL_MODEL, run_gocram
from tests.eval.conftest import go_tokenizer, make_run  # noqa: F401  (fixture)

T = 16
VOCAB = 64


@pytest.fixture(scope="module")
def model():
    cfg = load_config("tiny", [*SMALL_MODEL, f"model.seq_len={T}", f"model.vocab_size={VOCAB}",
                               "model.dropout=0.0"])
    torch.manual_seed(0)
    m = GPT(cfg.model)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)  # large weights: logits depend strongly on the context
    return m.eval()


def tokens(n, seed=0):
    return np.random.default_rng(seed).integers(1, VOCAB, n).astype(np.int64)


def scored_targets(windows):
    return np.concatenate([y[y != IGNORE_INDEX] for _, y in windows])


@pytest.mark.parametrize("n", [2, 5, 16, 17, 40, 97])
@pytest.mark.parametrize("stride", [1, 3, 8, 15, 16])
def test_sliding_scores_every_target_once_in_order(n, stride):
    ids = tokens(n)
    windows = sliding_windows(ids, T, stride)
    np.testing.assert_array_equal(scored_targets(windows), ids[1:])
    for x, y in windows:
        assert x.shape == y.shape == (T,)


@pytest.mark.parametrize("n", [2, 16, 17, 50])
def test_stride_T_is_exactly_chunked(n):
    ids = tokens(n)
    for (xa, ya), (xb, yb) in zip(sliding_windows(ids, T, T), eval_chunks(ids, T), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert windows_for(ids, T, 0)[0][0].tolist() == eval_chunks(ids, T)[0][0].tolist()


def stated_context_start(target: int, stride: int) -> int:
    """The issue's rule, written independently: target t (predicting ids[t + 1]) is scored by the
    first window that has it and has not scored it before: window 0 for t < T, else the first
    window k >= 1 (start k * stride) with k * stride + T > t."""
    if target < T:
        return 0
    return ((target - T) // stride + 1) * stride


@pytest.mark.parametrize("stride", [1, 4, 7, 16])
def test_sliding_nll_is_the_models_nll_given_the_stated_context(model, stride):
    ids = tokens(45, seed=stride)
    windows = sliding_windows(ids, T, stride)
    got = token_nlls(model, windows)
    for t in range(len(ids) - 1):
        start = stated_context_start(t, stride)
        if t >= T:
            assert t - start + 1 >= T - stride + 1  # the promise: at least T - S tokens before it
        context = torch.from_numpy(ids[start:t + 1])[None]
        logits = model(context)[0, -1]
        want = -torch.log_softmax(logits.float(), -1)[ids[t + 1]].item()
        assert got[t] == pytest.approx(want, rel=1e-4, abs=1e-5), t
    total = score_chunks(model, windows, np.ones(VOCAB, dtype=np.int64), batch=3, device="cpu")
    assert total.nll_nats == pytest.approx(got.sum(), rel=1e-5)
    assert total.tokens == len(ids) - 1


def test_stream_carries_context_across_files(model):
    docs = [np.concatenate([[0], tokens(n, seed=n)]) for n in (9, 30, 5)]
    per_file = document_windows(docs, T, stride=4)
    stream = document_windows(docs, T, stride=4, stream=True)
    assert len(per_file) == 3 and len(stream) == 1
    joined = np.concatenate(docs)
    np.testing.assert_array_equal(scored_targets(stream[0]), joined[1:])
    got = token_nlls(model, stream[0])
    # the first real token of file 2 is predicted from file 1's tokens and file 2's EOS
    t = len(docs[0])  # target index of file 2's first token (joined[t + 1])
    context = torch.from_numpy(joined[stated_context_start(t, 4):t + 1])[None]
    want = -torch.log_softmax(model(context)[0, -1], -1)[joined[t + 1]].item()
    assert got[t] == pytest.approx(want, rel=1e-4)
    alone = token_nlls(model, per_file[1])[0]
    assert alone != pytest.approx(got[t], rel=1e-3)  # without file 1 the number differs


def test_bad_stride_is_one_line_error():
    with pytest.raises(GocramError, match="stride 17"):
        windows_for(tokens(40), T, 17)
    with pytest.raises(GocramError, match="stride -1"):
        windows_for(tokens(40), T, -1)


# -- score-first adaptation -------------------------------------------------------------------------
ADAPT = AdaptConfig(lr=3e-3, optimizer="adam", steps=2)


def adapter_after(model, groups, learned):
    adapter = OnlineAdapter(model, ADAPT)
    for k in learned:
        adapter.learn(groups[k])
    return adapter


def test_a_windows_score_never_sees_its_own_step(model):
    docs = document_windows([tokens(70, seed=3)], T)  # one document, 5 windows
    windows = docs[0]
    _, per_group = score_adaptive(model, docs, np.ones(VOCAB, dtype=np.int64), ADAPT)
    groups = [[w] for w in windows]
    for k in range(1, len(groups)):
        # its own step removed: learning only the earlier windows reproduces the score
        assert adapter_after(model, groups, range(k)).score(groups[k]) == pytest.approx(
            per_group[k], rel=1e-6)
        # its own step added: the score would change, so the test above can fail
        assert adapter_after(model, groups, range(k + 1)).score(groups[k]) != pytest.approx(
            per_group[k], rel=1e-4)
        # the previous window's step removed: the score changes, so the steps do reach it
        skipped = [j for j in range(k) if j != k - 1]
        assert adapter_after(model, groups, skipped).score(groups[k]) != pytest.approx(
            per_group[k], rel=1e-4)
    # the first window is scored by the checkpoint's weights
    assert per_group[0] == pytest.approx(OnlineAdapter(model, ADAPT).score(groups[0]), rel=1e-6)


def test_adaptation_leaves_the_callers_model_alone_and_resets_per_file(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    docs = document_windows([tokens(40, seed=1), tokens(40, seed=2)], T)
    reset = AdaptConfig(lr=3e-3, steps=2, reset_per_file=True)
    _, per_group = score_adaptive(model, docs, np.ones(VOCAB, dtype=np.int64), reset)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    first_of_second = len(docs[0])
    fresh = OnlineAdapter(model, reset).score([docs[1][0]])
    assert per_group[first_of_second] == pytest.approx(fresh, rel=1e-6)
    _, carried = score_adaptive(model, docs, np.ones(VOCAB, dtype=np.int64), ADAPT)
    assert carried[first_of_second] != pytest.approx(fresh, rel=1e-4)


def test_adaptation_learns_a_repeating_stream(model):
    ids = np.tile(tokens(T, seed=9), 8)
    docs = document_windows([ids], T)
    plain = score_chunks(model, docs[0], np.ones(VOCAB, dtype=np.int64), batch=4, device="cpu")
    adapted, _ = score_adaptive(model, docs, np.ones(VOCAB, dtype=np.int64), ADAPT)
    assert adapted.tokens == plain.tokens
    assert adapted.nll_nats < 0.8 * plain.nll_nats


def test_adapt_config_names_the_bad_field():
    with pytest.raises(GocramError, match="optimizer 'lion'"):
        AdaptConfig(optimizer="lion")
    with pytest.raises(GocramError, match="lr"):
        AdaptConfig(lr=0)


# -- comparators ---------------------------------------------------------------------------------
def test_comparators_per_file_and_concatenated():
    shared = b"package main\n\nfunc handler(w http.ResponseWriter, r *http.Request) {\n}\n" * 3
    files = [shared + bytes([65 + i]) * 10 for i in range(6)]
    result = compare(files)
    assert result["bytes"] == sum(map(len, files)) and result["files"] == 6
    assert set(COMPRESSORS.names()) == {"xz -9e", "zstd -19 --long", "ppmd"}
    for name in COMPRESSORS.names():
        # files that repeat each other: one stream is far cheaper than six separate files
        assert result[name]["concatenated_bpb"] < 0.5 * result[name]["per_file_bpb"], name
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    assert compare([noise])["ppmd"]["concatenated_bpb"] > 7.9


# -- eval bpb on a directory -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, go_tokenizer):  # noqa: F811
    return make_run(tmp_path_factory.mktemp("scoring") / "run", go_tokenizer,
                    ["model.seq_len=32", "model.dropout=0.0"], std=0.05)


@pytest.fixture(scope="module")
def go_dir(go_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("godir")
    for i, path in enumerate(sorted(go_corpus.rglob("*.go"))[:4]):
        (out / f"p{i}").mkdir()
        (out / f"p{i}" / "a.go").write_text(path.read_text()[:1500])
    (out / "bad.go").write_bytes(b"\xff\xfe not utf-8")
    return out


def test_score_directory_modes_and_comparators(small_run, go_dir):
    base = score_directory(small_run, go_dir, device="cpu")
    assert base["files"] == 4 and base["skipped_files"] == 1 and "mode" not in base
    blobs = b"".join((go_dir / f"p{i}" / "a.go").read_bytes() for i in range(4))
    assert base["bytes"] == base["comparators"]["bytes"] == len(blobs)  # the very same bytes
    assert base["comparators"]["xz -9e"]["concatenated_bpb"] == pytest.approx(
        COMPRESSORS.get("xz -9e")(blobs) * 8 / len(blobs))
    same = score_directory(small_run, go_dir, stride=32, device="cpu", comparators=False)
    assert same["mode_bpb"] == pytest.approx(base["bpb"], rel=1e-6)
    stream = score_directory(small_run, go_dir, stream=True, stride=8, device="cpu",
                             comparators=False)
    assert stream["mode_tokens"] == base["tokens"] + 3  # the EOS before files 2..4 is coded too
    adapted = score_directory(small_run, go_dir, stream=True, device="cpu", comparators=False,
                              adapt=AdaptConfig(lr=1e-3))
    assert adapted["mode"]["adapt"]["lr"] == 1e-3 and math.isfinite(adapted["mode_bpb"])


def test_eval_bpb_cli(small_run, go_dir):
    done = run_gocram("eval", "bpb", "--checkpoint", str(small_run), "--dir", str(go_dir),
                      "--stride", "16", "--stream", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["mode"] == {"stride": 16, "stream": True, "adapt": None}
    assert {"xz -9e", "zstd -19 --long", "ppmd"} <= set(row["comparators"])
    bad = run_gocram("eval", "bpb", "--checkpoint", str(small_run), "--dir", str(go_dir),
                     "--stride", "33", "--device", "cpu")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "stride 33" in bad.stderr


def test_a_missing_comparator_is_reported_not_fatal(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no zstd program on this PATH
    result = compare([b"package main\n"])
    assert result["zstd -19 --long"]["concatenated_bpb"] is None
    assert "zstd" in result["zstd -19 --long"]["skipped"]
    assert result["xz -9e"]["concatenated_bpb"] > 0
