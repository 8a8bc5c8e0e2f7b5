"""The commit a result row names: HEAD, '-dirty' only for changed code, not for results/."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gocram.core.env import describe_checkout

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                   check=True, capture_output=True)


def test_a_changed_result_table_is_not_dirty_but_changed_code_is(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert describe_checkout(tmp_path) == head

    (tmp_path / "results" / "table.md").write_text("rewritten by the harness\n")
    assert describe_checkout(tmp_path) == head

    (tmp_path / "model.py").write_text("x = 2\n")
    assert describe_checkout(tmp_path) == head + "-dirty"


def test_outside_a_checkout_the_environment_names_the_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("GOCRAM_GIT_SHA", "abc123")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert describe_checkout(tmp_path) == "abc123"


def test_a_cpu_is_named_with_threads_and_its_isa_and_native_bf16_shows(monkeypatch):
    import torch

    from gocram.core import env as dev

    capability = torch.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert dev.cpu_isa() == capability + "+bf16"
    name = dev.device_name(torch.device("cpu"))
    assert name.endswith(f"thread{'s' if torch.get_num_threads() != 1 else ''}, {capability}+bf16)")

    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2"}))
    assert dev.cpu_isa() == capability


def test_auto_precision_is_bf16_only_where_the_device_has_bf16_arithmetic(monkeypatch):
    import torch

    from gocram import plan

    cpu = torch.device("cpu")
    monkeypatch.setattr(plan, "cpu_has_native_bf16", lambda: True)
    assert plan.resolve_precision("auto", plan.Env.for_device(cpu)) == "bf16"
    # an explicit choice always stands
    assert plan.resolve_precision("fp32", plan.Env.for_device(cpu)) == "fp32"
    monkeypatch.setattr(plan, "cpu_has_native_bf16", lambda: False)
    assert plan.resolve_precision("auto", plan.Env.for_device(cpu)) == "fp32"
    gpu = plan.Env("cuda", "a GPU", triton_interpret=False, device_count=1, native_bf16=True)
    assert plan.resolve_precision("auto", gpu) == "bf16"
