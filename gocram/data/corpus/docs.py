"""Go documents and the on-disk corpus format (parquet in The Stack's column schema).

A corpus directory holds one of:
- a finished `gocram data build`: `manifest.json` naming its `chunk-NNNNN.parquet` files (only
  the chunks the manifest lists are read, so a half-rebuilt directory is never mistaken for data);
- any `*.parquet` files whose columns follow The Stack (dedup): `content`, `max_stars_repo_name`,
  `max_stars_repo_path`, ... plus, where known, `package`, `package_version`, `source`, `split`;
- plain `.go` files (any source tree).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gocram.core.errors import GocramError
from gocram.core.files import atomic_path

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
    # gocram's additions: provenance and the repository-level split.
    ("package", pa.string()),
    ("package_version", pa.string()),
    ("source", pa.string()),
    ("split", pa.string()),
])

MANIFEST = "manifest.json"
WORK_DIR = ".work"  # scratch space of a build in progress


@dataclass(frozen=True)
class Doc:
    """One Go file: `repo` is the repository or Debian package, `path` is relative to its root."""

    repo: str
    path: str
    text: str
    license: str | None = None
    version: str | None = None
    split: str | None = None  # "train" / "val" / "test" when the corpus was built with splits

    @property
    def package_key(self) -> str:
        """The Go package (directory) the file belongs to: the unit of train/val splitting."""
        return f"{self.repo}:{os.path.dirname(self.path)}"


ASCII_ALNUM = bytes(c for c in range(128) if chr(c).isalnum())
NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def count_alnum(text: str) -> int:
    """sum(ch.isalnum() for ch in text), at C speed: ASCII via bytes.translate, the rest by hand."""
    ascii_part = NON_ASCII.sub("", text) if not text.isascii() else text
    data = ascii_part.encode("ascii")
    count = len(data) - len(data.translate(None, ASCII_ALNUM))
    if ascii_part is not text:
        count += sum(ch.isalnum() for run in NON_ASCII.findall(text) for ch in run)
    return count


def line_stats(text: str) -> tuple[float, int, float]:
    """(average line length, max line length, alphanumeric fraction), as The Stack computes them."""
    lines = text.splitlines() or [""]
    lengths = [len(line) for line in lines]
    alnum = count_alnum(text) / max(len(text), 1)
    return sum(lengths) / len(lengths), max(lengths), alnum


def git_blob_sha(data: bytes) -> str:
    """git's blob id, as The Stack's hexsha column is."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def stack_row(doc: Doc) -> dict:
    avg_len, max_len, alnum = line_stats(doc.text)
    data = doc.text.encode("utf-8")
    return {
        "content": doc.text,
        "size": len(data),
        "ext": os.path.splitext(doc.path)[1].lstrip(".") or None,
        "lang": "Go",
        "max_stars_count": None,
        "max_stars_repo_name": doc.repo,
        "max_stars_repo_path": doc.path,
        "licenses": [doc.license] if doc.license else [],
        "avg_line_length": avg_len,
        "max_line_length": max_len,
        "alphanum_fraction": alnum,
        "hexsha": git_blob_sha(data),
        "package": doc.repo,
        "package_version": doc.version,
        "source": None,
        "split": doc.split,
    }


def write_rows(rows: list[dict], path: Path, *, zstd_level: int = 19) -> None:
    """Write Stack-schema rows atomically (temp file, then rename)."""
    table = pa.Table.from_pylist(rows, schema=STACK_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=zstd_level)


def write_parquet(docs: Iterable[Doc], path: Path) -> int:
    """Write docs atomically (temp file, then rename); returns the number of rows."""
    rows = [stack_row(d) for d in docs]
    write_rows(rows, path)
    return len(rows)


