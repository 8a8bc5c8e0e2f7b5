"""Measured numbers in the docs, checked against the artifact they came from.

A number typed into README.md or docs/*.md is wrapped in a marked span that names its source:

    <!-- from results/tokenizers.json rows[vocab_target=8192&tricks=digits].tokens -->N<!-- end -->
    <!-- from results/cpu-headline/amd-epyc-2-threads/table.csv [cell=baseline].bpb_mean -->N<!-- end -->
    <!-- from results/gpu/peak.json measured_over_datasheet *100 -->N%<!-- end -->

where N is the number as the reader sees it (e.g. with thousands commas, or rounded).

The path is relative to the repository root: under results/, or the report.json and manifest.json a
corpus build wrote beside its chunks (JSON, JSON lines or CSV: lines and CSV
rows are a list of objects). The selector walks the loaded value: `key`, a list index `3`, or
`[field=value&field=value]` picking the one object of a list whose fields match (as text); keys
may hold spaces (a CSV column like `Δ tokens/s`). An
optional `*FACTOR` scales the value (a fraction shown as a percentage). The span's text must hold
one number, and it must equal the artifact's value to the precision shown (a number shown with two
decimals may differ from the artifact's by up to half of 0.01). Artifact values that are text (a
table cell with a sign and a percent sign) are read as their first number. `check_docs` lists
every span that does not hold; tests run it.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

SPAN = re.compile(r"<!-- from (?P<path>\S+) (?P<selector>.+?)(?: \*(?P<factor>[0-9.e+-]+))? -->"
                  r"(?P<shown>.*?)<!-- end -->", re.DOTALL)
NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
STEP = re.compile(r"\[(?P<where>[^\]]*)\]|(?P<key>[^.\[\]]+)")


class SourceError(Exception):
    """A span's artifact or selector does not resolve to a number."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    where: str  # doc file:line
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def parse_number(text: str) -> tuple[float, int]:
    """(value, decimals shown) of the one number in `text`; commas group thousands, − is minus."""
    found = NUMBER.findall(text)
    if len(found) != 1:
        raise SourceError(f"expected one number in {text!r}, found {len(found)}")
    raw = found[0].replace(",", "").replace("−", "-")
    mantissa = raw.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if "e" in raw:  # 1.2e-6: the precision shown is relative to the exponent
        decimals -= int(raw.split("e")[1])
    return float(raw), decimals


def load_artifact(path: Path):
    if not path.is_file():
        raise SourceError(f"no artifact {path}")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    raise SourceError(f"{path}: artifacts are .json, .jsonl or .csv")


def select(value, selector: str):
    for match in STEP.finditer(selector):
        if match["where"] is not None:
            conditions = dict(part.split("=", 1) for part in match["where"].split("&"))
            if not isinstance(value, list):
                raise SourceError(f"[{match['where']}] needs a list, got {type(value).__name__}")
            hits = [item for item in value if isinstance(item, dict)
                    and all(str(item.get(k)) == v for k, v in conditions.items())]
            if len(hits) != 1:
                raise SourceError(f"[{match['where']}] matches {len(hits)} entries, not one")
            value = hits[0]
        elif isinstance(value, list) and match["key"].isdigit():
            value = value[int(match["key"])]
        elif isinstance(value, dict) and match["key"] in value:
            value = value[match["key"]]
        else:
            raise SourceError(f"no {match['key']!r} in the selected value")
    return value


def artifact_number(value) -> float:
    if isinstance(value, bool) or value is None:
        raise SourceError(f"the selected value is {value!r}, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_number(value)[0]
    raise SourceError(f"the selected value is a {type(value).__name__}, not a number")


def check_text(text: str, repo: Path, where: str) -> tuple[list[Problem], int]:
    """(problems, spans checked) for one document's text."""
    problems, spans = [], 0
    for span in SPAN.finditer(text):
        spans += 1
        line = text.count("\n", 0, span.start()) + 1
        try:
            shown, decimals = parse_number(span["shown"])
            actual = artifact_number(select(load_artifact(repo / span["path"]), span["selector"]))
            actual *= float(span["factor"] or 1)
        except (SourceError, ValueError, IndexError) as err:
            problems.append(Problem(where=f"{where}:{line}", message=str(err)))
            continue
        tolerance = 0.5 * 10.0 ** -decimals * (1 + 1e-9)
        if abs(shown - actual) > tolerance:
            problems.append(Problem(where=f"{where}:{line}", message=(
                f"shows {span['shown']!r} but {span['path']} {span['selector']} is {actual:.6g}")))
    return problems, spans


def doc_files(repo: Path) -> list[Path]:
    return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.is_file()]


def check_docs(repo: Path) -> tuple[list[Problem], int]:
    """(problems, spans checked) over README.md and docs/*.md."""
    problems, spans = [], 0
    for path in doc_files(repo):
        found, count = check_text(path.read_text(), repo, str(path.relative_to(repo)))
        problems += found
        spans += count
    return problems, spans
