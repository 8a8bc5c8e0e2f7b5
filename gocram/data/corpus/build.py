"""`gocram data build`: one command from a Go source to a Stack-schema corpus directory.

    source -> filters -> exact dedup -> decontamination -> (package cap) -> redaction
           -> MinHash near-dedup -> repository-level split -> ~200 MB zstd parquet chunks

Output (DIR): `chunk-NNNNN.parquet`, `manifest.json` (per chunk: files, bytes, sha256; per file:
source, repository/package, licence, split, content sha256) and `report.json` (what came in, what
was dropped and why: files_in == kept + sum(dropped)); for Debian sources also `ATTRIBUTION.md`
and `licenses/`.

Resumable in three stages kept under DIR/.work: the ingest pass (spooled survivors and their
MinHash signatures), the near-dedup clustering, and each finished chunk. A rerun with the same
settings skips what is done; chunks are written to a temp file and renamed, and manifest.json is
written last, so an interrupted build never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gocram.core.errors import GocramError
from gocram.core.files import atomic_path, atomic_write_text, sha256_file
from gocram.data.corpus.debian import DOC_DIR
from gocram.data.corpus.decontam import Decontaminator
from gocram.data.corpus.dedup import Signer, near_duplicate_clusters, normalized_hash
from gocram.data.corpus.docs import MANIFEST, WORK_DIR, iter_parquet_rows, read_manifest, write_rows
from gocram.data.corpus.filters import drop_reason
from gocram.data.corpus.options import BuildConfig, build_options
from gocram.data.corpus.records import SourceFile, content_sha256, to_stack_row
from gocram.data.corpus.redact import redact
from gocram.data.corpus.sources import Source, open_source
from gocram.data.corpus.split import unit_hash

FORMAT = "gocram-corpus/1"
REPORT = "report.json"
ATTRIBUTION = "ATTRIBUTION.md"
# The only files gocram ever writes under DIR/.work; nothing else there is removed.
WORK_FILE = re.compile(r"^(?:state\.json|(?:signatures|roots)(?:\.tmp)?\.npy|previous-manifest\.json"
                       r"|spool-\d{5}\.parquet)(?:\.tmp)?$")
# A name gocram writes in DIR: a file, or one under licenses/; never absolute, never `..`.
OWN_NAME = re.compile(r"^(?:licenses/)?(?!\.\.?$)[^/\\\x00]+$")
SPOOL_BYTES = 64_000_000  # survivors are spooled to disk in parts of about this size
SPLITS = ("train", "val", "test")


def _log(msg: str) -> None:
    print(f"[data build] {msg}", file=sys.stderr, flush=True)


def write_json(path: Path, obj, *, indent: int | None = 1) -> None:
    """The corpus's JSON files end in a newline (they are committed and diffed)."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def split_of(repo: str, cfg: BuildConfig) -> str:
    u = unit_hash(repo, cfg.split.salt)
    if u < cfg.split.val_frac:
        return "val"
    if u < cfg.split.val_frac + cfg.split.test_frac:
        return "test"
    return "train"


