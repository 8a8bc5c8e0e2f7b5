"""Atomic checkpoints: write to a temp file, fsync, rename; keep the newest N; load weights_only.

Each checkpoint has a sha256 sidecar in `sha256sum` format (`ckpt-00000100.pt.sha256`), written
before the checkpoint is renamed into place, so `sha256sum -c` works and a truncated or corrupt
file is caught at resume (`latest_good_checkpoint`). Checkpoints without a sidecar (older runs)
are accepted if torch can load them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

from gocram.core.errors import GocramError
from gocram.core.files import atomic_path, atomic_write_bytes, sha256_file

CKPT_PATTERN = re.compile(r"^ckpt-(\d{8})\.pt$")
SIDECAR = ".sha256"


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.pt"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints oldest first (by step)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if CKPT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CKPT_PATTERN.match(p.name).group(1)))


class _HashingWriter:
    """A file handle that hashes what passes through it, so the file is not read back."""

    def __init__(self, handle):
        self.handle, self.sha = handle, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(state: dict, directory: Path, step: int, keep: int, *,
                    dump: Callable = torch.save) -> Path:
    """Write atomically; on any error the temp files are removed and the error re-raised, so the
    checkpoints already on disk are untouched. `dump(state, handle)` serialises (a test seam)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, step)
    for stale in directory.glob("*.tmp"):  # left by a crash or a second Ctrl-C mid-save
        stale.unlink(missing_ok=True)
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as handle:
            hashing = _HashingWriter(handle)
            dump(state, hashing)
        # The sidecar first: a sidecar without its checkpoint is ignored.
        atomic_write_bytes(sidecar_path(final), f"{hashing.sha.hexdigest()}  {final.name}\n".encode())
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the renames themselves durable
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
        sidecar_path(old).unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _one_line(err: BaseException) -> str:
    """An exception as one line: torch's messages run to a dozen lines (and the weights_only one
    suggests weights_only=False, which is exactly what must not happen), so keep the line that
    names the problem."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    telling = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
    first_sentence = (telling or lines or ["no message"])[0].split(". ")[0]
    return f"{type(err).__name__}: {first_sentence[:200]}"


def read_checkpoint(path: Path) -> dict:
    """load_checkpoint with every way a file can be unloadable turned into a one-line
    GocramError naming it."""
    try:
        state = load_checkpoint(path)
    except pickle.UnpicklingError as err:
        raise GocramError(f"{path}: refused: it holds pickled objects other than tensors "
                          f"(weights_only load: {_one_line(err)})") from None
    except Exception as err:  # a truncated zip, an unreadable file, not a torch file at all
        raise GocramError(f"{path}: cannot be read ({_one_line(err)})") from None
    if not isinstance(state, dict):
        raise GocramError(f"{path}: not a gocram checkpoint (a {type(state).__name__}, not a dict)")
    return state


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be trusted, or None. With a sidecar the sha256 decides; without
    one (an older run) the file must at least load."""
    side = sidecar_path(path)
    try:
        if side.is_file():
            expected = (side.read_text().split() or [""])[0]
            actual = sha256_file(path)
            if actual != expected:
                return (f"sha256 {actual[:12]}... does not match {side.name} ({expected[:12]}...): "
                        f"truncated or corrupt")
            return None
        load_checkpoint(path)
    except Exception as err:  # unreadable, unpicklable, truncated zip: all mean "do not use"
        return f"cannot be read ({_one_line(err)})"
    return None


def latest_good_checkpoint(directory: Path, warn: Callable[[str], None] = print, *,
                           at_most: int | None = None) -> Path | None:
    """The newest checkpoint (of step <= at_most) that passes `checkpoint_problem`; each one
    skipped as untrustworthy is reported through `warn`."""
    for path in reversed(list_checkpoints(directory)):
        if at_most is not None and int(CKPT_PATTERN.match(path.name).group(1)) > at_most:
            continue  # a rollback must not jump forward into a stale run's files
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        warn(f"checkpoint {path} {problem}; trying the previous one")
    return None
