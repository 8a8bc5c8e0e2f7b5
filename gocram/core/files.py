"""Small file helpers shared by the data pipeline, the trainer and the reports.

Every file gocram writes for others to read goes through `atomic_path` (or its wrappers): the
bytes go to `<name>.tmp` beside the target, are fsynced, then renamed over it, so a reader (or a
rerun after a crash) sees the old file or the new one, never half of one. The temp name is fixed
rather than random so the cleanups that sweep `*.tmp` left by a killed process can find them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (checkpoints and chunks are hundreds of MB)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def temp_path(path: Path) -> Path:
    """Where the atomic writers stage `path`: beside it, so the rename never crosses filesystems."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync `tmp`, then rename it over `path`: after a power cut the new name holds whole bytes."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path for a writer that wants a file name (torch.save, parquet, savefig); on a
    clean exit it replaces `path`, on any error it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, value, *, indent: int | None = 1) -> None:
    """`json.dumps(value, indent=indent)` as the file's whole text (no trailing newline)."""
    atomic_write_text(path, json.dumps(value, indent=indent))
