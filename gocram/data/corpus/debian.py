"""Go source from installed Debian packages: only the files each listed package owns.

Dependencies are not followed (they include huge cloud SDKs that would swamp a corpus). The
licence is the `Files: *` stanza of /usr/share/doc/PKG/copyright (DEP-5).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gocram.core.errors import GocramError

SOURCE_ROOTS = ("/usr/share/gocode/src/", "/usr/share/go-1.19/src/", "/usr/lib/go-1.19/src/")
DOC_DIR = Path("/usr/share/doc")
# Debian policy 5.6.7 (lower case, digits, + - .; at least two characters, alphanumeric first);
# anything else, an option such as `--admindir=...` above all, is refused before dpkg sees it.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?$")


def read_package_list(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise GocramError(f"package list not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise GocramError(f"{p}: package list is not UTF-8 text") from None
    names = [line.split("#")[0].strip() for line in lines]
    for number, name in enumerate(names, 1):
        if name and not PACKAGE_NAME.match(name):
            raise GocramError(f"{p}:{number}: {name!r} is not a Debian package name")
    return list(dict.fromkeys(n for n in names if n))  # listed twice: read once


def _run(args: list[str]) -> subprocess.CompletedProcess:
    try:
        # surrogateescape: a non-UTF-8 file name in a package's listing is counted, not fatal.
        return subprocess.run(args, capture_output=True, text=True, encoding="utf-8",
                              errors="surrogateescape")
    except FileNotFoundError:
        raise GocramError(f"{args[0]} not found: debian:LIST sources need a Debian system") from None


def installed_version(pkg: str) -> str | None:
    # `--`: whatever the name is, dpkg never reads it as an option.
    done = _run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", "--", pkg])
    if done.returncode or not done.stdout.startswith("install ok installed"):
        return None
    return done.stdout.split("\t", 1)[1]


def owned_files(pkg: str, extensions: tuple[str, ...]) -> list[Path]:
    """Paths the package owns with one of the extensions (directories such as `x.go/` left out)."""
    listing = _run(["dpkg-query", "-L", "--", pkg]).stdout
    suffixes = tuple("." + e for e in extensions)
    paths = [Path(line) for line in listing.splitlines() if line.endswith(suffixes)]
    return [p for p in paths if p.is_symlink() or not p.is_dir()]


def main_license(pkg: str) -> str | None:
    copyright_file = DOC_DIR / pkg / "copyright"
    try:
        text = copyright_file.read_text(errors="replace")
    except OSError:
        return None
    in_main = False
    for line in text.splitlines():
        if line.startswith("Files:"):
            in_main = line.split(":", 1)[1].strip() == "*"
        elif in_main and line.startswith("License:"):
            value = line.split(":", 1)[1].strip()
            return value.split()[0] if value else None
    return None


def relative_source_path(path: Path) -> str:
    text = str(path)
    for root in SOURCE_ROOTS:
        if text.startswith(root):
            return text[len(root):]
    return path.name

