"""Sources: each yields SourceFile records in The Stack's terms, chosen by `kind:ARG`.

- `dir:PATH` any local tree (e.g. `$(go env GOROOT)/src`); the repository is the tree's name.
- `debian:LIST` the files each listed, installed Debian package owns (never its dependencies'),
  with the licence of its DEP-5 copyright file. `debian:` alone uses corpus/debian-go-packages.txt.
- `parquet:GLOB` local parquet files in The Stack's schema.
- `stack` The Stack (dedup) Go subset, streamed from the Hugging Face hub (gated: set HF_TOKEN).

Files that cannot be read as text are still yielded, with `problem` set, so that they are counted.
"""

from __future__ import annotations

import glob
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gocram.core.errors import ConfigError, GocramError
from gocram.core.registry import Registry
from gocram.data.corpus.debian import (
    installed_version,
    main_license,
    owned_files,
    read_package_list,
    relative_source_path,
)
from gocram.data.corpus.docs import iter_parquet_rows
from gocram.data.corpus.licenses import detect_license, is_repo_root
from gocram.data.corpus.options import BuildConfig
from gocram.data.corpus.records import SourceFile, from_stack_row

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DEBIAN_LIST = REPO_ROOT / "corpus" / "debian-go-packages.txt"
STACK_DATASET = "bigcode/the-stack-dedup"

SOURCES = Registry("data source")


