"""Settings of `gocram data build`: keyword-only dataclasses, validated when built.

Every stage is configurable from the command line with `--set section.key=value`
(e.g. `--set filters.max_bytes=500000 --set near_dedup.threshold=0.8`). The defaults follow
BigCode's StarCoder pipeline: Stack-style file filters, exact dedup, MinHash LSH near-dedup with
5-gram shingles, 256 permutations and Jaccard 0.7, decontamination on 10-token n-grams, PII
redaction with placeholders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from gocram.core.errors import ConfigError
from gocram.core.typed import build_dataclass
from gocram.data.corpus.redact import KINDS as REDACT_DETECTOR_KINDS

PERMISSIVE_LICENSES = (
    "apache-2", "expat", "mit", "bsd-2", "bsd-3", "isc", "public-domain", "wtfpl", "go",
    "cc0", "unlicense", "zlib",
)


@dataclass(frozen=True, kw_only=True)
class FilterConfig:
    """Per-file filters; a threshold of 0 (or an empty tuple / False) switches a filter off."""

    extensions: tuple[str, ...] = ("go",)
    excluded_dirs: tuple[str, ...] = ("vendor", "third_party", "testdata")
    drop_tests: bool = False  # drop `_test.go` files
    license_allow: tuple[str, ...] = PERMISSIVE_LICENSES  # licence-name prefixes; () = keep all
    min_stars: int = 0  # The Stack's max_stars_count; only meaningful for stack/parquet sources
    min_bytes: int = 1
    max_bytes: int = 1_000_000
    max_line_length: int = 1000
    max_avg_line_length: float = 100.0
    min_alphanum_fraction: float = 0.25
    drop_generated: bool = True  # `// Code generated ... DO NOT EDIT.`, .pb.go, bindata
    max_literal_fraction: float = 0.5  # share of lines that are only literals (data tables)
    literal_min_lines: int = 50  # tables shorter than this are left alone

    def __post_init__(self) -> None:
        for name in ("min_stars", "min_bytes", "max_bytes", "max_line_length", "literal_min_lines"):
            if getattr(self, name) < 0:
                raise ConfigError(f"filters.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_bytes and self.min_bytes > self.max_bytes:
            raise ConfigError(f"filters.min_bytes={self.min_bytes} > filters.max_bytes={self.max_bytes}")
        for name in ("min_alphanum_fraction", "max_literal_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"filters.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.extensions:
            raise ConfigError("filters.extensions must name at least one extension")


@dataclass(frozen=True, kw_only=True)
class NearDedupConfig:
    enabled: bool = True
    ngram: int = 5  # shingles: n consecutive identifier/number tokens, as BigCode's near-dedup
    num_perm: int = 256
    threshold: float = 0.7  # Jaccard similarity at which two files are near-duplicates
    seed: int = 1

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ConfigError(f"near_dedup.ngram must be >= 1, got {self.ngram}")
        if self.num_perm < 16:
            raise ConfigError(f"near_dedup.num_perm must be >= 16, got {self.num_perm}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"near_dedup.threshold must be in (0, 1), got {self.threshold}")


@dataclass(frozen=True, kw_only=True)
class DecontamConfig:
    enabled: bool = True
    ngram: int = 10  # whitespace-split tokens of code
    eval_dir: str = "evaldata"  # HumanEval-X Go and MultiPL-E Go files
    # > 0: skip protected n-grams with no identifier this long outside Go's keywords and
    # predeclared names: idioms like `for i := 0; i < n; i++ { if` are in every Go tree and
    # would drop ~0.8% of innocent files (docs/data.md has the measurements); 0 = plain rule.
    min_identifier_len: int = 4

    def __post_init__(self) -> None:
        if self.ngram < 3:
            raise ConfigError(f"decontam.ngram must be >= 3, got {self.ngram}")
        if self.min_identifier_len < 0:
            raise ConfigError(f"decontam.min_identifier_len must be >= 0, got {self.min_identifier_len}")


REDACT_KINDS = REDACT_DETECTOR_KINDS  # every kind gocram.data.corpus.redact knows


@dataclass(frozen=True, kw_only=True)
class RedactConfig:
    enabled: bool = True
    kinds: tuple[str, ...] = REDACT_KINDS

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in REDACT_KINDS]
        if unknown:
            raise ConfigError(f"redact.kinds: unknown kind {unknown[0]!r}; choose from {list(REDACT_KINDS)}")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Repository-level split: every file of a repository (Debian package) lands on one side."""

    val_frac: float = 0.05
    test_frac: float = 0.05
    salt: str = "gocram"

    def __post_init__(self) -> None:
        for name in ("val_frac", "test_frac"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"split.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.val_frac + self.test_frac >= 1.0:
            raise ConfigError(
                f"split.val_frac + split.test_frac must be < 1, got {self.val_frac + self.test_frac}")


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    filters: FilterConfig = field(default_factory=FilterConfig)
    exact_dedup: bool = True
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    chunk_mb: float = 200.0  # uncompressed Go per chunk file (zstd makes the file ~5x smaller)
    zstd_level: int = 9  # 19 is ~10% smaller and ~25x slower (docs/data.md)
    per_package_bytes: int = 0  # debian sources: keep at most this many bytes per package (0 = all)

    def __post_init__(self) -> None:
        if self.chunk_mb <= 0:
            raise ConfigError(f"chunk_mb must be > 0, got {self.chunk_mb}")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"zstd_level must be in [1, 22], got {self.zstd_level}")
        if self.per_package_bytes < 0:
            raise ConfigError(f"per_package_bytes must be >= 0, got {self.per_package_bytes}")

    @property
    def chunk_bytes(self) -> int:
        return max(int(self.chunk_mb * 1e6), 1)

    def check_source(self, kind: str) -> None:
        """Reject settings that make no sense for a source kind (the conflicts)."""
        if self.per_package_bytes and kind != "debian":
            raise ConfigError(f"per_package_bytes applies to debian:LIST sources, not {kind!r}")
        if self.filters.min_stars and kind not in ("stack", "parquet"):
            raise ConfigError(f"filters.min_stars needs star counts (stack or parquet sources), not {kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_options(values: dict[str, Any] | None = None, overrides: list[str] = ()) -> BuildConfig:
    """A BuildConfig from nested values plus `section.key=value` overrides (YAML-parsed values)."""
    merged: dict[str, Any] = json.loads(json.dumps(values or {}))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        parts = key.split(".")
        node = merged
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else None
    return build_dataclass(BuildConfig, merged, "", noun="build setting")
