"""`gocram data report DIR`: what a build read, kept and dropped, and whether its chunks are intact."""

from __future__ import annotations

import json
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import sha256_file
from gocram.data.corpus.build import REPORT
from gocram.data.corpus.docs import MANIFEST, read_manifest


def load_report(root: Path) -> tuple[dict, dict]:
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is None:
        raise GocramError(f"{root}: not a finished `gocram data build` (no {MANIFEST} with chunks)")
    path = root / REPORT
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise GocramError(f"{path}: unreadable ({err})") from None
    return manifest, report


def verify_chunks(root: Path, manifest: dict) -> None:
    for c in manifest["chunks"]:
        path = root / c["name"]
        if not path.is_file():
            raise GocramError(f"{path}: listed in the manifest but missing")
        if sha256_file(path) != c["sha256"]:
            raise GocramError(f"{path}: sha256 differs from the manifest (changed or corrupt)")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def format_report(manifest: dict, report: dict) -> str:
    lines = [
        f"source     {report['source']}",
        f"files in   {report['files_in']:,} ({_mb(report['bytes_in'])})",
        f"kept       {report['kept']:,} ({_mb(report['bytes_kept'])}) in {len(manifest['chunks'])} "
        f"chunk(s), {_mb(sum(c['parquet_bytes'] for c in manifest['chunks']))} as zstd parquet",
        "dropped    " + ", ".join(f"{k} {v:,}" for k, v in
                                   sorted(report["dropped"].items(), key=lambda kv: -kv[1])),
    ]
    total = report["kept"] + sum(report["dropped"].values())
    lines.append(f"check      files_in {report['files_in']:,} == kept + dropped {total:,}: "
                 f"{'ok' if total == report['files_in'] else 'MISMATCH'}")
    for split, s in report["splits"].items():
        lines.append(f"{split:<10} {s['files']:,} files, {_mb(s['bytes'])}, {s['repos']:,} repositories")
    red = report.get("redactions") or {}
    lines.append("redacted   " + (", ".join(f"{k} {v:,}" for k, v in red.items()) or "nothing"))
    dc = report["decontamination"]
    lines.append(f"decontam   {dc['files_dropped']:,} files share a {dc['ngram']}-token n-gram with "
                 f"an evaluation problem" if dc["ngram"] else "decontam   off")
    for hit in dc["dropped"][:10]:
        lines.append(f"           {hit['repo']}/{hit['path']}: {hit['task']} \"{hit['ngram']}\"")
    nd = report["near_dedup"]
    lines.append(f"near-dedup {nd['files_dropped']:,} files in {nd['clusters']:,} clusters")
    if report.get("mb_per_s"):
        took = sum(report["timings_s"].values())
        lines.append(f"speed      {report['mb_per_s']:.2f} MB/s over {took:.1f}s "
                     f"({', '.join(f'{k} {v}' for k, v in report['timings_s'].items())})")
    roots = report.get("license_roots") or []
    if roots:
        lines.append("licences   " + ", ".join(f"{r['dir']}: {r['license'] or 'unrecognised'} ({r['file']})"
                                            for r in roots[:10]) + (" ..." if len(roots) > 10 else ""))
    notes = {k: v for k, v in (report.get("notes") or {}).items() if v}
    if notes:
        lines.append("notes      " + ", ".join(f"{k} {v:,}" for k, v in sorted(notes.items())))
    skipped = [p for p in report.get("packages", []) if p.get("skipped")]
    if skipped:
        lines.append(f"packages   {len(report['packages']) - len(skipped)} read, {len(skipped)} skipped: " +
                     ", ".join(f"{p['package']} ({p['skipped']})" for p in skipped[:5]))
    return "\n".join(lines)


def print_report(root: Path, *, verify: bool = False, as_json: bool = False) -> None:
    manifest, report = load_report(root)
    if verify:
        verify_chunks(root, manifest)
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(manifest, report))
        if verify:
            print(f"verified   {len(manifest['chunks'])} chunk(s) match their sha256")
