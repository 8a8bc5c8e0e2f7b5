"""Hostile and careless input to `gocram data build` (issue 19): licences of dir: trees, a build
where nothing survives, bad file names, unreadable directories, mistyped parquet columns, package
names that look like options, an --out that holds someone else's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gocram.core.errors import GocramError
from gocram.data.corpus.build import build_corpus
from gocram.data.corpus.debian import installed_version, read_package_list
from gocram.data.corpus.docs import read_corpus
from gocram.data.corpus.licenses import identify
from gocram.data.corpus.options import build_options
from gocram.data.corpus.sources import open_source
from tests.datagen import GO, MIT, real_rows, stack_row, write_stack

FAST = ["near_dedup.num_perm=64", "decontam.enabled=false"]

COMMON_LICENSES = Path("/usr/share/common-licenses")


def go_tree(root: Path, n: int = 6) -> Path:
    """n small, distinct Go files of real code under root/pkg."""
    for i, row in enumerate(real_rows(n, repos=n)):
        path = root / "pkg" / f"f{i}.go"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(row["content"])
    return root


def entries(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["entries"]


# -- licences of dir: trees -------------------------------------------------------------------

def test_a_dir_tree_with_an_mit_licence_keeps_its_files(tmp_path):
    tree = go_tree(tmp_path / "myrepo")
    (tree / "LICENSE").write_text(MIT)
    report = build_corpus(f"dir:{tree}", tmp_path / "out", build_options(overrides=FAST))
    assert report["kept"] == 6 and "license" not in report["dropped"]
    assert {e["license"] for e in entries(tmp_path / "out")} == {"MIT"}
    assert report["license_roots"] == [{"dir": ".", "file": "LICENSE", "license": "MIT",
                                        "score": report["license_roots"][0]["score"]}]
    assert {d.license for d in read_corpus(tmp_path / "out")} == {"MIT"}  # The Stack's column


def test_each_repository_root_inside_a_tree_has_its_own_licence(tmp_path):
    if not (COMMON_LICENSES / "GPL-3").is_file():
        pytest.skip("needs /usr/share/common-licenses (Debian's base-files)")
    tree = tmp_path / "src"
    go_tree(tree / "permissive")
    (tree / "permissive" / "go.mod").write_text("module example.com/permissive\n")
    (tree / "permissive" / "LICENSE.txt").write_text((COMMON_LICENSES / "Apache-2.0").read_text())
    go_tree(tree / "copyleft", 3)
    (tree / "copyleft" / ".git").mkdir()
    (tree / "copyleft" / "COPYING").write_text((COMMON_LICENSES / "GPL-3").read_text())
    (tree / "unlicensed" / "x.go").parent.mkdir(parents=True)
    (tree / "unlicensed" / "x.go").write_text(GO)
    report = build_corpus(f"dir:{tree}", tmp_path / "out", build_options(overrides=FAST))
    kept = entries(tmp_path / "out")
    assert {(e["repo"], e["license"]) for e in kept} == {("src/permissive", "Apache-2.0")}
    assert report["dropped"]["license"] == 3 + 1  # GPL-3.0 and the tree without a licence file
    by_dir = {r["dir"]: r["license"] for r in report["license_roots"]}
    assert by_dir == {"permissive": "Apache-2.0", "copyleft": "GPL-3.0-only"}


def test_a_licence_file_that_matches_nothing_is_not_a_licence():
    assert identify("All rights reserved. Do not copy.")[0] is None
    assert identify(MIT)[0] == "MIT"


def test_when_nothing_survives_the_error_lists_the_reasons_and_the_report_is_written(tmp_path):
    tree = go_tree(tmp_path / "nolicence")
    (tree / "vendor").mkdir()
    (tree / "vendor" / "v.go").write_text(GO)
    out = tmp_path / "out"
    with pytest.raises(GocramError, match=r"no files survived the filters \(7 read; dropped: "
                                          r"license 6, excluded_dir 1\); see .*report\.json "
                                          r"\(a licence file"):
        build_corpus(f"dir:{tree}", out, build_options(overrides=FAST))
    report = json.loads((out / "report.json").read_text())
    assert report["kept"] == 0 and report["dropped"] == {"license": 6, "excluded_dir": 1}
    assert not (out / "manifest.json").exists()  # not a corpus
    (tree / "LICENSE").write_text(MIT)  # the same --out works once the cause is fixed
    assert build_corpus(f"dir:{tree}", out, build_options(overrides=FAST))["kept"] == 6


# -- bad names, unreadable directories ---------------------------------------------------------

def test_a_non_utf8_file_name_is_counted_not_fatal(tmp_path):
    tree = go_tree(tmp_path / "t")
    (tree / "LICENSE").write_text(MIT)
    for raw in (b"caf\xe9.go", b"\xff\xfe/inside.go"):
        path = os.fsencode(tree / "pkg") + b"/" + raw
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(GO.encode())
    report = build_corpus(f"dir:{tree}", tmp_path / "out", build_options(overrides=FAST))
    assert report["dropped"]["bad_file_name"] == 2 and report["kept"] == 6
    assert report["files_in"] == report["kept"] + sum(report["dropped"].values())


def walk_failing_on(name: str):
    """os.walk, except that directory `name` cannot be listed (what os.walk reports through
    onerror for a directory without read permission; the suite runs as root, which reads all)."""
    def walk(top, onerror=None, followlinks=False):
        for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=followlinks):
            if name in dirnames:
                dirnames.remove(name)
                onerror(PermissionError(13, "Permission denied", os.path.join(dirpath, name)))
            yield dirpath, dirnames, filenames
    return walk


def test_unreadable_directories_are_counted(tmp_path):
    tree = go_tree(tmp_path / "t")
    (tree / "LICENSE").write_text(MIT)
    (tree / "locked").mkdir()
    (tree / "locked" / "a.go").write_text(GO)
    cfg = build_options(overrides=FAST)
    source = open_source(f"dir:{tree}", cfg, walk=walk_failing_on("locked"))
    assert len(list(source.files())) == 6 and source.notes["unreadable_dirs"] == 1
    report = build_corpus(f"dir:{tree}", tmp_path / "out", cfg,
                          source_kwargs={"walk": walk_failing_on("locked")})
    assert report["notes"]["unreadable_dirs"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 directory anyway")
def test_a_mode_000_directory_is_counted(tmp_path):
    tree = go_tree(tmp_path / "t")
    (tree / "locked").mkdir()
    (tree / "locked" / "a.go").write_text(GO)
    os.chmod(tree / "locked", 0)
    try:
        source = open_source(f"dir:{tree}", build_options(overrides=FAST))
        assert len(list(source.files())) == 6 and source.notes["unreadable_dirs"] == 1
    finally:
        os.chmod(tree / "locked", 0o755)


# -- parquet columns -------------------------------------------------------------------------

def test_a_plain_string_licences_column_is_one_licence(tmp_path):
    rows = [stack_row(GO, "org/a", "a.go")]
    schema = pa.schema([("content", pa.string()), ("max_stars_repo_name", pa.string()),
                        ("max_stars_repo_path", pa.string()), ("licenses", pa.string())])
    table = pa.Table.from_pylist([{**rows[0], "licenses": "MIT"}], schema=schema)
    pq.write_table(table, tmp_path / "a.parquet")
    report = build_corpus(f"parquet:{tmp_path}/*.parquet", tmp_path / "out", build_options(overrides=FAST))
    assert report["kept"] == 1 and entries(tmp_path / "out")[0]["license"] == "MIT"
    assert read_corpus(tmp_path)[0].license == "MIT"  # not "M"


@pytest.mark.parametrize("column, arrow_type, value", [
    ("max_stars_repo_path", pa.int64(), 7),
    ("licenses", pa.list_(pa.int64()), [1, 2]),
    ("max_stars_count", pa.string(), "many"),
    ("content", pa.binary(), b"package x\n"),
    ("max_stars_repo_name", pa.float64(), 1.5),
])
def test_a_mistyped_parquet_column_is_a_one_line_error_naming_it(tmp_path, column, arrow_type, value):
    base = {"content": GO, "max_stars_repo_name": "org/a", "max_stars_repo_path": "a.go",
            "licenses": ["MIT"], "max_stars_count": 5}
    types = {"content": pa.string(), "max_stars_repo_name": pa.string(), "max_stars_repo_path": pa.string(),
             "licenses": pa.list_(pa.string()), "max_stars_count": pa.int64(), column: arrow_type}
    pq.write_table(pa.Table.from_pylist([{**base, column: value}], schema=pa.schema(list(types.items()))),
                   tmp_path / "bad.parquet")
    cfg = build_options(overrides=FAST + ["filters.min_stars=1"])
    with pytest.raises(GocramError, match=rf"bad\.parquet: column '{column}' has type"):
        build_corpus(f"parquet:{tmp_path}/*.parquet", tmp_path / "out", cfg)
    with pytest.raises(GocramError, match=rf"column '{column}'"):
        read_corpus(tmp_path)


@pytest.mark.parametrize("column, value", [
    ("licenses", 3), ("licenses", [None]), ("max_stars_count", "12"), ("max_stars_repo_path", 4),
])
def test_a_mistyped_stack_value_is_a_one_line_error_naming_it(tmp_path, column, value):
    rows = [{**stack_row(GO, "org/a", "a.go", stars=3), column: value}]
    cfg = build_options(overrides=FAST + ["filters.min_stars=1"])
    with pytest.raises(GocramError, match=rf"stack: column '{column}' holds"):
        build_corpus("stack", tmp_path / "out", cfg, source_kwargs={"load": lambda: iter(rows)})


@pytest.mark.parametrize("gocram_column", [None, []])
def test_the_stacks_string_licence_is_one_licence(tmp_path, gocram_column):
    rows = [{**stack_row(GO, "org/a", "a.go"), "licenses": gocram_column, "max_stars_repo_licenses": "MIT"}]
    source = open_source("stack", build_options(overrides=FAST), load=lambda: iter(rows))
    assert next(iter(source.files())).licenses == ("MIT",)


# -- package names -----------------------------------------------------------------------------

def test_a_package_list_line_that_is_not_a_package_name_is_refused(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("golang-golang-x-text-dev\n--admindir=/tmp/fake  # sneaky\n")
    with pytest.raises(GocramError,
                       match=r"list\.txt:2: '--admindir=/tmp/fake' is not a Debian package name"):
        read_package_list(listing)


def test_dpkg_never_reads_a_name_as_an_option(tmp_path):
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs dpkg-query")
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text("Package: planted\nStatus: install ok installed\nVersion: 6.6.6\n"
                                  "Architecture: all\nMaintainer: x <x@example.org>\nDescription: x\n\n")
    (admin / "info" / "planted.list").write_text("/etc/hostname.go\n")
    assert subprocess.run(["dpkg-query", "-W", f"--admindir={admin}"], capture_output=True,
                          text=True).stdout.startswith("planted")  # the fake database works
    assert installed_version(f"--admindir={admin}") is None


# -- --out: never delete what gocram did not write ----------------------------------------------

def test_a_foreign_non_empty_out_is_refused_and_left_alone(tmp_path):
    tree = go_tree(tmp_path / "t")
    (tree / "LICENSE").write_text(MIT)
    out = tmp_path / "mine"
    (out / ".work").mkdir(parents=True)
    (out / ".work" / "notes.txt").write_text("my notes")
    (out / "chunk-00003.parquet.orig").write_text("my backup")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(GocramError, match="not empty .* and not a gocram build"):
        build_corpus(f"dir:{tree}", out, build_options(overrides=FAST))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_a_rebuild_removes_only_what_its_manifest_lists(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = real_rows(60)
    write_stack(src / "a.parquet", rows)
    out = tmp_path / "out"
    cfg = build_options(overrides=FAST + ["chunk_mb=0.05", "near_dedup.enabled=false"])
    first = build_corpus(f"parquet:{src}/*.parquet", out, cfg)
    assert first["chunks"] >= 3
    manifest = json.loads((out / "manifest.json").read_text())
    chunk_names = {c["name"] for c in manifest["chunks"]}
    assert set(manifest["written"]) == {"manifest.json", "report.json"} | chunk_names
    # Things a person put there: none of them may go.
    (out / "chunk-00099.parquet.bak").write_text("backup")
    (out / "notes.txt").write_text("notes")
    (out / ".work").mkdir()
    (out / ".work" / "mine.txt").write_text("mine")
    write_stack(src / "a.parquet", rows[:10])  # fewer files: fewer chunks, stale ones to remove
    second = build_corpus(f"parquet:{src}/*.parquet", out, cfg)
    assert second["chunks"] < first["chunks"]
    names = {p.name for p in out.iterdir()}
    assert {"chunk-00099.parquet.bak", "notes.txt", ".work"} <= names
    assert (out / ".work" / "mine.txt").read_text() == "mine"
    chunks = {n for n in names if n.startswith("chunk-") and n.endswith(".parquet")}
    assert chunks == {c["name"] for c in json.loads((out / "manifest.json").read_text())["chunks"]}


def test_a_tampered_manifest_cannot_make_a_rebuild_delete_outside_out(tmp_path):
    tree = go_tree(tmp_path / "t")
    (tree / "LICENSE").write_text(MIT)
    out = tmp_path / "out"
    cfg = build_options(overrides=FAST)
    build_corpus(f"dir:{tree}", out, cfg)
    victim = tmp_path / "victim.txt"
    victim.write_text("not gocram's")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["written"] += ["../victim.txt", str(victim), "licenses/../../victim.txt"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    build_corpus(f"dir:{tree}", out, cfg)
    assert victim.read_text() == "not gocram's"


def test_a_debian_package_owning_a_non_utf8_name_is_counted_not_fatal(tmp_path, monkeypatch):
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs dpkg-query")
    files = tmp_path / "files"
    files.mkdir()
    (files / "good.go").write_text(GO)
    bad = os.fsencode(files) + b"/caf\xe9.go"
    with open(bad, "wb") as handle:
        handle.write(GO.encode())
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text("Package: golang-planted-dev\nStatus: install ok installed\nVersion: 1.0\n"
                                  "Architecture: all\nMaintainer: x <x@example.org>\nDescription: x\n\n")
    with open(admin / "info" / "golang-planted-dev.list", "wb") as handle:
        handle.write(os.fsencode(files) + b"\n" + os.fsencode(files / "good.go") + b"\n" + bad + b"\n")
    monkeypatch.setenv("DPKG_ADMINDIR", str(admin))  # dpkg-query reads this database instead
    listing = tmp_path / "list.txt"
    listing.write_text("golang-planted-dev\n")
    source = open_source(f"debian:{listing}", build_options(overrides=FAST))
    problems = sorted((f.path, f.problem) for f in source.files())
    assert problems == [("caf\\xe9.go", "bad_file_name"), ("good.go", None)]
