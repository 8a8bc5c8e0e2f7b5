"""Redaction finds what real pipelines find (issue 19): detect-secrets plus the cases it misses,
measured on a planted-secrets set; innocent Go is left alone; the measurement script works."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gocram.data.corpus.redact import KINDS, redact
from gocram.data.corpus.redact_eval import main, planted_files, planted_recall
from tests.datagen import GO, stack_row, write_stack

PLANTED = planted_files()


@pytest.mark.parametrize("item", PLANTED, ids=[f"{p.kind}-{p.shape}" for p in PLANTED])
def test_every_planted_secret_is_redacted_and_counted_as_its_kind(item):
    counts: Counter = Counter()
    out = redact(item.text, KINDS, counts, item.path)
    assert item.secret not in out
    assert counts[item.kind] >= 1, dict(counts)
    assert "func version() string" in out and f"package {item.kind.replace('_', '')}" in out


def test_the_planted_set_covers_every_case_of_the_issue():
    shapes = {(p.kind, p.shape) for p in PLANTED}
    for case in [("aws_secret_key", "const"), ("password", "assign"), ("private_key", "no_end_line"),
                 ("hf_token", "const"), ("openai_key", "const"), ("gitlab_token", "const"),
                 ("jwt", "const"), ("basic_auth", "literal"), ("url_password", "postgres")]:
        assert case in shapes
    assert {p.kind for p in PLANTED} == set(KINDS)
    assert planted_files() == PLANTED  # seeded: the same set every time


def test_a_pem_block_without_its_end_line_goes_whole_and_the_code_after_it_stays():
    body = "\n".join(["MIIEowIBAAKCAQEA7bq98vTqYvh3aAXlhqOnFoP2pGfDiYtq1Ya5t3kLAm7gTB0X"] * 4)
    text = (f"package k\n\nconst key = `-----BEGIN RSA PRIVATE KEY-----\n{body}\n`\n\n"
            "func Use() string { return key }\n")
    counts: Counter = Counter()
    out = redact(text, KINDS, counts)
    assert "MIIEowIBAAKCAQEA" not in out and counts == {"private_key": 1}
    assert out.endswith("`\n\nfunc Use() string { return key }\n")


def test_detect_secrets_is_what_finds_the_keys_gocram_has_no_pattern_for():
    # A SendGrid key: no gocram pattern, one of detect-secrets' plugins.
    key = "SG." + "a1B2c3D4e5F6g7H8i9J0kL" + "." + "m1N2o3P4q5R6s7T8u9V0w1X2y3Z4a5B6c7D8e9F0g1H"
    counts: Counter = Counter()
    out = redact(f'package m\n\nconst sendgrid = "{key}"\n', KINDS, counts)
    assert key not in out and counts == {"api_key": 1}
    assert redact(f'package m\n\nconst sendgrid = "{key}"\n', tuple(k for k in KINDS if k != "api_key"),
                  Counter()) == f'package m\n\nconst sendgrid = "{key}"\n'


@pytest.mark.parametrize("text", [
    'password := r.FormValue("password")',
    'if cfg.Password == "" {\n\treturn errNoPassword\n}',
    'const passwordEnv = "DB_PASSWORD"',
    'secretName := fmt.Sprintf("%s-tls", name)',
    'dsn := fmt.Sprintf("postgres://%s:%s@%s/%s", user, pass, host, db)',
    'u := "postgres://user:password@localhost/db"',
    'req.SetBasicAuth(user, pass)',
    'tok := token.NewFileSet()\nkey := "k"',
    'const sha = "3f786850e387550fdab836ed7e6dc881de23001b" // aws-sdk-go commit',
    'var Password = flag.String("password", "", "the password")',
])
def test_innocent_go_is_left_alone(text):
    counts: Counter = Counter()
    assert redact(text, KINDS, counts) == text and not counts


def test_redaction_is_deterministic_and_idempotent():
    text = "\n".join(p.text for p in PLANTED)
    first, again = Counter(), Counter()
    out = redact(text, KINDS, first)
    assert redact(text, KINDS, again) == out and first == again
    assert redact(out, KINDS, Counter()) == out  # placeholders are not secrets


def test_the_measurement_writes_recall_and_sample_touch(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    leaky = 'package c\n\nvar cfg = Config{\n\tUser: "app",\n\tPassword: "Zq8!rT4wLp",\n}\n'
    write_stack(corpus / "chunk-00000.parquet", [stack_row(GO, "a", "a.go"), stack_row(leaky, "b", "b.go")])
    out = tmp_path / "results"
    assert main(["--corpus", str(corpus), "--out", str(out)]) == 0
    planted = json.loads((out / "planted.json").read_text())
    assert planted == json.loads(json.dumps(planted_recall(PLANTED)))
    assert planted["recall"] == 1.0 and all(e["recall"] == 1.0 for e in planted["by_kind"].values())
    sample = json.loads((out / "sample.json").read_text())
    assert sample["files"] == 2 and sample["files_touched"] == 1 and sample["redactions"] == {"password": 1}
    assert sample["examples"]["password"][0]["file"] == "b/b.go"
    summary = (out / "summary.md").read_text()
    assert "| password | 4 | 4 | 1.00 | - |" in summary and "2 files" in summary
