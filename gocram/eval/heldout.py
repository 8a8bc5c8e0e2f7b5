"""Our own completion benchmark from held-out Go: real functions whose packages were never trained on.

Each documented top-level function of the run's validation split (by package, as in training)
becomes a task: the model sees the file up to and including the doc comment and signature, and
completes the body (greedy by default). Scores per function:
- exact_match: the completion equals the real body (trailing whitespace ignored);
- edit_similarity: difflib's ratio of completion and real body (0..1; fuzzywuzzy's fuzz.ratio/100);
- syntax_ok: the file with the completed body still parses (`gofmt -e`). Type-checking
  (`go vet`) would need each package's other files and dependencies, which the corpus does
  not hold, so it is not attempted; `reference_syntax_ok` says how many original files parse.
"""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_text
from gocram.data.corpus.docs import read_corpus
from gocram.data.corpus.split import split_by_package, unit_hash
from gocram.eval.generate import SamplingConfig, generate
from gocram.eval.gofuncs import GoFunction, extract_functions

MAX_BODY_CHARS = 1500


def heldout_functions(corpus: str | Path, val_frac: float, salt: str, *, limit: int) -> list[GoFunction]:
    """Up to `limit` documented functions from held-out packages, in a fixed hashed order."""
    _, val = split_by_package(read_corpus(corpus), val_frac, salt)
    found = [f for doc in val for f in extract_functions(doc.text, f"{doc.repo}/{doc.path}")
             if len(f.body) <= MAX_BODY_CHARS]
    found.sort(key=lambda f: unit_hash(f"{f.source}:{f.name}:{f.signature}", "heldout"))
    return found[:limit]


def normalize(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def edit_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def gofmt_parses(source: str) -> bool:
    gofmt = shutil.which("gofmt")
    if gofmt is None:
        raise GocramError("gofmt not found on PATH: apt-get install golang-go")
    done = subprocess.run([gofmt, "-e"], input=source, capture_output=True, text=True, timeout=30)
    return done.returncode == 0


def score_function(fn: GoFunction, completion: str) -> dict:
    return {
        "source": fn.source, "name": fn.name,
        "exact_match": normalize(completion) == normalize(fn.body),
        "edit_similarity": edit_similarity(normalize(completion), normalize(fn.body)),
        "syntax_ok": gofmt_parses(fn.with_body(completion)),
        "reference_syntax_ok": gofmt_parses(fn.with_body(fn.body)),
        "completion": completion, "reference": fn.body,
    }


def run_heldout_benchmark(model, tokenizer, corpus, data_cfg, sampling: SamplingConfig, *,
                          max_functions: int = 100, out: str | Path | None = None) -> dict:
    functions = heldout_functions(corpus, data_cfg.val_frac, data_cfg.split_salt, limit=max_functions)
    if not functions:
        raise GocramError(f"{corpus}: no documented functions in the held-out packages")
    rows, stops = [], Counter()
    for fn in functions:
        (completion,) = generate(model, tokenizer, fn.prefix + fn.prompt, sampling, n=1)
        stops[completion.stop_reason] += 1
        rows.append(score_function(fn, completion.text))
    n = len(rows)
    summary = {
        "functions": n, "corpus": str(corpus),
        "exact_match": sum(r["exact_match"] for r in rows) / n,
        "edit_similarity": sum(r["edit_similarity"] for r in rows) / n,
        "syntax_ok": sum(r["syntax_ok"] for r in rows) / n,
        "reference_syntax_ok": sum(r["reference_syntax_ok"] for r in rows) / n,
        "stop_reasons": dict(stops), "sampling": sampling.__dict__,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("results.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
                           ("summary.json", json.dumps(summary, indent=1))):
            atomic_write_text(out / name, text)
    return summary
