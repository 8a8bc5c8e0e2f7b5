"""Go source from installed Debian packages: only the files each listed package owns.

Dependencies are not followed (they include huge cloud SDKs that would swamp a corpus). The
licence is the `Files: *` stanza of /usr/share/doc/PKG/copyright (DEP-5).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from gocram.data.corpus import Doc
from gocram.data.split import unit_hash
from gocram.errors import GocramError

SOURCE_ROOTS = ("/usr/share/gocode/src/", "/usr/share/go-1.19/src/", "/usr/lib/go-1.19/src/")
DOC_DIR = Path("/usr/share/doc")


def read_package_list(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise GocramError(f"package list not found: {p}")
    names = [line.split("#")[0].strip() for line in p.read_text().splitlines()]
    return [n for n in names if n]


def installed_version(pkg: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", pkg],
                          capture_output=True, text=True)
    if done.returncode or not done.stdout.startswith("install ok installed"):
        return None
    return done.stdout.split("\t", 1)[1]


def owned_go_files(pkg: str) -> list[Path]:
    listing = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout
    files = []
    for line in listing.splitlines():
        path = Path(line)
        if line.endswith(".go") and path.is_file() and not path.is_symlink():
            files.append(path)
    return files


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
            return line.split(":", 1)[1].strip().split()[0] if line.split(":", 1)[1].strip() else None
    return None


def relative_source_path(path: Path) -> str:
    text = str(path)
    for root in SOURCE_ROOTS:
        if text.startswith(root):
            return text[len(root):]
    return path.name


def iter_package_docs(pkg: str, version: str, license_name: str | None,
                      counts: Counter) -> Iterator[Doc]:
    for path in owned_go_files(pkg):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            counts["invalid_utf8"] += 1
            continue
        except OSError:
            counts["unreadable"] += 1
            continue
        yield Doc(repo=pkg, path=relative_source_path(path), text=text,
                  license=license_name, version=version)


def capped(docs: list[Doc], max_bytes: int, salt: str = "cap") -> list[Doc]:
    """Whole files in a stable hashed order until the package's byte cap."""
    chosen, total = [], 0
    for doc in sorted(docs, key=lambda d: unit_hash(d.path, salt)):
        size = len(doc.text.encode("utf-8"))
        if total + size > max_bytes:
            continue
        chosen.append(doc)
        total += size
    return chosen
