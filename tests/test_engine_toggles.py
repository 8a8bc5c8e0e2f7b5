"""The `engine=<name>` harness toggle: overrides, support checks, and a cell launched by torchrun."""

from __future__ import annotations

import pytest

from gocram.ablations.matrix import Cell, Matrix
from gocram.ablations.runner import LabOptions, cell_launcher, run_matrix
from gocram.ablations.toggles import apply_toggles, unsupported_reason
from gocram.config import load_config
from gocram.core.errors import ConfigError
from gocram.plan import Env

CPU = Env("cpu", "test CPU", False, native_bf16=False)


def test_engine_toggle_keeps_the_global_batch_over_two_cpu_processes():
    base = load_config("tiny", ["train.micro_batch=8", "model.seq_len=64"])
    cfg = apply_toggles(base, ("engine=ddp",))
    assert cfg.impl.engine == "ddp" and cfg.train.micro_batch == 4
    assert cfg.train.batch_tokens == 8 * 64  # the base cell's global batch
    assert apply_toggles(base, ("engine=single",)) == base
    assert apply_toggles(base, ("engine=ddp",)).meaning_hash() != base.meaning_hash()  # micro_batch split
    with pytest.raises(ConfigError, match="cannot be split over 2 processes"):
        apply_toggles(load_config("tiny", ["train.micro_batch=3", "train.optimizer=adamw"]),
                      ("engine=zero1",))
    with pytest.raises(ConfigError, match="both set engine"):
        apply_toggles(base, ("engine=ddp", "engine=fsdp"))


def test_engine_support_and_launcher():
    cfg = apply_toggles(load_config("tiny", ["train.micro_batch=8", "train.precision=fp32"]), ("engine=ddp",))
    assert unsupported_reason(CPU, cfg) is None  # two gloo processes
    one_gpu = Env("cuda", "A40", False, device_count=1)
    assert "needs >= 2 GPUs, found 1" in unsupported_reason(one_gpu, cfg)
    assert cell_launcher(cfg)[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert cell_launcher(load_config("tiny")) == cell_launcher(load_config("tiny"))[:1]


def test_an_engine_cell_runs_under_torchrun(tmp_path, small_overrides, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    matrix = Matrix(name="engines", base="tiny", overrides=tuple(small_overrides), budget_s=1.5,
                    mode="list", cells=(Cell("ddp", ("engine=ddp",)),))
    rows = run_matrix(matrix, LabOptions(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs"),
                      env=CPU)
    assert [r["status"] for r in rows] == ["ok"], rows
    assert rows[0]["config"]["impl.engine"] == "ddp" and rows[0]["config"]["train.micro_batch"] == 2
