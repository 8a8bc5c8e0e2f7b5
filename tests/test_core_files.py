"""The one atomic writer: new bytes or old bytes, never half, and nothing left beside the file."""

import json

import pytest

from gocram.core.files import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, temp_path


class WriterFailed(Exception):
    pass


def test_each_writer_replaces_the_content(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"\x00new")
    assert target.read_bytes() == b"\x00new"
    atomic_write_text(target, "text\n")
    assert target.read_text() == "text\n"
    atomic_write_json(target, {"a": [1, 2]})
    assert target.read_text() == json.dumps({"a": [1, 2]}, indent=1)
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_yields_a_sibling_and_renames_it_on_success(tmp_path):
    target = tmp_path / "model.pt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"weights")
        assert not target.exists()  # nothing visible until the writer is done
    assert target.read_bytes() == b"weights"
    assert not tmp.exists()


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "status.json"
    target.write_text("old")
    with pytest.raises(WriterFailed), atomic_path(target) as tmp:
        tmp.write_text("half of the ne")
        raise WriterFailed
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_value_json_cannot_encode_leaves_the_old_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old"
    assert not temp_path(target).exists()


def test_a_writer_that_never_creates_the_temp_fails_without_touching_the_file(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old")
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass
    assert target.read_text() == "old"
