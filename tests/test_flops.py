"""FLOP counts, the datasheet peak table's exact device matching, and MFU's refusals."""

from __future__ import annotations

import pytest

from gocram.config import ModelConfig
from gocram.measure.flops import (
    DroppedWork,
    KeptTokens,
    flops_per_token,
    matmul_params_of,
    mfu,
    peak_tflops,
)
from gocram.models.gpt import GPT
from gocram.models.token_drop import TokenDrop

CFG = dict(n_layer=3, n_head=2, d_model=32, seq_len=16, vocab_size=100)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 SXM5 80GB", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", 835.5), ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.5),
    ("NVIDIA GH200 480GB", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100-PCIE-40GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA RTX A6000", 154.8), ("NVIDIA A40", 149.7),
])
def test_known_devices_get_their_own_datasheet_peak(name, peak):
    assert peak_tflops(name) == peak


@pytest.mark.parametrize("name", ["NVIDIA RTX A4000", "NVIDIA A10", "NVIDIA A100X", "NVIDIA RTX A6000 Ada",
                                  "NVIDIA H1000", "Tesla V100-SXM2-16GB", "AMD EPYC (2 threads)", ""])
def test_other_devices_match_nothing(name):
    """Substring matching gave "RTX A4000" the A40's peak; a name must match a pattern whole."""
    assert peak_tflops(name) is None


def test_matmul_params_count_the_linear_weights_and_the_head():
    cfg = ModelConfig(**CFG)
    model = GPT(cfg)
    d, V = cfg.d_model, cfg.padded_vocab_size
    per_block = 3 * d * d + d * d + 2 * cfg.mlp_ratio * d * d  # qkv, proj, fc, mlp proj
    assert matmul_params_of(model.blocks[0]) == per_block
    assert model.matmul_params() == matmul_params_of(model) == cfg.n_layer * per_block + d * V


def test_flops_per_token_is_6n_plus_attention():
    cfg = ModelConfig(**CFG)
    assert flops_per_token(cfg, 1000) == 6 * 1000 + 12 * 3 * 32 * 16


def test_token_dropping_counts_only_the_work_done():
    cfg = ModelConfig(**CFG, token_drop_rate=0.5, token_drop_until=1.0)
    drop = TokenDrop(cfg)
    kept = KeptTokens(drop, cfg.seq_len)
    for fraction in (0.0, 0.5, 1.0):  # the model's hook moves the rate first, then this one reads it
        drop.set_budget_fraction(fraction)
        kept(fraction)
    # seq_len 16, keep in multiples of 8: rate 0.5 keeps 8, 0.25 keeps 16 (12 rounded up), 0 keeps 16
    assert kept.shares == [0.5, 1.0, 1.0]
    work = kept.work(layer_matmul_params=500)
    assert work == DroppedWork(layers=1, layer_matmul_params=500, mean_kept=2.5 / 3,
                               mean_kept_squared=2.25 / 3)
    full = flops_per_token(cfg, 2000)
    skipped = 6 * 500 * (1 - 2.5 / 3) + 12 * 32 * 16 * (1 - 2.25 / 3)  # one middle layer of three
    assert flops_per_token(cfg, 2000, work) == pytest.approx(full - skipped)
    assert KeptTokens(TokenDrop(ModelConfig(**CFG)), 16).work(500) is None  # no dropping layers


def test_mfu_above_100_percent_is_an_error_note_not_a_figure():
    value, note = mfu(1e6, 1e6, "cpu", "cpu", measured_peak_tflops=0.5)  # 1 TFLOPS done on 0.5
    assert value is None and note.startswith("error: MFU 200.0% is above 100%")
    value, note = mfu(1e6, 1e6, "cuda", "NVIDIA A40")
    assert value == pytest.approx(1e12 / 149.7e12) and note == "datasheet dense bf16 peak 150 TFLOPS"
    assert mfu(1e6, 1e6, "cuda", "NVIDIA RTX A4000") == (
        None, "no peak known for 'NVIDIA RTX A4000'; add it to PEAK_BF16_TFLOPS")


def test_a_token_dropping_run_records_the_flops_it_did(tmp_path, small_overrides):
    from gocram.config import load_config
    from gocram.train.trainer import Trainer

    cfg = load_config("tiny", small_overrides + [
        "model.n_layer=3", "model.token_drop_rate=0.5", "model.token_drop_until=0.5",
        "train.clock=steps", "train.max_steps=6", "impl.attention=math"])
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.run()
    # seq_len 64, rate 0.5 falling to 0 at half the steps: 32, 48, 56 tokens kept, then all 64
    assert trainer.kept_tokens.shares == [0.5, 0.75, 0.875, 1.0, 1.0, 1.0]
    full = flops_per_token(cfg.model, trainer.n_matmul_params)
    done = flops_per_token(cfg.model, trainer.n_matmul_params,
                           trainer.kept_tokens.work(matmul_params_of(trainer.model.blocks[0])))
    assert result["flops_per_token"] == done < full
