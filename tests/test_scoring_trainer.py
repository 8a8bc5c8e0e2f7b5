"""eval.stride in training-time validation, and the comparators in the result row's data.meta."""

import pytest

from gocram.config import load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.train.trainer import train


def test_result_row_keeps_chunked_and_adds_sliding(small_overrides, tmp_path):
    cfg = load_config("tiny", [*small_overrides, "train.budget_s=2", "eval.stride=16"])
    row = train(cfg, tmp_path / "run")
    assert row["status"] == "ok"
    assert row["val_bpb"] > 0 and row["val_bpb_sliding"] > 0
    assert row["val_bpb_sliding"] != pytest.approx(row["val_bpb"], rel=1e-6)
    comparators = row["data"]["comparators"]
    assert comparators["bytes"] == row["data"]["val_bytes"] == row["val_bytes"]
    for name in ("xz -9e", "zstd -19 --long", "ppmd"):
        assert 0 < comparators[name]["concatenated_bpb"] <= comparators[name]["per_file_bpb"] * 1.05
    assert comparators["xz -9e"]["concatenated_bpb"] == pytest.approx(row["xz_bpb"])


def test_stride_T_gives_the_chunked_number(small_overrides, tmp_path):
    cfg = load_config("tiny", [*small_overrides, "train.max_steps=2", "train.clock=steps",
                               "eval.stride=64"])
    row = train(cfg, tmp_path / "run")
    assert row["val_bpb_sliding"] == pytest.approx(row["val_bpb"], rel=1e-6)


def test_bad_stride_names_the_field(small_overrides, tmp_path):
    with pytest.raises(ConfigError, match="eval.stride"):
        load_config("tiny", [*small_overrides, "eval.stride=-1"])
    cfg = load_config("tiny", [*small_overrides, "eval.stride=65"])
    with pytest.raises(GocramError, match="eval.stride=65 exceeds model.seq_len=64"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
