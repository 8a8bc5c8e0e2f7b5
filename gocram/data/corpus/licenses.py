"""The licence of a local tree, from its licence file, as an SPDX id (The Stack's `licenses`).

Matching is askalono's (a maintained SPDX licence-text matcher; its licence data ships inside
the wheel, so nothing is fetched at run time). A file that matches no licence text closely
enough gives no licence, and the permissive filter then drops the tree's files as `license`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Below this Sørensen-Dice score (askalono's measure) the best match is too loose to trust.
MIN_SCORE = 0.8
MAX_LICENSE_BYTES = 256_000  # a licence file larger than this is not one
LICENSE_FILE = re.compile(r"^(?:licen[cs]e|copying|unlicense)(?:[-_.][\w.-]*)?$", re.IGNORECASE)
REPO_MARKERS = (".git", "go.mod")  # a directory with one of these is a repository root


@dataclass(frozen=True, kw_only=True)
class LicenseMatch:
    file: str  # the licence file's name
    spdx: str | None  # None: no licence text matched well enough
    score: float


def license_files(directory: Path, names: list[str]) -> list[str]:
    """Names in `directory` that look like licence files, LICENSE before COPYING, shortest first."""
    found = [n for n in names if LICENSE_FILE.match(n) and (directory / n).is_file()
             and not (directory / n).is_symlink()]  # a link is not followed, as for sources
    return sorted(found, key=lambda n: (not n.lower().startswith("licen"), len(n), n))


@lru_cache(maxsize=256)
def identify(text: str) -> tuple[str | None, float]:
    """(SPDX id, score) of a licence text; (None, score) when no licence matches well enough.

    Cached: pyaskalono loads its licence store again on every call (the slow part), and the
    repositories of one tree often carry the same licence file."""
    import askalono

    if not text.strip():
        return None, 0.0
    match = askalono.identify(text)
    return (match.name if match.score >= MIN_SCORE else None), float(match.score)


def detect_license(directory: Path, names: list[str]) -> LicenseMatch | None:
    """The licence of the repository rooted at `directory`, or None when it has no licence file."""
    for name in license_files(directory, names):
        path = directory / name
        try:
            if os.path.getsize(path) > MAX_LICENSE_BYTES:
                continue
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        spdx, score = identify(text)
        return LicenseMatch(file=name, spdx=spdx, score=score)
    return None


def is_repo_root(names: list[str]) -> bool:
    return any(marker in names for marker in REPO_MARKERS)
