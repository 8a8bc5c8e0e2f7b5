"""Stack-style file filters: each check returns the reason a file is dropped, or None to keep it.

Checks run cheapest first (path, licence, size before scanning the text), and the first reason
wins, so every dropped file is counted under exactly one reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gocram.data.corpus.docs import line_stats
from gocram.data.corpus.options import PERMISSIVE_LICENSES, FilterConfig
from gocram.data.corpus.records import SourceFile

GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)
BINDATA = re.compile(r"func bindataRead\(|^// bindata\.go|_bindata = map\[string\]func", re.MULTILINE)
# A line holding nothing but literals and commas: numbers, hex, runes, short strings.
LITERAL_LINE = re.compile(
    r"""^\s*(?:(?:0[xX][0-9a-fA-F_]+|[-+]?\d[\d_.eE+-]*|'(?:\\.|[^'])+'|"(?:\\.|[^"])*")\s*,\s*)+"""
    r"""(?:0[xX][0-9a-fA-F_]+|[-+]?\d[\d_.eE+-]*|'(?:\\.|[^'])+'|"(?:\\.|[^"])*")?\s*,?\s*$""")
LITERAL_START = re.compile(r"^[ \t]*[-+0-9\"']", re.MULTILINE)  # lines that could be literal-only
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def is_permissive(license_name: str | None, allow=None) -> bool:
    """True when the licence name starts with an allow-listed prefix (case-insensitive)."""
    if not license_name:
        return False
    name = license_name.lower()
    return any(name == p or name.startswith(p + "-") or name.startswith(p + ".") or
               name.startswith(p + "+") or name.startswith(p + "~") or name.startswith(p + " ")
               for p in (PERMISSIVE_LICENSES if allow is None else allow))


def _path(f: SourceFile, cfg: FilterConfig) -> str | None:
    ext = f.path.rsplit(".", 1)[-1] if "." in f.path.rsplit("/", 1)[-1] else ""
    if ext not in cfg.extensions:
        return "extension"
    if any(part in cfg.excluded_dirs for part in f.path.split("/")[:-1]):
        return "excluded_dir"
    if cfg.drop_tests and f.path.endswith("_test.go"):
        return "test_file"
    return None


def _license(f: SourceFile, cfg: FilterConfig) -> str | None:
    if not cfg.license_allow:
        return None
    ok = f.licenses and all(is_permissive(lic, cfg.license_allow) for lic in f.licenses)
    return None if ok else "license"


def _stars(f: SourceFile, cfg: FilterConfig) -> str | None:
    return "stars" if cfg.min_stars and (f.stars or 0) < cfg.min_stars else None


def _size(f: SourceFile, cfg: FilterConfig) -> str | None:
    size = f.n_bytes
    if size < cfg.min_bytes:
        return "too_small"
    if cfg.max_bytes and size > cfg.max_bytes:
        return "too_large"
    return None


def _binary(f: SourceFile, cfg: FilterConfig) -> str | None:
    head = f.text[:8192]
    if "\x00" in head or len(CONTROL.findall(head)) > 0.01 * max(len(head), 1):
        return "binary"
    return None


def _generated(f: SourceFile, cfg: FilterConfig) -> str | None:
    if not cfg.drop_generated:
        return None
    if f.path.endswith(".pb.go") or GENERATED.search(f.text[:4096]):
        return "generated"
    if "bindata" in f.path.rsplit("/", 1)[-1] or ("bindata" in f.text and BINDATA.search(f.text)):
        return "bindata"
    return None


def _literal_table(f: SourceFile, cfg: FilterConfig) -> str | None:
    if not cfg.max_literal_fraction:
        return None
    lines = [line for line in f.text.splitlines() if line.strip()]
    if len(lines) < cfg.literal_min_lines:
        return None
    if len(LITERAL_START.findall(f.text)) <= cfg.max_literal_fraction * len(lines):
        return None  # not enough candidate lines: skip the per-line match
    literal = sum(1 for line in lines if LITERAL_LINE.match(line))
    return "literal_table" if literal > cfg.max_literal_fraction * len(lines) else None


def _lines(f: SourceFile, cfg: FilterConfig) -> str | None:
    avg_line, max_line, alnum = line_stats(f.text)
    if cfg.max_line_length and max_line > cfg.max_line_length:
        return "max_line_length"
    if cfg.max_avg_line_length and avg_line > cfg.max_avg_line_length:
        return "avg_line_length"
    if alnum < cfg.min_alphanum_fraction:
        return "alphanum_fraction"
    return None


CHECKS: tuple[Callable[[SourceFile, FilterConfig], str | None], ...] = (
    _path, _license, _stars, _size, _binary, _generated, _literal_table, _lines,
)


def drop_reason(f: SourceFile, cfg: FilterConfig | None = None) -> str | None:
    """Why `f` is dropped (a reason name), or None when it passes every filter."""
    if f.problem:
        return f.problem
    cfg = cfg or FilterConfig()
    for check in CHECKS:
        reason = check(f, cfg)
        if reason:
            return reason
    return None