def read_file(path: Path, *, source: str, repo: str, rel: str, max_bytes: int,
              **meta) -> SourceFile:
    """One file as a SourceFile; problems (symlink, size, encoding) become `problem`."""
    def problem(reason: str) -> SourceFile:
        return SourceFile(source=source, repo=repo, path=rel, text=None, problem=reason, **meta)

    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return problem("symlink")  # never followed: loops and out-of-tree targets
        if not stat.S_ISREG(st.st_mode):
            return problem("not_a_file")
        if max_bytes and st.st_size > max_bytes:
            return problem("too_large")  # not even read: a 100 MB file costs nothing
        data = path.read_bytes()
    except OSError:
        return problem("unreadable")
    if b"\x00" in data[:8192]:
        return problem("binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return problem("invalid_utf8")
    return SourceFile(source=source, repo=repo, path=rel, text=text, **meta)


class Source:
    """Base: `files()` yields SourceFile; `packages` describes per-package outcomes (debian)."""

    kind = "base"

    def __init__(self, arg: str, cfg: BuildConfig):
        self.arg, self.cfg = arg, cfg
        self.packages: list[dict] = []
        self.notes: Counter = Counter()  # things that are not files: packages skipped, dirs
        self.license_roots: list[dict] = []  # dir sources: each licence file found and its match

    def describe(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    def files(self) -> Iterator[SourceFile]:
        raise NotImplementedError


def printable_path(path: str) -> str:
    """A path that can be written anywhere: undecodable bytes of a file name as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def is_utf8_name(path: str) -> bool:
    """False for a name os.walk had to decode with surrogate escapes (not UTF-8 on disk)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@SOURCES.register("dir")
class DirSource(Source):
    """A local tree. Its licence comes from the licence file at its root, or at each repository
    root inside it (a directory with .git or go.mod), nearest first, as The Stack's per-repository
    `licenses`; a repository root inside the tree is its own repository for the split."""

    kind = "dir"

    def __init__(self, arg: str, cfg: BuildConfig, *, walk: Callable = os.walk):
        super().__init__(arg, cfg)
        if not arg:
            raise ConfigError("--source dir:PATH needs a path")
        self.root = Path(arg)
        if not self.root.is_dir():
            raise GocramError(f"--source dir:{arg}: directory not found")
        self.walk = walk  # tests pass a walk that fails on a directory (root reads everything)

    def unreadable(self, err: OSError) -> None:
        self.notes["unreadable_dirs"] += 1

    def files(self) -> Iterator[SourceFile]:
        suffixes = tuple("." + e for e in self.cfg.filters.extensions)
        tree = printable_path(self.root.resolve().name)
        # Per directory: (repository, licences) inherited by everything below it.
        owner: dict[str, tuple[str, tuple[str, ...]]] = {}
        # followlinks=False: a symlinked directory is never entered, so loops cannot happen.
        for dirpath, dirnames, filenames in self.walk(self.root, onerror=self.unreadable,
                                                      followlinks=False):
            dirnames.sort()
            self.notes["dir_symlinks_not_followed"] += sum(
                os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
            here = Path(dirpath)
            rel_dir = "" if here == self.root else here.relative_to(self.root).as_posix()
            repo, licenses = owner.get(os.path.dirname(dirpath), (tree, ()))
            if here == self.root or is_repo_root(dirnames + filenames):
                if here != self.root:
                    repo = f"{tree}/{printable_path(rel_dir)}"
                found = detect_license(here, filenames)
                if found is not None:
                    licenses = (found.spdx,) if found.spdx else ("unrecognised",)
                    self.license_roots.append({"dir": printable_path(rel_dir) or ".", "file": found.file,
                                               "license": found.spdx, "score": round(found.score, 3)})
                    self.notes["license_files_recognised" if found.spdx
                               else "license_files_unrecognised"] += 1
            owner[dirpath] = (repo, licenses)
            for name in sorted(filenames):
                if not name.endswith(suffixes):
                    continue
                path = here / name
                rel = path.relative_to(self.root).as_posix()
                if not is_utf8_name(rel):
                    yield SourceFile(source="dir", repo=repo, path=printable_path(rel), text=None,
                                     licenses=licenses, problem="bad_file_name")
                    continue
                yield read_file(path, source="dir", repo=repo, rel=rel, licenses=licenses,
                                max_bytes=self.cfg.filters.max_bytes)


@SOURCES.register("debian")
class DebianSource(Source):
    kind = "debian"

    def __init__(self, arg: str, cfg: BuildConfig):
        super().__init__(arg or str(DEFAULT_DEBIAN_LIST), cfg)
        self.names = read_package_list(self.arg)
        if not self.names:
            raise GocramError(f"{self.arg}: the package list names no packages")

    def files(self) -> Iterator[SourceFile]:
        for pkg in self.names:
            version = installed_version(pkg)
            entry = {"package": pkg, "version": version, "license": None}
            self.packages.append(entry)
            if version is None:
                entry["skipped"] = "not installed"
                self.notes["packages_not_installed"] += 1
                continue
            license_name = entry["license"] = main_license(pkg)
            meta = {"licenses": (license_name,) if license_name else (), "version": version,
                    "package": pkg}
            for path in owned_files(pkg, self.cfg.filters.extensions):
                rel = relative_source_path(path)
                if not is_utf8_name(rel):
                    yield SourceFile(source="debian", repo=pkg, path=printable_path(rel), text=None,
                                     problem="bad_file_name", **meta)
                    continue
                yield read_file(path, source="debian", repo=pkg, rel=rel,
                                max_bytes=self.cfg.filters.max_bytes, **meta)


@SOURCES.register("parquet")
class ParquetSource(Source):
    """Local parquet in The Stack's schema; a corrupt file stops the build with its name."""

    kind = "parquet"

    def __init__(self, arg: str, cfg: BuildConfig):
        super().__init__(arg, cfg)
        if not arg:
            raise ConfigError("--source parquet:GLOB needs a glob")
        self.paths = sorted(Path(p) for p in glob.glob(arg, recursive=True))
        if not self.paths:
            raise GocramError(f"--source parquet:{arg}: no files match")

    def files(self) -> Iterator[SourceFile]:
        for path in self.paths:
            for row in iter_parquet_rows(path):
                yield from_stack_row(row, "parquet", where=str(path))


def load_the_stack() -> Iterable[dict]:
    """The Stack (dedup) Go subset, streamed; gated, so a token must be in the environment."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise GocramError(f"--source stack: {STACK_DATASET} is gated; set HF_TOKEN to a token "
                          "that has accepted its terms")
    import datasets

    return datasets.load_dataset(STACK_DATASET, data_dir="data/go", split="train",
                                 streaming=True, token=token)


@SOURCES.register("stack")
class StackSource(Source):
    kind = "stack"

    def __init__(self, arg: str, cfg: BuildConfig, *, load: Callable[[], Iterable[dict]] = load_the_stack):
        super().__init__(arg, cfg)
        self.load = load  # tests pass a local iterable; nothing in the tests touches the hub

    def files(self) -> Iterator[SourceFile]:
        for row in self.load():
            yield from_stack_row(row, "stack")


def open_source(spec: str, cfg: BuildConfig, **kwargs) -> Source:
    """`kind:ARG` -> a Source, after checking the settings suit that kind."""
    kind, _, arg = spec.partition(":")
    if kind not in SOURCES:
        raise ConfigError(f"--source {spec!r}: expected one of "
                          f"{', '.join(k + (':ARG' if k != 'stack' else '') for k in SOURCES.names())}")
    cfg.check_source(kind)
    return SOURCES.build(kind, arg, cfg, **kwargs)
