"""The step profiler (gocram/bench/step_profile.py) names every part with a time, on a tiny model."""

from __future__ import annotations

import json

import pytest

from gocram.bench.step_profile import PARTS, main
from gocram.config import load_config
from tests.conftest import SMALL_MODEL


def test_every_part_gets_a_positive_time_and_the_shares_sum_to_one(tmp_path, capsys):
    overrides = [*SMALL_MODEL, "model.n_layer=1", "model.d_model=32", "train.micro_batch=2"]
    main(["--config", "tiny", "--precision", "fp32", "bf16", "--steps", "2", "--warmup", "1",
          "--out", str(tmp_path), *overrides])
    rows = json.loads((tmp_path / "step_profile.json").read_text())
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    for row in rows:
        assert list(row["parts"]) == list(PARTS)
        for part, timing in row["parts"].items():
            assert timing["ms"] > 0 and timing["share"] > 0, (row["precision"], part)
        assert sum(t["share"] for t in row["parts"].values()) == pytest.approx(1.0, abs=1e-9)
        assert row["config_hash"] == load_config("tiny", overrides).hash()
        assert row["device"] and "torch" in row["versions"] and row["step_ms_median"] > 0
    table = (tmp_path / "step_profile.md").read_text()
    assert table == capsys.readouterr().out
    assert all(f"| {part} |" in table for part in PARTS)


def test_vary_gives_a_column_per_value_and_rejects_a_bad_spec(tmp_path, capsys):
    overrides = [*SMALL_MODEL, "model.n_layer=1", "model.d_model=32", "train.micro_batch=2",
                 "train.optimizer=muon"]
    main(["--config", "tiny", "--precision", "fp32", "--steps", "1", "--warmup", "1",
          "--vary", "impl.newton_schulz=torch,fp32", "--out", str(tmp_path), *overrides])
    rows = json.loads((tmp_path / "step_profile.json").read_text())
    assert [r["variant"] for r in rows] == ["impl.newton_schulz=torch", "impl.newton_schulz=fp32"]
    assert [r["config_hash"] for r in rows] == [
        load_config("tiny", [*overrides, f"impl.newton_schulz={v}"]).hash() for v in ("torch", "fp32")]
    header = "| part | fp32, impl.newton_schulz=torch | fp32, impl.newton_schulz=fp32 |"
    assert header in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--vary", "impl.newton_schulz", "--out", str(tmp_path)])
