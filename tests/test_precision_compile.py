"""Few-step CPU training runs for the toggles that change how the same model is computed:
`compile` is declared exact (same losses as eager, up to float reassociation), `precision`
approximate (bf16, and fp16 with loss scaling, stay finite and close to fp32)."""

from __future__ import annotations

import json
import math
import shutil
import typing

import pytest
import torch

from gocram.config import load_config
from gocram.core.errors import ConfigError
from gocram.train.compile import COMPILE_MODES, inductor_cache_dir
from gocram.train.trainer import Trainer
from tests.conftest import run_gocram, small_overrides_for

STEPS = 8
# Stated tolerances, in nats of the per-step training loss (about 6.2 at the start, the ln of the
# 512-token vocabulary, falling by about 0.25 over the 8 steps, so a run that stops learning fails):
# compile reorders float sums only; autocast rounds the matmuls' inputs to bf16 (8 mantissa bits)
# or fp16 (10), with the losses and the optimizer in fp32.
COMPILE_ATOL = 1e-3
BF16_ATOL = 5e-3
FP16_ATOL = 2e-3


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [row["loss"] for row in map(json.loads, lines) if "loss" in row]


def _trainer(tmp_path, go_corpus, cache_dir, name, *overrides) -> Trainer:
    cfg = load_config("tiny", [*small_overrides_for(go_corpus, cache_dir), "impl.attention=math",
                               "train.clock=steps", f"train.max_steps={STEPS}",
                               "impl.log_every_steps=1", *overrides])
    return Trainer(cfg, tmp_path / name)


@pytest.fixture(scope="module")
def fp32_losses(tmp_path_factory, go_corpus, cache_dir) -> list[float]:
    tmp = tmp_path_factory.mktemp("fp32")
    trainer = _trainer(tmp, go_corpus, cache_dir, "run")
    assert trainer.run()["status"] == "ok"
    losses = _losses(tmp / "run")
    assert len(losses) == STEPS and losses[-1] < losses[0]  # it trains
    return losses


def test_compile_gives_the_eager_losses_and_a_warm_cache_the_second_time(
        tmp_path, go_corpus, cache_dir, fp32_losses):
    """Two processes compile the same model with the same cache directory: the first compiles
    (cold), the second loads inductor's cache (warm); both train to the eager losses."""
    shutil.rmtree(inductor_cache_dir(cache_dir), ignore_errors=True)  # cold for this test
    args = ["train", "--config", "tiny", *small_overrides_for(go_corpus, cache_dir),
            "impl.attention=math", "train.clock=steps", f"train.max_steps={STEPS}",
            "impl.log_every_steps=1", "impl.compile=true"]
    results = []
    for name in ("cold", "warm"):
        done = run_gocram(*args, "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads((tmp_path / name / "result.json").read_text()))
        assert _losses(tmp_path / name) == pytest.approx(fp32_losses, abs=COMPILE_ATOL)
    cold, warm = results
    assert (cold["compile_cache"], warm["compile_cache"]) == ("cold", "warm")
    assert cold["compile_s"] > 0 and warm["compile_s"] >= 0
    assert any(inductor_cache_dir(cache_dir).iterdir())  # under the run's cache directory


def test_compile_mode_validates_and_needs_compile():
    from gocram.ablations.toggles import apply_toggles
    from gocram.config import ImplConfig

    base = load_config("tiny")
    cfg = apply_toggles(base, ("compile_mode=max-autotune",))
    assert (cfg.impl.compile, cfg.impl.compile_mode) == (True, "max-autotune")
    assert cfg.meaning_hash() == base.meaning_hash()
    assert typing.get_args(typing.get_type_hints(ImplConfig)["compile_mode"]) == COMPILE_MODES
    with pytest.raises(ConfigError, match="impl.compile_mode='max-autotune' needs impl.compile=true"):
        load_config("tiny", ["impl.compile_mode=max-autotune"])
    with pytest.raises(ConfigError, match="impl.compile_mode"):
        load_config("tiny", ["impl.compile=true", "impl.compile_mode=fast"])
    with pytest.raises(ConfigError, match="both set compile"):
        apply_toggles(base, ("compile", "compile_mode=max-autotune"))


def test_bf16_stays_finite_and_close_to_fp32(tmp_path, go_corpus, cache_dir, fp32_losses):
    trainer = _trainer(tmp_path, go_corpus, cache_dir, "run", "train.precision=bf16")
    assert not trainer.scaler.is_enabled()  # bf16 has fp32's range: no loss scaling
    assert trainer.run()["status"] == "ok"
    losses = _losses(tmp_path / "run")
    assert all(math.isfinite(x) for x in losses)
    assert losses == pytest.approx(fp32_losses, abs=BF16_ATOL)
    assert losses != fp32_losses  # autocast really ran in bf16


def test_fp16_with_loss_scaling_stays_finite_and_close_to_fp32(tmp_path, go_corpus, cache_dir, fp32_losses):
    trainer = _trainer(tmp_path, go_corpus, cache_dir, "run", "train.precision=fp16")
    assert trainer.scaler.is_enabled()
    assert trainer.run()["status"] == "ok"
    losses = _losses(tmp_path / "run")
    assert all(math.isfinite(x) for x in losses)
    assert losses == pytest.approx(fp32_losses, abs=FP16_ATOL)
    assert losses != fp32_losses


def test_the_fp16_scaler_really_updates(tmp_path, go_corpus, cache_dir):
    """A start scale that overflows fp16 gradients, and growth after every good step: the scale
    must fall on overflow (that step skipped) and rise again (a step applied), losses finite."""
    trainer = _trainer(tmp_path, go_corpus, cache_dir, "run", "train.precision=fp16")
    # The trainer's own scaler, swapped before the run for one that reacts within a few steps.
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_interval=1)
    scales: list[float] = []
    trainer.step_hooks.append(lambda fraction: scales.append(trainer.scaler.get_scale()))
    assert trainer.run()["status"] == "ok"
    scales.append(trainer.scaler.get_scale())
    falls = [b < a for a, b in zip(scales[:-1], scales[1:], strict=True)]
    rises = [b > a for a, b in zip(scales[:-1], scales[1:], strict=True)]
    assert any(falls) and any(rises), scales
    losses = _losses(tmp_path / "run")
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
