"""Build a corpus directory (parquet + manifest + attribution) from a Go source.

Sources: `debian:LIST` (installed Debian packages named in LIST) or `dir:PATH` (any tree).
Every kept file records its package, version and licence; every dropped file is counted by reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from gocram.data.corpus import Doc, read_corpus, write_parquet
from gocram.data.debian import (
    DOC_DIR,
    capped,
    installed_version,
    iter_package_docs,
    main_license,
    read_package_list,
)
from gocram.data.filters import drop_reason, is_permissive
from gocram.errors import GocramError


def normalized_hash(text: str) -> str:
    """Exact-dedup key: content with trailing whitespace stripped from every line."""
    norm = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def _log(msg: str) -> None:
    print(f"[data build] {msg}", file=sys.stderr, flush=True)


def _filtered(docs, counts: Counter, seen: set[str]) -> list[Doc]:
    kept = []
    for doc in docs:
        counts["files_in"] += 1
        reason = drop_reason(doc)
        if reason is None:
            key = normalized_hash(doc.text)
            reason = "duplicate" if key in seen else None
            seen.add(key)
        if reason:
            counts[f"dropped_{reason}"] += 1
        else:
            kept.append(doc)
    return kept


def build_from_debian(list_file: str, per_package_bytes: int, counts: Counter,
                      packages: list[dict]) -> list[Doc]:
    names = read_package_list(list_file)
    seen: set[str] = set()
    out: list[Doc] = []
    for i, pkg in enumerate(names, 1):
        version = installed_version(pkg)
        entry = {"package": pkg, "version": version, "license": None, "files": 0, "bytes": 0}
        if version is None:
            counts["packages_not_installed"] += 1
            entry["skipped"] = "not installed"
            packages.append(entry)
            continue
        entry["license"] = license_name = main_license(pkg)
        if not is_permissive(license_name):
            counts["packages_not_permissive"] += 1
            entry["skipped"] = f"licence {license_name!r} not on the permissive allow-list"
            packages.append(entry)
            continue
        kept = _filtered(iter_package_docs(pkg, version, license_name, counts), counts, seen)
        chosen = capped(kept, per_package_bytes) if per_package_bytes else kept
        counts["dropped_package_cap"] += len(kept) - len(chosen)
        entry["files"] = len(chosen)
        entry["bytes"] = sum(len(d.text.encode()) for d in chosen)
        packages.append(entry)
        out.extend(chosen)
        if i % 25 == 0 or i == len(names):
            _log(f"{i}/{len(names)} packages, {len(out):,} files kept")
    return out


def build_corpus(source: str, out_dir: str | Path, *, per_package_bytes: int = 0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    packages: list[dict] = []
    kind, _, arg = source.partition(":")
    if kind == "debian":
        docs = build_from_debian(arg, per_package_bytes, counts, packages)
    elif kind == "dir":
        docs = _filtered(read_corpus(arg), counts, set())
    else:
        raise GocramError(f"--source {source!r}: expected debian:LIST or dir:PATH")
    if not docs:
        raise GocramError(f"--source {source!r}: no files survived the filters")
    n = write_parquet(docs, out / "corpus.parquet")
    if kind == "debian":
        licenses = out / "licenses"
        licenses.mkdir(exist_ok=True)
        for entry in packages:
            if entry["files"]:
                shutil.copyfile(DOC_DIR / entry["package"] / "copyright", licenses / entry["package"])
        _write_attribution(out / "ATTRIBUTION.md", packages, source)
    report = {
        "source": source, "files": n, "bytes": sum(len(d.text.encode()) for d in docs),
        "per_package_bytes": per_package_bytes, "counts": dict(sorted(counts.items())),
        "packages": packages,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "manifest.json")
    _log(f"wrote {n:,} files ({report['bytes'] / 1e6:.1f} MB) to {out}")
    return report


def _write_attribution(path: Path, packages: list[dict], source: str) -> None:
    lines = [
        "# Attribution of the Go source in this corpus",
        "",
        f"Built by `gocram data build --source {source}` from Debian's packaged Go sources.",
        "Each file keeps its package's licence; the full copyright files are in `licenses/`.",
        "",
        "| package | version | licence | files | bytes |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {e['package']} | {e['version']} | {e['license']} | {e['files']} | {e['bytes']} |"
              for e in packages if e["files"]]
    path.write_text("\n".join(lines) + "\n")
