"""How well redaction works: recall on planted secrets, and what it touches in real code.

    python -m gocram.data.corpus.redact_eval [--corpus corpus/sample] [--out results/redaction]

writes OUT/planted.json (per kind: planted, caught, recall, and each miss), OUT/sample.json (on
the corpus: files and bytes, files touched, redactions per kind, a few examples per kind with
their context, seconds taken) and OUT/summary.md (both, as tables; docs/data.md quotes it).

The planted set is generated here, not stored: realistic Go files, each with one secret of one
kind in one of the shapes real code has (a const, a struct literal, a call argument, a raw
string). The values are random (seeded), so no real credential is ever in the repository.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gocram.data.corpus.docs import iter_parquet_rows
from gocram.data.corpus.redact import KINDS, redact

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, kw_only=True)
class Planted:
    kind: str
    shape: str
    path: str
    text: str
    secret: str  # the string that must not survive redaction


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(rng: random.Random, n: int) -> str:
    return _rand(rng, n, string.ascii_letters + string.digits + "-_")


def _jwt(rng: random.Random) -> str:
    import base64

    def seg(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return (seg({"alg": "HS256", "typ": "JWT"}) + "." +
            seg({"sub": _rand(rng, 10, string.digits), "name": "svc", "iat": rng.randrange(10**9, 2 * 10**9)})
            + "." + _b64url(rng, 43))


def _pem_body(rng: random.Random, lines: int) -> str:
    return "\n".join(_rand(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(lines))


def _wrap(package: str, body: str, imports: str = "") -> str:
    head = f"// Package {package} talks to the backend.\npackage {package}\n\n"
    if imports:
        head += f"import (\n{imports})\n\n"
    return head + body + "\nfunc version() string { return \"1.4.2\" }\n"


def planted_files(seed: int = 0) -> list[Planted]:
    """The planted set: for every kind the redactor covers, several shapes (deterministic)."""
    rng = random.Random(seed)
    items: list[Planted] = []

    def add(kind: str, shape: str, secret: str, body: str, imports: str = "") -> None:
        name = f"{kind}_{shape}"
        items.append(Planted(kind=kind, shape=shape, path=f"planted/{name}.go", secret=secret,
                             text=_wrap(kind.replace("_", ""), body, imports)))

    for shape in ("const", "struct", "call"):
        akid = "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits)
        secret = _rand(rng, 40, string.ascii_letters + string.digits + "+/")
        while not (any(c.isupper() for c in secret) and any(c.isdigit() for c in secret)):
            secret = _rand(rng, 40, string.ascii_letters + string.digits + "+/")
        body = {
            "const": f'const (\n\tawsAccessKeyID     = "{akid}"\n\tawsSecretAccessKey = "{secret}"\n)\n',
            "struct": (f'var creds = Credentials{{\n\tAccessKeyID:     "{akid}",\n'
                       f'\tSecretAccessKey: "{secret}",\n\tRegion: "eu-west-1",\n}}\n'),
            "call": (f'func client() *s3.Client {{\n\treturn s3.New(credentials.NewStaticCredentials(\n'
                     f'\t\t"{akid}", "{secret}", ""))\n}}\n'),
        }[shape]
        add("aws_access_key", shape, akid, body)
        add("aws_secret_key", shape, secret, body)

    for shape, template in (
        ("assign", 'var dbPassword = "{s}"\n'),
        ("short_decl", 'func connect() {{\n\tdbPassword := "{s}"\n\topen(dbPassword)\n}}\n'),
        ("struct", 'var cfg = Config{{\n\tUser:     "app",\n\tPassword: "{s}",\n}}\n'),
        ("const_secret", 'const clientSecret = "{s}"\n'),
    ):
        pw = _rand(rng, 6) + rng.choice("!#%&*") + _rand(rng, 5)
        add("password", shape, pw, template.format(s=pw))

    for shape in ("raw_string", "concat", "no_end_line"):
        body64 = _pem_body(rng, 6)
        label = rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"])
        if shape == "raw_string":
            body = f"const testKey = `-----BEGIN {label}-----\n{body64}\n-----END {label}-----\n`\n"
        elif shape == "concat":
            parts = "".join(f'\t"{line}\\n" +\n' for line in body64.split("\n"))
            body = (f'var signingKey = "-----BEGIN {label}-----\\n" +\n{parts}'
                    f'\t"-----END {label}-----\\n"\n')
        else:  # truncated when the file was copied: no END line
            body = f"const leakedKey = `-----BEGIN {label}-----\n{body64}\n`\n"
        add("private_key", shape, body64.split("\n")[2], body)

    tokens = {
        "github_token": lambda: "ghp_" + _rand(rng, 36),
        "gitlab_token": lambda: "glpat-" + _b64url(rng, 20),
        "hf_token": lambda: "hf_" + _rand(rng, 34),
        "openai_key": lambda: "sk-proj-" + _b64url(rng, 48),
        "slack_token": lambda: f"xoxb-{_rand(rng, 12, string.digits)}-{_rand(rng, 12, string.digits)}-"
                               + _rand(rng, 24),
        "stripe_key": lambda: "sk_live_" + _rand(rng, 24),
        "google_api_key": lambda: "AIza" + _b64url(rng, 35),
        "jwt": lambda: _jwt(rng),
    }
    for kind, make in tokens.items():
        for shape, template in (
            ("const", 'const apiToken = "{s}"\n'),
            ("header", 'func auth(req *http.Request) {{\n'
                       '\treq.Header.Set("Authorization", "Bearer {s}")\n}}\n'),
        ):
            secret = make()
            add(kind, shape, secret, template.format(s=secret), '\t"net/http"\n')

    # Service keys only detect-secrets' plugins know (gocram has no pattern for them).
    hexdigits = "0123456789abcdef"
    services = {
        "sendgrid": lambda: f"SG.{_b64url(rng, 22)}.{_b64url(rng, 43)}",
        "twilio": lambda: "SK" + _rand(rng, 32, hexdigits),
        "telegram": lambda: f"{rng.randrange(10**8, 10**9)}:{_b64url(rng, 35)}",
        "mailchimp": lambda: _rand(rng, 32, hexdigits) + f"-us{rng.randrange(1, 20)}",
    }
    for shape, make in services.items():
        secret = make()
        add("api_key", shape, secret, f'var {shape}Key = "{secret}"\n')

    for shape, template in (
        ("literal", 'func login(req *http.Request) {{\n\treq.SetBasicAuth("admin", "{s}")\n}}\n'),
        ("spaced", 'func login(r *http.Request) {{\n\tr.SetBasicAuth( user , "{s}" )\n}}\n'),
    ):
        pw = _rand(rng, 10) + "9"
        add("basic_auth", shape, pw, template.format(s=pw), '\t"net/http"\n')

    for shape, template in (
        ("postgres", 'const dsn = "postgres://app:{s}@db.internal:5432/app?sslmode=disable"\n'),
        ("mysql", 'func open() {{\n\tsql.Open("mysql", "root:{s}@tcp(db:3306)/shop?parseTime=true")\n}}\n'),
        ("redis", 'var redisURL = "redis://default:{s}@cache.internal:6379/0"\n'),
    ):
        pw = _rand(rng, 12)
        add("url_password", shape, pw, template.format(s=pw), '\t"database/sql"\n')

    for shape, template in (
        ("comment", "// Maintainer: {s}\n"),
        ("const", 'const support = "{s}"\n'),
    ):
        low = string.ascii_lowercase
        email = f"{_rand(rng, 6, low)}.{_rand(rng, 5, low)}@corp-mail.com"
        add("email", shape, email, template.format(s=email))

    for shape, template in (("const", 'const upstream = "{s}"\n'),
                            ("dial", 'var conn, _ = net.Dial("tcp", "{s}:443")\n')):
        ip = f"{rng.randrange(11, 99)}." + ".".join(str(rng.randrange(1, 250)) for _ in range(3))
        add("ip_address", shape, ip, template.format(s=ip), '\t"net"\n')
    return items


def planted_recall(items: list[Planted]) -> dict:
    """Per kind: planted, caught (the secret is gone from the output), recall, misses."""
    by_kind: dict[str, dict] = {}
    for item in items:
        counts: Counter = Counter()
        out = redact(item.text, KINDS, counts, item.path)
        entry = by_kind.setdefault(item.kind, {"planted": 0, "caught": 0, "missed": []})
        entry["planted"] += 1
        if item.secret in out:
            entry["missed"].append(item.shape)
        else:
            entry["caught"] += 1
    for entry in by_kind.values():
        entry["recall"] = entry["caught"] / entry["planted"]
    total = sum(e["planted"] for e in by_kind.values())
    caught = sum(e["caught"] for e in by_kind.values())
    return {"planted": total, "caught": caught, "recall": caught / total, "by_kind": by_kind}


def _context(before: str, after: str, at: int, width: int = 60) -> str:
    """The redacted line around the first difference, for a person to judge the hit."""
    start = before.rfind("\n", 0, at) + 1
    end = after.find("\n", at)
    return after[start:end if end >= 0 else None][:width * 2].strip()


def sample_touch(corpus: Path, examples_per_kind: int = 5) -> dict:
    """Redact every file of a built corpus; count the files changed and what changed them."""
    files = bytes_in = touched = 0
    counts: Counter = Counter()
    files_by_kind: Counter = Counter()
    examples: dict[str, list[dict]] = {}
    paths = sorted(corpus.glob("*.parquet"))
    t0, cpu0 = time.perf_counter(), time.process_time()
    for path in paths:
        for row in iter_parquet_rows(path, columns=["content", "max_stars_repo_name", "max_stars_repo_path"]):
            text = row["content"]
            files += 1
            bytes_in += len(text.encode("utf-8"))
            here: Counter = Counter()
            out = redact(text, KINDS, here, row["max_stars_repo_path"] or "file.go")
            if out == text:
                continue
            touched += 1
            counts.update(here)
            for kind in sorted(here):
                files_by_kind[kind] += 1
                shown = examples.setdefault(kind, [])
                if len(shown) < examples_per_kind:  # that kind alone, so the line shown is its hit
                    alone = redact(text, (kind,), Counter(), row["max_stars_repo_path"] or "file.go")
                    at = next((i for i, (a, b) in enumerate(zip(text, alone, strict=False)) if a != b),
                              min(len(text), len(alone)))
                    shown.append({"file": f"{row['max_stars_repo_name']}/{row['max_stars_repo_path']}",
                                  "line": _context(text, alone, at)})
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    shown_corpus = corpus.resolve()
    if shown_corpus.is_relative_to(REPO_ROOT):
        shown_corpus = shown_corpus.relative_to(REPO_ROOT)
    return {"corpus": str(shown_corpus), "files": files, "bytes": bytes_in, "files_touched": touched,
            "touched_fraction": touched / files if files else 0.0,
            "redactions": dict(sorted(counts.items())), "files_by_kind": dict(sorted(files_by_kind.items())),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "mb_per_s": round(bytes_in / 1e6 / seconds, 2) if seconds else None,
            "examples": examples}


def summary_markdown(planted: dict, sample: dict) -> str:
    lines = ["# Redaction: planted-secrets recall and what it touches in real code", "",
             "Written by `python -m gocram.data.corpus.redact_eval`; do not edit by hand.", "",
             f"Planted set: {planted['planted']} files, {planted['caught']} caught "
             f"(recall {planted['recall']:.3f}).", "",
             "| kind | planted | caught | recall | missed shapes |", "|---|---|---|---|---|"]
    for kind, e in sorted(planted["by_kind"].items()):
        lines.append(f"| {kind} | {e['planted']} | {e['caught']} | {e['recall']:.2f} | "
                     f"{', '.join(e['missed']) or '-'} |")
    lines += ["", f"Sample corpus `{sample['corpus']}`: {sample['files']:,} files "
              f"({sample['bytes'] / 1e6:.1f} MB), {sample['files_touched']:,} touched "
              f"({100 * sample['touched_fraction']:.2f}%), in {sample['seconds']} s wall-clock, "
              f"{sample['cpu_seconds']} s CPU ({sample['mb_per_s']} MB/s wall-clock; the examples "
              "include reading the parquet).", "",
              "| kind | redactions | files |", "|---|---|---|"]
    for kind, n in sample["redactions"].items():
        lines.append(f"| {kind} | {n} | {sample['files_by_kind'][kind]} |")
    lines += ["", "Examples (the first files each kind touched, that kind's first hit):", ""]
    for kind, shown in sorted(sample["examples"].items()):
        for e in shown:
            line = e["line"].replace("`", "'")
            lines.append(f"- {kind}: `{e['file']}`: `{line}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(REPO_ROOT / "corpus" / "sample"))
    ap.add_argument("--out", default=str(REPO_ROOT / "results" / "redaction"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    planted = planted_recall(planted_files())
    (out / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    sample = sample_touch(Path(args.corpus))
    (out / "sample.json").write_text(json.dumps(sample, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(planted, sample))
    print(summary_markdown(planted, sample))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
