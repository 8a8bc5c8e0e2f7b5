"""Decontamination: drop training files that share a long n-gram with an evaluation problem.

The n-grams are runs of `n` whitespace-separated tokens of code, taken from HumanEval-X Go
(prompt + canonical solution, as one text so n-grams spanning both count) and MultiPL-E Go
prompts. A file sharing any one of them is dropped, and the report names the problem and n-gram.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from gocram.core.errors import GocramError

REPO_ROOT = Path(__file__).resolve().parents[3]
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
# Go keywords and predeclared names: an n-gram made only of these (and short names) is an idiom
# such as `for i := 0; i < n; i++ {`, found in any Go tree.
GO_WORDS = frozenset("""
break case chan const continue default defer else fallthrough for func go goto if import interface
map package range return select struct switch type var any bool byte comparable complex64 complex128
error float32 float64 int int8 int16 int32 int64 rune string uint uint8 uint16 uint32 uint64 uintptr
true false iota nil append cap clear close complex copy delete imag len make max min new panic print
println real recover
""".split())


@dataclass(frozen=True)
class Match:
    task: str  # e.g. "humaneval-x/Go/12" or "multipl-e/HumanEval_12_longest"
    ngram: str


HUMANEVAL_GLOB = "humaneval*go*.jsonl*"  # HumanEval-X Go
MULTIPLE_GLOB = "multiple_*go*.jsonl*"  # MultiPL-E Go prompt sets


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, EOFError) as err:
        raise GocramError(f"{path}: not a readable JSONL evaluation file ({err})") from None


def eval_texts(eval_dir: str | Path) -> list[tuple[str, str]]:
    """(task name, text) for every protected evaluation text under eval_dir."""
    root = Path(eval_dir)
    if not root.is_absolute() and not root.is_dir():
        root = REPO_ROOT / root
    if not root.is_dir():
        raise GocramError(f"decontam.eval_dir: directory not found: {eval_dir}")
    texts = []
    for path in sorted(root.glob(HUMANEVAL_GLOB)):
        for row in read_jsonl(path):
            texts.append((f"humaneval-x/{row['task_id']}", row["prompt"] + row["canonical_solution"]))
    for path in sorted(root.glob(MULTIPLE_GLOB)):
        for row in read_jsonl(path):
            texts.append((f"multipl-e/{path.stem.removeprefix('multiple_')}/{row['name']}", row["prompt"]))
    if not texts:
        raise GocramError(f"decontam.eval_dir={eval_dir}: no HumanEval-X or MultiPL-E Go files found")
    return texts


class Decontaminator:
    """Set membership of every n-gram of the protected texts, behind a two-token prefilter."""

    def __init__(self, texts: list[tuple[str, str]], n: int, *, min_identifier_len: int = 0):
        """min_identifier_len > 0 ignores protected n-grams without an identifier of at least
        that length outside GO_WORDS (idioms every Go tree contains)."""
        self.n = n
        self.ngrams: dict[str, str] = {}
        self.follow: dict[str, set[str]] = {}  # first token -> second tokens of some n-gram
        for task, text in texts:
            tokens = text.split()
            for i in range(len(tokens) - n + 1):
                key = " ".join(tokens[i:i + n])
                if min_identifier_len and not any(
                        len(w) >= min_identifier_len and w not in GO_WORDS
                        for w in IDENTIFIER.findall(key)):
                    continue
                self.ngrams.setdefault(key, task)
                self.follow.setdefault(tokens[i], set()).add(tokens[i + 1])

    @classmethod
    def from_eval_dir(cls, eval_dir: str | Path, n: int, *, min_identifier_len: int = 0) -> Decontaminator:
        return cls(eval_texts(eval_dir), n, min_identifier_len=min_identifier_len)

    def match(self, text: str) -> Match | None:
        """The first protected n-gram found in text, or None."""
        tokens = text.split()
        n, follow, ngrams = self.n, self.follow, self.ngrams
        for i in range(len(tokens) - n + 1):
            second = follow.get(tokens[i])
            if second is not None and tokens[i + 1] in second:
                key = " ".join(tokens[i:i + n])
                task = ngrams.get(key)
                if task is not None:
                    return Match(task=task, ngram=key)
        return None
