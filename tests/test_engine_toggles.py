"""The `engine=<name>` harness toggle: overrides, support checks, and a cell launched by torchrun."""

from __future__ import annotations

import pytest

from gocram.ablations.matrix import Cell, Matrix
from gocram.ablations.runner import LabOptions, cell_launcher, run_matrix
from gocram.ablations.toggles import RunEnv, apply_toggles, engine_support
from gocram.config import load_config
from gocram.errors import ConfigError

CPU = RunEnv("cpu", "test CPU", False)


def test_engine_toggle_keeps_the_global_batch_over_two_cpu_processes():
    base = load_config("tiny", ["train.micro_batch=8", "model.seq_len=64"])
    cfg = apply_toggles(base, ("engine=ddp",))
    assert cfg.train.engine == "ddp" and cfg.train.micro_batch == 4
    assert cfg.train.batch_tokens == 8 * 64  # the base cell's global batch
    assert apply_toggles(base, ("engine=single",)).train == base.train.__class__(
        **{**base.train.__dict__, "engine": "single"})
    with pytest.raises(ConfigError, match="cannot be split over 2 processes"):
        apply_toggles(load_config("tiny", ["train.micro_batch=3"]), ("engine=zero1",))
    with pytest.raises(ConfigError, match="both set engine"):
        apply_toggles(base, ("engine=ddp", "engine=fsdp"))


def test_engine_support_and_launcher():
    cfg = apply_toggles(load_config("tiny", ["train.micro_batch=8"]), ("engine=ddp",))
    assert engine_support(CPU, cfg) is None  # two gloo processes
    one_gpu = RunEnv("cuda", "A40", False, device_count=1)
    assert "needs >= 2 GPUs, found 1" in engine_support(one_gpu, cfg)
    assert engine_support(RunEnv("cuda", "A40", False, device_count=2), cfg) is None
    assert cell_launcher(cfg)[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert cell_launcher(load_config("tiny")) == cell_launcher(load_config("tiny"))[:1]


def test_an_engine_cell_runs_under_torchrun(tmp_path, small_overrides, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    matrix = Matrix(name="engines", base="tiny", overrides=tuple(small_overrides), budget_s=1.5,
                    mode="list", cells=(Cell("ddp", ("engine=ddp",)),))
    rows = run_matrix(matrix, LabOptions(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs"),
                      env=CPU)
    assert [r["status"] for r in rows] == ["ok"], rows
    assert rows[0]["config"]["train.engine"] == "ddp" and rows[0]["config"]["train.micro_batch"] == 2
