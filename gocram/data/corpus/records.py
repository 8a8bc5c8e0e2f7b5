"""What every source yields: one file with its provenance, in The Stack's terms."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace

from gocram.core.errors import GocramError
from gocram.data.corpus.docs import git_blob_sha, line_stats


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One input file. `problem` is set (and `text` is None) when it could not be read as text."""

    source: str  # the source kind: dir, debian, stack, parquet
    repo: str  # repository, Debian package, or tree name: the unit of the train/val/test split
    path: str  # relative to the repository root
    text: str | None
    licenses: tuple[str, ...] = ()
    stars: int | None = None
    version: str | None = None
    package: str | None = None
    problem: str | None = None  # e.g. invalid_utf8, binary, unreadable, symlink, too_large

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8")) if self.text is not None else 0

    def with_text(self, text: str) -> SourceFile:
        return replace(self, text=text)


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_stack_row(f: SourceFile, split: str) -> dict:
    """The Stack (dedup) columns, recomputed from the final (redacted) content."""
    data = f.text.encode("utf-8")
    avg_len, max_len, alnum = line_stats(f.text)
    return {
        "content": f.text,
        "size": len(data),
        "ext": os.path.splitext(f.path)[1].lstrip(".") or None,
        "lang": "Go",
        "max_stars_count": f.stars,
        "max_stars_repo_name": f.repo,
        "max_stars_repo_path": f.path,
        "licenses": list(f.licenses),
        "avg_line_length": avg_len,
        "max_line_length": max_len,
        "alphanum_fraction": alnum,
        "hexsha": git_blob_sha(data),
        "package": f.package,
        "package_version": f.version,
        "source": f.source,
        "split": split,
    }


def _text_or_none(row: dict, column: str, where: str) -> str | None:
    value = row.get(column)
    if value is None or isinstance(value, str):
        return value
    raise GocramError(f"{where}: column '{column}' holds {type(value).__name__} {value!r:.40}, "
                      "expected a string")


def row_licenses(row: dict, where: str) -> tuple[str, ...]:
    """The licences of a Stack row: a list of names (The Stack) or one name as a plain string;
    a string is one licence, never a sequence of one-letter licences."""
    column = "licenses" if row.get("licenses") else "max_stars_repo_licenses"  # empty: The Stack's
    value = row.get(column)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GocramError(f"{where}: column '{column}' holds {type(value).__name__} {value!r:.40}, "
                      "expected a list of strings")


def from_stack_row(row: dict, source: str, where: str | None = None) -> SourceFile:
    """A SourceFile from a Stack-schema row (The Stack's own names or gocram's); a value of the
    wrong type is a one-line GocramError naming the column (`where` names the file)."""
    where = where or source
    stars = row.get("max_stars_count")
    if stars is not None and (isinstance(stars, bool) or not isinstance(stars, int)):
        raise GocramError(f"{where}: column 'max_stars_count' holds {type(stars).__name__} {stars!r:.40}, "
                          "expected an integer")
    content = row.get("content")
    return SourceFile(
        source=source,
        repo=(_text_or_none(row, "max_stars_repo_name", where) or _text_or_none(row, "package", where)
              or "unknown"),
        path=_text_or_none(row, "max_stars_repo_path", where) or _text_or_none(row, "hexsha", where) or "",
        text=content,
        licenses=row_licenses(row, where),
        stars=stars,
        version=_text_or_none(row, "package_version", where),
        package=_text_or_none(row, "package", where),
        problem=None if isinstance(content, str) else "no_content",
    )
