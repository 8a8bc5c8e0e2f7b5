"""What every source yields: one file with its provenance, in The Stack's terms."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace

from gocram.data.corpus import git_blob_sha, line_stats


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


def from_stack_row(row: dict, source: str) -> SourceFile:
    """A SourceFile from a Stack-schema row (The Stack's own names or gocram's)."""
    licenses = row.get("licenses") or row.get("max_stars_repo_licenses") or []
    content = row.get("content")
    return SourceFile(
        source=source,
        repo=row.get("max_stars_repo_name") or row.get("package") or "unknown",
        path=row.get("max_stars_repo_path") or row.get("hexsha") or "",
        text=content,
        licenses=tuple(licenses),
        stars=row.get("max_stars_count"),
        version=row.get("package_version"),
        package=row.get("package"),
        problem=None if isinstance(content, str) else "no_content",
    )
