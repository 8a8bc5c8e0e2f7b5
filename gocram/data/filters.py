"""Stack-style file filters: each returns the reason a document is dropped, or None to keep it."""

from __future__ import annotations

import re

from gocram.data.corpus import Doc, line_stats

GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)
SKIPPED_DIRS = ("testdata", "vendor", "third_party")
PERMISSIVE_LICENSES = (
    "apache-2", "expat", "mit", "bsd-2", "bsd-3", "isc", "public-domain", "wtfpl", "go",
    "cc0", "unlicense", "zlib",
)

MAX_BYTES = 1_000_000
MAX_LINE = 1000
MAX_AVG_LINE = 100
MIN_ALNUM = 0.25


def is_permissive(license_name: str | None) -> bool:
    if not license_name:
        return False
    name = license_name.lower()
    return any(name == p or name.startswith(p + "-") or name.startswith(p + ".") or
               name.startswith(p + "+") or name.startswith(p + "~") for p in PERMISSIVE_LICENSES)


def drop_reason(doc: Doc) -> str | None:
    parts = doc.path.split("/")
    if any(part in SKIPPED_DIRS for part in parts[:-1]):
        return "excluded_dir"
    if not doc.path.endswith(".go"):
        return "extension"
    size = len(doc.text.encode("utf-8"))
    if size == 0:
        return "empty"
    if size > MAX_BYTES:
        return "too_large"
    if "\x00" in doc.text:
        return "binary"
    if doc.path.endswith(".pb.go") or GENERATED.search(doc.text[:4096]):
        return "generated"
    avg_line, max_line, alnum = line_stats(doc.text)
    if max_line > MAX_LINE:
        return "max_line_length"
    if avg_line > MAX_AVG_LINE:
        return "avg_line_length"
    if alnum < MIN_ALNUM:
        return "alphanum_fraction"
    return None