class Progress:
    """A progress line at most every `every_s` seconds (the first after `every_s`)."""

    def __init__(self, every_s: float = 5.0, log: Callable[[str], None] = _log):
        self.every_s, self.last, self.log = every_s, time.perf_counter(), log

    def __call__(self, msg: Callable[[], str], force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self.last >= self.every_s:
            self.last = now
            self.log(msg())


class Ingest:
    """Stage 1: stream the source through filters, exact dedup, decontamination, the optional
    package cap and redaction; spool survivors and their MinHash signatures to .work/."""

    def __init__(self, cfg: BuildConfig, work: Path):
        self.cfg, self.work = cfg, work
        self.dropped: Counter = Counter()
        self.dropped_bytes: Counter = Counter()
        self.redactions: Counter = Counter()
        self.files_in = self.bytes_in = 0
        self.seen: set[bytes] = set()
        self.contaminated: list[dict] = []
        self.per_package: dict[str, Counter] = {}
        dc = cfg.decontam
        self.decontam = (Decontaminator.from_eval_dir(dc.eval_dir, dc.ngram,
                                                      min_identifier_len=dc.min_identifier_len)
                         if dc.enabled else None)
        nd = cfg.near_dedup
        self.signer = Signer(nd.num_perm, nd.ngram, nd.seed) if nd.enabled else None
        self.signatures: list[np.ndarray] = []
        self.rows: list[dict] = []
        self.row_bytes = 0
        self.spool: list[str] = []
        self.kept = 0

    def drop(self, f: SourceFile, reason: str) -> None:
        self.dropped[reason] += 1
        self.dropped_bytes[reason] += f.n_bytes

    def account(self, f: SourceFile) -> None:
        self.files_in += 1
        self.bytes_in += f.n_bytes
        if f.package:
            self.per_package.setdefault(f.package, Counter())["files_in"] += 1

    def screen(self, f: SourceFile) -> bytes | None:
        """The exact-dedup key of a file that passes every per-file check, else None (dropped)."""
        self.account(f)
        reason = drop_reason(f, self.cfg.filters)
        if reason:
            self.drop(f, reason)
            return None
        key = hashlib.sha256(normalized_hash(f.text).encode()).digest()[:16]
        if self.cfg.exact_dedup and key in self.seen:
            self.drop(f, "duplicate")
            return None
        if self.decontam is not None:
            hit = self.decontam.match(f.text)
            if hit is not None:
                self.drop(f, "contaminated")
                self.contaminated.append({"repo": f.repo, "path": f.path, "task": hit.task,
                                          "ngram": hit.ngram})
                return None
        return key

    def keep(self, f: SourceFile, key: bytes) -> None:
        self.seen.add(key)
        if self.cfg.redact.enabled:
            f = f.with_text(redact(f.text, self.cfg.redact.kinds, self.redactions, f.path))
        if self.signer is not None:
            self.signatures.append(self.signer.signature(f.text))
        self.rows.append(to_stack_row(f, split=None))
        self.row_bytes += f.n_bytes
        self.kept += 1
        if self.row_bytes >= SPOOL_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"spool-{len(self.spool):05d}.parquet"
        write_rows(self.rows, self.work / name, zstd_level=1)
        self.spool.append(name)
        self.rows, self.row_bytes = [], 0

    def run(self, source: Source) -> None:
        progress = Progress()
        t0 = time.perf_counter()
        cap = self.cfg.per_package_bytes
        group: list[SourceFile] = []
        for f in source.files():
            if cap:
                if group and f.repo != group[0].repo:
                    self.take_capped(group, cap)
                    group = []
                group.append(f)
            else:
                key = self.screen(f)
                if key is not None:
                    self.keep(f, key)
            progress(lambda f=f: f"ingest: {self.files_in:,} files, {self.bytes_in / 1e6:,.1f} MB in "
                     f"({self.bytes_in / 1e6 / (time.perf_counter() - t0):.1f} MB/s), "
                     f"{self.kept:,} kept; at {f.repo}")
        if group:
            self.take_capped(group, cap)
        self.flush()

    def take_capped(self, files: list[SourceFile], cap: int) -> None:
        """One package: whole files in a stable hashed order while they fit under the byte cap.

        A file too large for the room left is dropped as package_cap before the other checks run
        (they would not change what is kept, and skipping them makes capped builds fast)."""
        total = 0
        for f in sorted(files, key=lambda f: unit_hash(f.path, "cap")):
            if f.problem is None and total + f.n_bytes > cap:
                self.account(f)
                self.drop(f, "package_cap")
                continue
            key = self.screen(f)
            if key is not None:
                self.keep(f, key)
                total += f.n_bytes

    def state(self) -> dict:
        return {
            "files_in": self.files_in, "bytes_in": self.bytes_in, "kept": self.kept,
            "dropped": dict(self.dropped), "dropped_bytes": dict(self.dropped_bytes),
            "redactions": dict(self.redactions), "contaminated": self.contaminated,
            "per_package": {k: dict(v) for k, v in self.per_package.items()},
            "spool": self.spool,
        }


class Builder:
    def __init__(self, source_spec: str, out: Path, cfg: BuildConfig, *,
                 on_chunk: Callable[[int], None] | None = None, source_kwargs: dict | None = None):
        self.spec, self.out, self.cfg = source_spec, out, cfg
        self.work = out / WORK_DIR
        self.on_chunk = on_chunk
        self.source = open_source(source_spec, cfg, **(source_kwargs or {}))
        self.params = hashlib.sha256(json.dumps(
            {"source": self.source.describe(), "config": cfg.to_dict(), "format": FORMAT},
            sort_keys=True, default=list).encode()).hexdigest()[:16]
        self.timings: dict[str, float] = {}
        self.owned: set[str] = set()  # names in DIR that gocram wrote (check_out_dir fills it)

    # -- guarding what is already there --------------------------------------------------------
    # gocram deletes nothing it did not write: DIR must be empty or one of its builds, and the
    # names it wrote are listed ("written") in manifest.json, or in .work/state.json until the
    # build is finished. Only listed files are ever removed.
    def read_state(self) -> dict | None:
        path = self.work / "state.json"
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return state if isinstance(state, dict) and "params" in state else None

    def owned_names(self, manifest: dict | None) -> set[str] | None:
        """What gocram wrote into DIR (names relative to it), or None when DIR is not a gocram build."""
        if manifest is not None and manifest.get("format") == FORMAT:
            if "written" in manifest:
                return set(manifest["written"])
            # A build from before the "written" list: its chunks and the files every build writes.
            names = {MANIFEST, REPORT, ATTRIBUTION} | {c["name"] for c in manifest["chunks"]}
            entries = manifest.get("entries", [])
            return names | {f"licenses/{e['package']}" for e in entries if e.get("package")}
        state = self.read_state()
        if state is not None:
            return set(state.get("written", [])) | {WORK_DIR}
        return None

    def check_out_dir(self) -> dict | None:
        """The previous manifest of the same build, or None; anything else in DIR is refused."""
        if self.out.exists() and not self.out.is_dir():
            raise GocramError(f"--out {self.out}: exists and is not a directory")
        present = sorted(p.name for p in self.out.iterdir()) if self.out.is_dir() else []
        manifest = read_manifest(self.out) if present else None
        owned = self.owned_names(manifest) if present else set()
        if owned is None:
            raise GocramError(f"--out {self.out}: not empty (holds {present[0]!r}) and not a gocram build "
                              f"(no {MANIFEST} of gocram's); choose an empty directory")
        self.owned = owned
        self.out.mkdir(parents=True, exist_ok=True)
        if manifest is not None and manifest.get("params") != self.params:
            raise GocramError(
                f"--out {self.out}: holds a finished build of {manifest.get('source')!r} with other "
                f"settings; choose another --out or delete it first")
        return manifest

    def clear_work(self) -> None:
        """Remove the scratch files gocram writes under .work, and .work itself once empty."""
        if not self.work.is_dir() or self.work.is_symlink():
            return
        for p in self.work.iterdir():
            if WORK_FILE.match(p.name) and p.is_file() and not p.is_symlink():
                p.unlink()
        try:
            self.work.rmdir()
        except OSError:
            _log(f"{self.work}: left in place, it holds files gocram did not write")

    def load_work_state(self) -> dict:
        state = self.read_state()
        if state is not None and state.get("params") == self.params:
            state["written"] = sorted(set(state.get("written", [])) | self.owned)
            return state
        self.clear_work()  # scratch of a build with other settings
        self.work.mkdir(parents=True, exist_ok=True)
        state = {"params": self.params, "written": sorted(self.owned - {WORK_DIR})}
        self.save_state(state)
        return state

    def claim(self, state: dict, name: str) -> None:
        """Record `name` as gocram's before it is written, so a crash cannot orphan it."""
        if name not in state["written"]:
            state["written"] = sorted({*state["written"], name})
            self.save_state(state)

    def save_state(self, state: dict) -> None:
        write_json(self.work / "state.json", state, indent=None)

    # -- stages ----------------------------------------------------------------------------------
    def ingest(self, state: dict) -> None:
        if "ingest" in state:
            _log(f"ingest: already done ({state['ingest']['files_in']:,} files), skipped")
            return
        t0 = time.perf_counter()
        ing = Ingest(self.cfg, self.work)
        _log(f"ingest: reading {self.source.describe()}")
        ing.run(self.source)
        if ing.signer is not None:
            sig = np.stack(ing.signatures) if ing.signatures else np.zeros((0, 1), np.uint32)
            with atomic_path(self.work / "signatures.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, sig)  # a handle: np.save would append .npy to a name
        state["ingest"] = ing.state()
        state["packages"] = self.source.packages
        state["notes"] = dict(self.source.notes)
        state["license_roots"] = self.source.license_roots
        state["ingest_s"] = time.perf_counter() - t0
        self.save_state(state)
        _log(f"ingest: {ing.files_in:,} files ({ing.bytes_in / 1e6:,.1f} MB) in, {ing.kept:,} kept "
             f"({state['ingest_s']:.1f}s)")

    def near_dedup(self, state: dict) -> np.ndarray:
        kept = state["ingest"]["kept"]
        path = self.work / "roots.npy"
        if not self.cfg.near_dedup.enabled:
            return np.arange(kept)
        if "near_dedup" in state and path.is_file():
            return np.load(path)
        t0 = time.perf_counter()
        sig = np.load(self.work / "signatures.npy")
        _log(f"near-dedup: MinHash LSH clustering of {len(sig):,} files "
             f"(threshold {self.cfg.near_dedup.threshold}, {self.cfg.near_dedup.num_perm} permutations)")
        roots = near_duplicate_clusters(sig, threshold=self.cfg.near_dedup.threshold) \
            if len(sig) else np.arange(0)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, roots)
        state["near_dedup"] = {"s": time.perf_counter() - t0}
        self.save_state(state)
        return roots

    def spooled(self, state: dict):
        for name in state["ingest"]["spool"]:
            yield from iter_parquet_rows(self.work / name)

    def chunk_plan(self, state: dict, roots: np.ndarray):
        """Yield (chunk index, rows) in order; a chunk closes once it holds chunk_bytes of Go."""
        rows, size, index = [], 0, 0
        for i, row in enumerate(self.spooled(state)):
            if roots[i] != i:
                continue
            row["split"] = split_of(row["max_stars_repo_name"], self.cfg)
            rows.append(row)
            size += row["size"]
            if size >= self.cfg.chunk_bytes:
                yield index, rows
                rows, size, index = [], 0, index + 1
        if rows:
            yield index, rows

    def write_chunks(self, state: dict, roots: np.ndarray, previous: dict | None) -> list[dict]:
        t0 = time.perf_counter()
        done = {c["name"]: c for c in state.get("chunks", [])}
        if previous is not None:
            for c in previous["chunks"]:
                done.setdefault(c["name"], c)
            # From here on the directory is being rewritten: no manifest until it is whole again.
            os.replace(self.out / MANIFEST, self.work / "previous-manifest.json")
        chunks = []
        for index, rows in self.chunk_plan(state, roots):
            name = f"chunk-{index:05d}.parquet"
            path = self.out / name
            fingerprint = hashlib.sha256(json.dumps(
                [(r["max_stars_repo_name"], r["max_stars_repo_path"], r["split"], r["hexsha"],
                  r["licenses"]) for r in rows]).encode()).hexdigest()
            record = done.get(name)
            self.claim(state, name)
            if (record and record.get("rows_sha256") == fingerprint and path.is_file()
                    and sha256_file(path) == record["sha256"]):
                _log(f"{name}: unchanged, skipped")
            else:
                _log(f"{name}: compressing {len(rows):,} files (zstd level {self.cfg.zstd_level}) ...")
                write_rows(rows, path, zstd_level=self.cfg.zstd_level)
                record = {"name": name, "rows_sha256": fingerprint, "sha256": sha256_file(path)}
                _log(f"{name}: {len(rows):,} files, {sum(r['size'] for r in rows) / 1e6:.1f} MB "
                     f"-> {path.stat().st_size / 1e6:.1f} MB zstd")
            record.update({
                "files": len(rows), "bytes": sum(r["size"] for r in rows),
                "parquet_bytes": path.stat().st_size,
                "splits": dict(Counter(r["split"] for r in rows)),
                "entries": [{"repo": r["max_stars_repo_name"], "path": r["max_stars_repo_path"],
                             "source": r["source"], "package": r["package"],
                             "license": r["licenses"][0] if r["licenses"] else None,
                             "split": r["split"], "bytes": r["size"],
                             "sha256": content_sha256(r["content"])} for r in rows],
            })
            chunks.append(record)
            state["chunks"] = [{k: v for k, v in c.items() if k != "entries"} for c in chunks]
            self.save_state(state)
            if self.on_chunk is not None:
                self.on_chunk(index)
        self.timings["write_s"] = time.perf_counter() - t0
        return chunks

    # -- outputs ----------------------------------------------------------------------------------
    def report(self, state: dict, roots: np.ndarray, chunks: list[dict]) -> dict:
        ing = state["ingest"]
        dropped = Counter(ing["dropped"])
        dropped_bytes = Counter(ing["dropped_bytes"])
        near = [i for i in range(len(roots)) if roots[i] != i]
        if near:
            dropped["near_duplicate"] = len(near)
            names = {}
            in_cluster = set(near) | {int(roots[i]) for i in near}
            for i, row in enumerate(self.spooled(state)):
                if roots[i] != i:
                    dropped_bytes["near_duplicate"] += row["size"]
                if i in in_cluster:
                    names[i] = f"{row['max_stars_repo_name']}/{row['max_stars_repo_path']}"
            clusters: dict[int, list[int]] = {}
            for i in near:
                clusters.setdefault(int(roots[i]), []).append(i)
            largest = sorted(clusters.items(), key=lambda kv: -len(kv[1]))[:20]
            near_report = {
                "clusters": len(clusters), "files_dropped": len(near),
                "largest": [{"kept": names[k], "size": len(v) + 1,
                             "dropped": [names[j] for j in v[:5]]} for k, v in largest],
            }
        else:
            near_report = {"clusters": 0, "files_dropped": 0, "largest": []}
        entries = [e for c in chunks for e in c["entries"]]
        kept = len(entries)
        if ing["files_in"] != kept + sum(dropped.values()):
            raise AssertionError(f"bookkeeping: {ing['files_in']} in != {kept} kept + "
                                 f"{sum(dropped.values())} dropped")
        splits = {s: {"files": 0, "bytes": 0, "repos": set()} for s in SPLITS}
        per_package: dict[str, Counter] = {}
        for e in entries:
            sp = splits[e["split"]]
            sp["files"] += 1
            sp["bytes"] += e["bytes"]
            sp["repos"].add(e["repo"])
            if e["package"]:
                per_package.setdefault(e["package"], Counter()).update(files=1, bytes=e["bytes"])
        packages = []
        for p in state.get("packages", []):
            stats = per_package.get(p["package"], Counter())
            packages.append({**p, "files_in": ing["per_package"].get(p["package"], {}).get("files_in", 0),
                             "files": stats["files"], "bytes": stats["bytes"]})
        total_s = sum(v for v in self.timings.values())
        contaminated = ing["contaminated"]
        return {
            "format": FORMAT, "source": self.source.describe(), "params": self.params,
            "files_in": ing["files_in"], "bytes_in": ing["bytes_in"],
            "kept": kept, "bytes_kept": sum(e["bytes"] for e in entries),
            "dropped": dict(sorted(dropped.items())),
            "dropped_bytes": dict(sorted(dropped_bytes.items())),
            "redactions": dict(sorted(ing["redactions"].items())),
            "decontamination": {
                "ngram": self.cfg.decontam.ngram if self.cfg.decontam.enabled else None,
                "files_dropped": len(contaminated),
                "by_task": dict(Counter(c["task"] for c in contaminated).most_common()),
                "dropped": contaminated,
            },
            "near_dedup": near_report,
            "splits": {s: {**{k: v for k, v in d.items() if k != "repos"}, "repos": len(d["repos"])}
                       for s, d in splits.items()},
            "chunks": len(chunks),
            "notes": state.get("notes", {}),
            "license_roots": state.get("license_roots", []),
            "packages": packages,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "mb_per_s": ing["bytes_in"] / 1e6 / total_s if total_s else None,
            "config": self.cfg.to_dict(),
        }

    def write_report(self, state: dict, report: dict) -> None:
        self.claim(state, REPORT)
        write_json(self.out / REPORT, report)

    def write_outputs(self, state: dict, report: dict, chunks: list[dict]) -> None:
        written = {MANIFEST, REPORT} | {c["name"] for c in chunks}
        if any(p.get("files") for p in report["packages"]):
            licenses = self.out / "licenses"
            licenses.mkdir(exist_ok=True)
            used = sorted(p["package"] for p in report["packages"] if p["files"])
            for name in used:
                self.claim(state, f"licenses/{name}")
                shutil.copyfile(DOC_DIR / name / "copyright", licenses / name)
            self.claim(state, ATTRIBUTION)
            write_attribution(self.out / ATTRIBUTION, report["packages"], self.spec)
            written |= {ATTRIBUTION} | {f"licenses/{name}" for name in used}
        self.write_report(state, report)
        manifest = {
            "format": FORMAT, "source": self.source.describe(), "params": self.params,
            "files": report["kept"], "bytes": report["bytes_kept"],
            "written": sorted(written),
            "chunks": [{k: v for k, v in c.items() if k != "entries"} for c in chunks],
        }
        # One file entry per line: readable, diffable, and still valid JSON.
        body = json.dumps(manifest, indent=1)[:-2]
        lines = ",\n".join(json.dumps({"chunk": c["name"], **e}) for c in chunks for e in c["entries"])
        # last: its presence marks a finished build
        atomic_write_text(self.out / MANIFEST, f'{body},\n "entries": [\n{lines}\n ]\n}}\n')
        # What an earlier build wrote and this one did not (stale chunks, licences): only those,
        # and only names of the shape gocram writes (a tampered manifest cannot reach outside DIR).
        stale_names = sorted(set(state["written"]) - written - {WORK_DIR})
        stale_names += [f"{n}.tmp" for n in sorted(set(state["written"]) | written)]  # an interrupted write's
        for name in filter(OWN_NAME.match, stale_names):
            stale = self.out / name
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
        if (self.out / "licenses").is_dir() and not any((self.out / "licenses").iterdir()):
            (self.out / "licenses").rmdir()
        self.clear_work()

    def run(self) -> dict:
        t_start = time.perf_counter()
        previous = self.check_out_dir()
        state = self.load_work_state()
        self.ingest(state)
        self.timings["ingest_s"] = state.get("ingest_s", 0.0)
        t0 = time.perf_counter()
        roots = self.near_dedup(state)
        self.timings["near_dedup_s"] = time.perf_counter() - t0
        if not state["ingest"]["kept"]:
            report = self.report(state, roots, [])
            self.write_report(state, report)  # no manifest: this is not a corpus
            # A rerun reads the source again: the cure (a licence file, other filters) is in it.
            self.save_state({"params": self.params, "written": state["written"]})
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report["dropped"].items(),
                                                                 key=lambda kv: (-kv[1], kv[0])))
            hint = ""
            if report["dropped"].get("license") and self.source.kind == "dir":
                hint = (" (a licence file at the tree's root or a repository's is what gives files a "
                        "licence; filters.license_allow=[] keeps files without one)")
            raise GocramError(f"--source {self.spec!r}: no files survived the filters "
                              f"({report['files_in']:,} read; dropped: {reasons or 'none'}); "
                              f"see {self.out / REPORT}{hint}")
        chunks = self.write_chunks(state, roots, previous)
        report = self.report(state, roots, chunks)
        self.write_outputs(state, report, chunks)
        _log(f"wrote {report['kept']:,} files ({report['bytes_kept'] / 1e6:,.1f} MB) in "
             f"{len(chunks)} chunk(s) to {self.out} ({time.perf_counter() - t_start:.1f}s)")
        return report


def build_corpus(source: str, out_dir: str | Path, cfg: BuildConfig | None = None, *,
                 per_package_bytes: int | None = None, on_chunk: Callable[[int], None] | None = None,
                 source_kwargs: dict | None = None) -> dict:
    """Build a corpus directory; returns the report (also written to DIR/report.json)."""
    cfg = cfg or build_options()
    if per_package_bytes is not None:
        cfg = build_options({**cfg.to_dict(), "per_package_bytes": per_package_bytes})
    return Builder(source, Path(out_dir), cfg, on_chunk=on_chunk, source_kwargs=source_kwargs).run()


def write_attribution(path: Path, packages: list[dict], source: str) -> None:
    lines = [
        "# Attribution of the Go source in this corpus",
        "",
        f"Built by `gocram data build --source {source}` from Debian's packaged Go sources.",
        "Each file keeps its package's licence; the full copyright files are in `licenses/`.",
        "",
        "| package | version | licence | files | bytes |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {p['package']} | {p['version']} | {p['license']} | {p['files']} | {p['bytes']} |"
              for p in packages if p.get("files")]
    atomic_write_text(path, "\n".join(lines) + "\n")
