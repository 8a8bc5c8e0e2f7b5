"""Go documents and the on-disk corpus format (parquet in The Stack's column schema).

A corpus directory holds either plain `.go` files (any source tree) or `*.parquet` files whose
columns follow The Stack (dedup): `content`, `max_stars_repo_name`, `max_stars_repo_path`, ...
plus, for Debian-built corpora, `package` and `package_version`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gocram.errors import GocramError

STACK_COLUMNS = (
    "content", "size", "ext", "lang", "max_stars_count", "max_stars_repo_name",
    "max_stars_repo_path", "licenses", "avg_line_length", "max_line_length",
    "alphanum_fraction", "hexsha",
)

STACK_SCHEMA = pa.schema([
    ("content", pa.string()),
    ("size", pa.int64()),
    ("ext", pa.string()),
    ("lang", pa.string()),
    ("max_stars_count", pa.int64()),
    ("max_stars_repo_name", pa.string()),
    ("max_stars_repo_path", pa.string()),
    ("licenses", pa.list_(pa.string())),
    ("avg_line_length", pa.float64()),
    ("max_line_length", pa.int64()),
    ("alphanum_fraction", pa.float64()),
    ("hexsha", pa.string()),
    ("package", pa.string()),
    ("package_version", pa.string()),
])


@dataclass(frozen=True)
class Doc:
    """One Go file: `repo` is the repository or Debian package, `path` is relative to its root."""

    repo: str
    path: str
    text: str
    license: str | None = None
    version: str | None = None

    @property
    def package_key(self) -> str:
        """The Go package (directory) the file belongs to: the unit of train/val splitting."""
        return f"{self.repo}:{os.path.dirname(self.path)}"


def line_stats(text: str) -> tuple[float, int, float]:
    """(average line length, max line length, alphanumeric fraction), as The Stack computes them."""
    lines = text.splitlines() or [""]
    lengths = [len(line) for line in lines]
    alnum = sum(ch.isalnum() for ch in text) / max(len(text), 1)
    return sum(lengths) / len(lengths), max(lengths), alnum


def stack_row(doc: Doc) -> dict:
    avg_len, max_len, alnum = line_stats(doc.text)
    data = doc.text.encode("utf-8")
    return {
        "content": doc.text,
        "size": len(data),
        "ext": "go",
        "lang": "Go",
        "max_stars_count": None,
        "max_stars_repo_name": doc.repo,
        "max_stars_repo_path": doc.path,
        "licenses": [doc.license] if doc.license else [],
        "avg_line_length": avg_len,
        "max_line_length": max_len,
        "alphanum_fraction": alnum,
        # git's blob id, as The Stack's hexsha column is.
        "hexsha": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        "package": doc.repo,
        "package_version": doc.version,
    }


def write_parquet(docs: Iterable[Doc], path: Path) -> int:
    """Write docs atomically (temp file, then rename); returns the number of rows."""
    rows = [stack_row(d) for d in docs]
    table = pa.Table.from_pylist(rows, schema=STACK_SCHEMA)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=19)
    os.replace(tmp, path)
    return len(rows)


def _read_parquet(path: Path) -> Iterator[Doc]:
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise GocramError(f"{path}: not a readable parquet file ({err})") from None
    columns = set(table.column_names)
    if "content" not in columns:
        raise GocramError(f"{path}: parquet has no 'content' column")
    for row in table.to_pylist():
        licenses = row.get("licenses") or []
        yield Doc(
            repo=row.get("max_stars_repo_name") or path.stem,
            path=row.get("max_stars_repo_path") or row.get("hexsha") or "",
            text=row["content"],
            license=licenses[0] if licenses else None,
            version=row.get("package_version"),
        )


def _read_go_tree(root: Path) -> Iterator[Doc]:
    for path in sorted(root.rglob("*.go")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not UTF-8: not Go source we can train on
        yield Doc(repo=root.name, path=path.relative_to(root).as_posix(), text=text)


def read_corpus(path: str | Path) -> list[Doc]:
    """All documents of a corpus directory (parquet files if any, else .go files)."""
    root = Path(path)
    if not root.is_dir():
        raise GocramError(f"corpus directory not found: {root}")
    parquet_files = sorted(root.glob("*.parquet"))
    if parquet_files:
        docs = [doc for f in parquet_files for doc in _read_parquet(f)]
    else:
        docs = list(_read_go_tree(root))
    if not docs:
        raise GocramError(f"{root}: no Go documents found (.go files or *.parquet)")
    return docs


def corpus_fingerprint(path: str | Path) -> str:
    """An identity for cache keys: parquet contents, or names, sizes and mtimes of .go files."""
    root = Path(path)
    h = hashlib.sha256()
    parquet_files = sorted(root.glob("*.parquet"))
    for f in parquet_files:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    if not parquet_files:
        for f in sorted(root.rglob("*.go")):
            st = f.stat()
            h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
