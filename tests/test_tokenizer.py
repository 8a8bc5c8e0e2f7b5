"""The tokenizer lab: exactness for every trick, what each trick claims, the idiom miner, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Regex, pre_tokenizers

from gocram.config import DataConfig, load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.data.corpus.docs import read_corpus
from gocram.data.corpus.split import split_by_package
from gocram.data.tokens.tokenizer import (
    EOS,
    SPECIAL_TOKENS,
    TRICKS,
    eos_id,
    load_tokenizer,
    token_byte_lengths,
    train_bpe,
    train_bpe_with_idioms,
)
from gocram.data.tokens.tokenizer.core import MAX_IDIOM_SHARE, go_pre_tokenizer, train_plain_bpe
from gocram.data.tokens.tokenizer.idioms import byte_level, choose_count, rank_idioms, trie_regex
from gocram.data.tokens.tokenizer.stats import embedding_share, measure
from gocram.data.tokens.tokenizer.sweep import default_trick_sets, sweep
from gocram.data.tokens.tokenizer.tricks import parse_tricks, split_pattern
from tests.conftest import run_gocram

VOCAB = 600
AWKWARD = [
    'package x\n\n// Add adds.\nfunc Add(a, b int) int {\n\treturn a + b // "é"\n}\n',
    "\t\t\n  \x7f 世界 \U0001f600", "", "x", "\r\n\tif x {\r\n\t}\r\n",
    "s := `raw\nstring` + 'a' + '\\n' + \"q\\\"uote\"", "x := 1_000_000 + 0x1F + 3.5e-3i",
    "var a_b9 = c<<=2 &^ d<-ch ... 12345678901234567890",
    "literal <|endoftext|> and <|fim_prefix|> in a Go string",
]
TRICK_SETS = [(), *[parse_tricks((*t.requires, t.name)) for t in TRICKS.values()],
              ("go", "ws", "idioms"), tuple(TRICKS)]


@pytest.fixture(scope="module")
def split(go_corpus):
    docs = read_corpus(go_corpus)
    train, val = split_by_package(docs, 0.2, "gocram")
    return [d.text for d in train], [d.text for d in val]


@pytest.fixture(scope="module")
def trained(split):
    train, _ = split
    return {tricks: train_bpe_with_idioms(train, VOCAB, tricks) for tricks in TRICK_SETS}


def pieces(pattern: str, text: str) -> list[str]:
    splitter = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return [p for p, _ in splitter.pre_tokenize_str(text)]


def token_strings(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok.encode(text, add_special_tokens=False).ids]


@pytest.mark.parametrize("tricks", TRICK_SETS, ids=lambda t: ",".join(t) or "baseline")
def test_round_trip_and_exact_byte_lengths_on_every_val_file(trained, split, tricks):
    tok, _ = trained[tricks]
    lengths = token_byte_lengths(tok)
    assert tok.get_vocab_size() <= VOCAB
    _, val = split
    for text in val + AWKWARD:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
        assert lengths[ids].sum() == len(text.encode("utf-8"))
    assert all(lengths[tok.token_to_id(s)] == 0 for s in SPECIAL_TOKENS)
    assert eos_id(tok) == tok.token_to_id(EOS)


def test_baseline_pattern_is_gpt2(split, trained):
    """With no tricks the composed regex is GPT-2's: same tokens as ByteLevel's built-in regex."""
    train, val = split
    composed = train_plain_bpe(train, VOCAB, go_pre_tokenizer(split_pattern(())))
    composed.encode_special_tokens = True
    baseline, _ = trained[()]
    for text in val + AWKWARD:
        assert composed.encode(text).ids == baseline.encode(text).ids


def test_literal_special_token_text_is_plain_bytes_after_save_and_load(trained, tmp_path):
    tok, _ = trained[parse_tricks("go,ws,idioms")]
    tok.save(str(tmp_path / "t.json"))
    loaded = load_tokenizer(tmp_path / "t.json")
    text = "s := \"<|endoftext|>\""
    ids = loaded.encode(text, add_special_tokens=False).ids
    assert eos_id(loaded) not in ids
    assert token_byte_lengths(loaded)[ids].sum() == len(text.encode())


def test_added_non_special_tokens_count_their_utf8_bytes():
    tok, _ = train_bpe_with_idioms(["package main\n"] * 4, 300, "")
    tok.add_tokens(["世界"])
    ids = tok.encode("x 世界", add_special_tokens=False).ids
    assert tok.token_to_id("世界") in ids
    assert token_byte_lengths(tok)[ids].sum() == len("x 世界".encode())
    assert tok.decode(ids) == "x 世界"


def test_ws_makes_indent_and_tab_runs_single_tokens(trained):
    base, ws = split_pattern(()), split_pattern(("ws",))
    assert pieces(base, "\n\t\treturn") == ["\n\t", "\t", "return"]  # GPT-2 cuts the indent
    assert pieces(ws, "\n\t\treturn") == ["\n\t\t", "return"]
    assert pieces(ws, "a\t\t// c") == ["a", "\t\t", "//", " c"]
    tok, _ = trained[("ws",)]
    assert token_strings(tok, "\n\t\treturn x")[0] == "\n\t\t"
    assert "\n\t\t" not in token_strings(trained[()][0], "\n\t\treturn x")


def test_go_pattern_keeps_identifiers_operators_literals_and_comments():
    go = split_pattern(("go",))
    text = 'a_b1 := x<<=2 && y != z // note: it\'s "q"\ns := "a b" + \'s\' + `r t`'
    assert pieces(go, text) == [
        "a_b1", " :=", " x", "<<=", "2", " &&", " y", " !=", " z", " // note: it's \"q\"", "\n",
        "s", " :=", ' "a b"', " +", " 's'", " +", " `r t`",
    ]
    base = pieces(split_pattern(()), text)
    assert "a_b1" not in base and "'s" in base  # GPT-2 splits at '_' and reads 's as English


def test_digits_split_one_by_one():
    assert pieces(split_pattern(("go",)), "x = 12345") == ["x", " =", " 12345"]
    assert pieces(split_pattern(("go", "digits")), "x = 12345") == ["x", " =", " 1", "2", "3", "4", "5"]
    assert pieces(split_pattern(("digits",)), "v2 9") == ["v", "2", " 9"]


def test_prefix_and_closer():
    assert pieces(split_pattern(("go", "prefix")), "fmt.Println(&x)") == ["fmt", ".Println", "(&", "x", ")"]
    assert pieces(split_pattern(("go", "prefix")), "f(x, *p)") == ["f", "(x", ",", " *", "p", ")"]
    closer = split_pattern(("ws", "closer"))
    assert pieces(closer, "x\n\t}\n}") == ["x", "\n\t}", "\n}"]
    with pytest.raises(ConfigError, match="'closer' needs 'ws'"):
        parse_tricks("closer")


def test_rank_idioms_discounts_covered_runs_and_prefers_costly_pieces():
    runs = {("a", "b", "c"): 100, ("a", "b"): 100, ("x", "y"): 60}
    cost = {"a": 1, "b": 1, "c": 1, "x": 1, "y": 1}
    ranked = rank_idioms(runs, cost, limit=10)
    assert [i.pieces for i in ranked] == [("a", "b", "c"), ("x", "y")]  # a b was covered by a b c
    assert [i.gain for i in ranked] == [200, 60]
    assert len(rank_idioms(runs, cost, limit=1)) == 1
    costly = rank_idioms({("p", "q"): 10, ("x", "y"): 10}, {"p": 3, "q": 3, "x": 1, "y": 1}, 1)
    assert costly[0].text == "pq"


def test_choose_count_finds_the_cheapest_count():
    calls = []

    def cost(k):
        calls.append(k)
        return (k - 300) ** 2

    best = choose_count(1000, cost)
    assert abs(best - 300) <= 40 and len(calls) == len(set(calls)) <= 12
    assert choose_count(1000, lambda k: k) == 0  # idioms that never pay are not added
    assert choose_count(1000, lambda k: -k) == 1000


def test_trie_regex_guards_idiom_ends():
    idioms = ["return nil, err", "if err != nil {", "if err"]
    pattern = split_pattern(("go",), trie_regex(idioms, go_classes=True))
    assert pieces(pattern, "\treturn nil, err\n") == ["\t", "return nil, err", "\n"]
    assert pieces(pattern, "\treturn nil, errors.New(x)")[1:4] == ["return", " nil", ","]
    assert pieces(pattern, "if err != nil {\n")[0] == "if err != nil {"
    assert pieces(pattern, "if err == nil {\n")[0] == "if err"
    assert pieces(pattern, "if err != nil {}")[0] == "if err"  # '{}' is one punctuation run


def test_idiom_miner_finds_a_planted_idiom():
    """Random Go-like lines plus one planted statement: the miner must pick the statement."""
    rng = np.random.default_rng(0)
    words = [f"v{i}" for i in range(60)] + ["x", "y", "ok", "buf"]
    planted = "frob.Widget(ctx, 7)"
    files = []
    for _ in range(40):
        lines = []
        for _ in range(60):
            a, b, c = rng.choice(words, 3)
            lines.append(f"\t{a} := {b} + {c}" if rng.random() < 0.5 else f"\t{a}({b}, {c})")
            if rng.random() < 0.1:
                lines.append(f"\t{planted}")
        files.append("package p\n\nfunc F() {\n" + "\n".join(lines) + "\n}\n")
    tok, idioms = train_bpe_with_idioms(files, 420, "go,ws,idioms")
    texts = [i.text for i in idioms]
    assert planted in texts, texts[:10]
    assert tok.token_to_id(byte_level(planted)) is not None
    assert token_strings(tok, f"\n\t{planted}\n") == ["\n\t", planted, "\n"]
    assert not any("v59 := v3" in t for t in texts)  # a chance pair is never frequent enough


def test_idioms_mined_from_real_go_are_single_line_runs_and_encode_whole(trained):
    tok, idioms = trained[parse_tricks("go,ws,idioms")]
    assert idioms, "even the small corpus has a test-function idiom that pays for itself"
    for idiom in idioms:
        assert len(idiom.pieces) >= 2 and "\n" not in idiom.text
        assert idiom.text in token_strings(tok, f"\n\t{idiom.text}\n")


def test_config_validates_trick_names():
    assert DataConfig(tokenizer_tricks="ws, go").tokenizer_tricks == "ws, go"
    unknown = r"data.tokenizer_tricks: unknown tokenizer trick 'gox' \(did you mean 'go'"
    with pytest.raises(ConfigError, match=unknown):
        load_config("tiny", ["data.tokenizer_tricks=go,gox"])
    with pytest.raises(ConfigError, match="data.tokenizer_tricks: trick 'closer' needs 'ws'"):
        DataConfig(tokenizer_tricks="closer")
    with pytest.raises(ConfigError, match="data.tokenizer_tricks only applies"):
        DataConfig(tokenizer_tricks="go", tokenizer="t.json")
    with pytest.raises(ConfigError, match="unknown tokenizer trick 'nope'"):
        train_bpe(["x"], 300, "nope")
    with pytest.raises(GocramError, match="vocab size 100 is below 261"):
        train_bpe(["x"], 100)


def test_prepare_data_trains_with_the_configured_tricks(small_overrides):
    from gocram.data.tokens.prepare import prepare_data

    cfg = load_config(None, [*small_overrides, "data.tokenizer_tricks=go,ws"])
    data = prepare_data(cfg.data, cfg.eval, cfg.model.vocab_size)
    tok = load_tokenizer(data.tokenizer_path)
    assert "\n\t\t" in token_strings(tok, "{\n\t\tx()")
    plain = load_config(None, small_overrides)
    assert prepare_data(plain.data, plain.eval, 512).tokenizer_path != data.tokenizer_path


def test_measure_and_embedding_share(trained, split):
    tok, _ = trained[()]
    stats = measure(tok, split[1], min_s=0.01)
    assert stats.tokens == sum(len(tok.encode(t).ids) for t in split[1])
    assert 0 < stats.vocab_used <= 1 and stats.encode_mb_per_s > 0
    assert 1 < stats.bytes_per_token < 10
    tiny, small = embedding_share(8192, "tiny"), embedding_share(8192, "small")
    assert 0 < small < tiny < 1  # the same table is a smaller part of a bigger model
    assert embedding_share(8193, "tiny") > tiny  # padded to the next multiple of 64
    with pytest.raises(GocramError, match="broken: decode"):
        bad = train_bpe(["ab"] * 3, 300)
        bad.decoder = None  # byte-level tokens then decode to their visible spelling
        measure(bad, ["a b\n"], ["broken"], min_s=0)


def test_sweep_writes_table_plot_and_resumes(go_corpus, tmp_path):
    sets = [(), ("go", "ws", "idioms")]
    doc = sweep(go_corpus, tmp_path, [300, 400], sets, min_s=0.01)
    assert len(doc["rows"]) == 4
    md = (tmp_path / "tokenizers.md").read_text()
    assert "baseline (GPT-2 regex)" in md and "| go,ws,idioms |" in md
    assert f" / {int(400 * MAX_IDIOM_SHARE)} |" in md  # idioms kept / cap
    assert f"4 cells measured on: {doc['rows'][0]['environment']['device']}" in md
    assert (tmp_path / "tokenizers.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((tmp_path / "tokenizers.json").read_text())["rows"]
    cells = {(r["vocab_target"], r["tricks"]) for r in rows}
    assert cells == {(300, ""), (300, "go,ws,idioms"), (400, ""), (400, "go,ws,idioms")}
    again = sweep(go_corpus, tmp_path, [300, 400], sets, min_s=0.01)  # nothing left to do
    assert [r["train_s"] for r in again["rows"]] == [r["train_s"] for r in rows]
    assert default_trick_sets()[0] == () and ("ws", "closer") in default_trick_sets()


def test_cli_train_and_eval(go_corpus, tmp_path):
    out = tmp_path / "t.json"
    done = run_gocram("tokenizer", "train", "--corpus", str(go_corpus), "--vocab", "400",
                      "--tricks", "go,ws,idioms", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert load_tokenizer(out).get_vocab_size() <= 400
    done = run_gocram("tokenizer", "eval", "--tokenizer", str(out), "--corpus", str(go_corpus))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["split"] == "val" and report["round_trip"] == "exact" and report["bytes_per_token"] > 1
    bad = run_gocram("tokenizer", "train", "--corpus", str(go_corpus), "--tricks", "go,gox",
                     "--out", str(out))
    assert bad.returncode == 2 and "gocram: error: --tricks: unknown tokenizer trick 'gox'" in bad.stderr
    small = run_gocram("tokenizer", "train", "--corpus", str(go_corpus), "--vocab", "100",
                       "--out", str(out))
    assert small.returncode == 2 and "vocab size 100 is below 261" in small.stderr
    missing = run_gocram("tokenizer", "eval", "--tokenizer", str(tmp_path / "none.json"),
                         "--corpus", str(go_corpus))
    assert missing.returncode == 2 and "not a readable tokenizer.json" in missing.stderr