def open_parquet(path: Path) -> pq.ParquetFile:
    """A ParquetFile, or a one-line GocramError naming the file when it is corrupt or truncated."""
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise GocramError(f"{path}: not a readable parquet file ({err})") from None


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _is_text_list(t: pa.DataType) -> bool:
    return ((pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_text(t.value_type)) or _is_text(t)


def _is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_null(t)


# The columns gocram reads from a Stack-schema file, and what their type must be.
COLUMN_TYPES = {
    "content": (_is_text, "string"),
    "max_stars_repo_name": (_is_text, "string"),
    "max_stars_repo_path": (_is_text, "string"),
    "hexsha": (_is_text, "string"),
    "licenses": (_is_text_list, "list of strings (or one string)"),
    "max_stars_repo_licenses": (_is_text_list, "list of strings (or one string)"),
    "max_stars_count": (_is_integer, "integer"),
    "package": (_is_text, "string"),
    "package_version": (_is_text, "string"),
    "source": (_is_text, "string"),
    "split": (_is_text, "string"),
}


def check_columns(path: Path, schema: pa.Schema) -> None:
    """A one-line GocramError naming the first column whose type gocram cannot read."""
    for name in schema.names:
        if name in COLUMN_TYPES:
            ok, expected = COLUMN_TYPES[name]
            if not ok(schema.field(name).type):
                raise GocramError(f"{path}: column '{name}' has type {schema.field(name).type}, "
                                  f"expected {expected}")


def row_license(row: dict) -> str | None:
    """The first licence of a row; a plain-string `licenses` is one licence, not letters."""
    licenses = row.get("licenses") or []
    if isinstance(licenses, str):
        return licenses
    return licenses[0] if licenses else None


def iter_parquet_rows(path: Path, columns: list[str] | None = None,
                      batch_rows: int = 2048) -> Iterator[dict]:
    """Rows of one parquet file, streamed in record batches; corrupt data is a GocramError."""
    pf = open_parquet(path)
    names = set(pf.schema_arrow.names)
    if "content" not in names:
        raise GocramError(f"{path}: parquet has no 'content' column")
    check_columns(path, pf.schema_arrow)
    wanted = [c for c in columns if c in names] if columns else None
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted):
            yield from batch.to_pylist()
    except GocramError:
        raise
    except Exception as err:
        raise GocramError(f"{path}: not a readable parquet file ({err})") from None


def doc_from_row(row: dict, fallback_repo: str) -> Doc:
    return Doc(
        repo=row.get("max_stars_repo_name") or fallback_repo,
        path=row.get("max_stars_repo_path") or row.get("hexsha") or "",
        text=row["content"],
        license=row_license(row),
        version=row.get("package_version"),
        split=row.get("split"),
    )


def _read_parquet(path: Path) -> Iterator[Doc]:
    for row in iter_parquet_rows(path):
        if row["content"] is None:
            raise GocramError(f"{path}: a row has no content")
        yield doc_from_row(row, path.stem)


def _read_go_tree(root: Path) -> Iterator[Doc]:
    for path in sorted(root.rglob("*.go")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not UTF-8: not Go source we can train on
        yield Doc(repo=root.name, path=path.relative_to(root).as_posix(), text=text)


def read_manifest(root: Path) -> dict | None:
    """The build manifest of a corpus directory, or None when it has none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GocramError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or "chunks" not in manifest:
        return None  # an older manifest without chunks: read the parquet files directly
    return manifest


def corpus_files(path: str | Path) -> list[Path]:
    """The parquet files that make up a corpus directory (empty for a plain .go tree)."""
    root = Path(path)
    if not root.is_dir():
        raise GocramError(f"corpus directory not found: {root}")
    manifest = read_manifest(root)
    if manifest is not None:
        files = [root / c["name"] for c in manifest["chunks"]]
        for f in files:
            if not f.is_file():
                raise GocramError(f"{f}: listed in {root / MANIFEST} but missing")
        return files
    if (root / WORK_DIR).is_dir() or list(root.glob("chunk-*.parquet")):
        raise GocramError(f"{root}: an unfinished build (no {MANIFEST}); rerun `gocram data build`")
    return sorted(root.glob("*.parquet"))


def read_corpus(path: str | Path) -> list[Doc]:
    """All documents of a corpus directory (its chunks or parquet files if any, else .go files)."""
    root = Path(path)
    parquet_files = corpus_files(root)
    if parquet_files:
        docs = [doc for f in parquet_files for doc in _read_parquet(f)]
    else:
        docs = list(_read_go_tree(root))
    if not docs:
        raise GocramError(f"{root}: no Go documents found (.go files or *.parquet)")
    return docs


def corpus_fingerprint(path: str | Path) -> str:
    """An identity for cache keys: chunk hashes, parquet contents, or .go names/sizes/mtimes."""
    root = Path(path)
    h = hashlib.sha256()
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is not None:
        for c in manifest["chunks"]:
            h.update(f"{c['name']}\0{c['sha256']}\n".encode())
        return h.hexdigest()[:16]
    parquet_files = corpus_files(root) if root.is_dir() else []
    for f in parquet_files:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    if not parquet_files:
        for f in sorted(root.rglob("*.go")):
            st = f.stat()
            h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
