"""Optimizer recipes: parameter groups by role, per-group LRs under one schedule, Muon's momentum
warm-up, state in checkpoints (resume exact), a few CPU steps that learn, and Muon under DDP."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from gocram.config import ModelConfig, load_config
from gocram.models.gpt import GPT
from gocram.train.optimizers import OPTIMIZERS, MuonRecipe, set_lr_multiplier
from gocram.train.trainer import train
from tests.test_engines import final_params, losses, max_diff, torchrun


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=2, n_head=2, d_model=32, seq_len=16, vocab_size=100))


def _train_cfg(**kw):
    return load_config("tiny", [f"train.{k}={v}" for k, v in kw.items()]).train


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    model = _model()
    optimizer = OPTIMIZERS.get("muon").build(model.param_roles(), _train_cfg(lr=0.003, matrix_lr=0.05),
                                             fused=False)
    muon_params = {id(p) for g in optimizer.parts["muon"].param_groups for p in g["params"]}
    blocks = {id(p) for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2}
    assert muon_params == blocks
    adam_params = {id(p) for g in optimizer.parts["adamw"].param_groups for p in g["params"]}
    assert adam_params == {id(p) for p in model.parameters()} - blocks
    assert {g["base_lr"] for g in optimizer.parts["muon"].param_groups} == {0.05}
    assert {g["base_lr"] for g in optimizer.parts["adamw"].param_groups} == {0.003}
    set_lr_multiplier(optimizer, 0.5)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [0.0015, 0.025]


def test_adamw_is_one_optimizer_with_decay_on_matrices_only():
    model = _model()
    optimizer = OPTIMIZERS.get("adamw").build(model.param_roles(), _train_cfg(weight_decay=0.1), fused=False)
    assert list(optimizer.parts) == ["adamw"]
    decayed = [g for g in optimizer.param_groups if g["weight_decay"] > 0]
    assert all(p.dim() == 2 for g in decayed for p in g["params"])
    assert all(p.dim() < 2 for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"])


def test_muon_momentum_warms_up_over_the_stated_budget_fraction():
    tc = _train_cfg(muon_momentum_start=0.85, muon_momentum=0.95, muon_momentum_warmup_frac=0.2)
    assert MuonRecipe.momentum_at(0.0, tc) == pytest.approx(0.85)
    assert MuonRecipe.momentum_at(0.1, tc) == pytest.approx(0.90)
    assert MuonRecipe.momentum_at(0.2, tc) == MuonRecipe.momentum_at(0.9, tc) == pytest.approx(0.95)
    model = _model()
    optimizer = OPTIMIZERS.get("muon").build(model.param_roles(), tc, fused=False)
    MuonRecipe.set_budget_fraction(optimizer, 0.05, tc)
    assert optimizer.parts["muon"].param_groups[0]["momentum"] == pytest.approx(0.875)


def test_grouped_state_round_trips():
    model = _model()
    tc = _train_cfg()
    optimizer = OPTIMIZERS.get("muon").build(model.param_roles(), tc, fused=False)
    idx = torch.randint(0, 100, (4, 16))
    for _ in range(2):
        model(idx, idx).backward()
        optimizer.step()
        optimizer.zero_grad()
    state = copy.deepcopy(optimizer.state_dict())  # torch's state_dict shares the live tensors
    twin = _model()
    twin.load_state_dict(model.state_dict())
    restored = OPTIMIZERS.get("muon").build(twin.param_roles(), tc, fused=False)
    restored.load_state_dict(state)
    for m, opt in ((model, optimizer), (twin, restored)):
        m(idx, idx).backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="parts"):
        restored.load_state_dict({"adamw": state["adamw"]})


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_few_cpu_steps_learn(tmp_path, small_overrides, optimizer):
    cfg = load_config("tiny", [*small_overrides, f"train.optimizer={optimizer}", "train.clock=steps",
                               "train.max_steps=40", "impl.log_every_steps=1", "impl.ckpt_every_s=0"])
    result = train(cfg, tmp_path / optimizer)
    steps = [json.loads(line) for line in (tmp_path / optimizer / "log.jsonl").read_text().splitlines()]
    loss = [r["loss"] for r in steps if "loss" in r]
    assert result["optimizer"] == optimizer and len(loss) == 40
    assert sum(loss[-5:]) / 5 < sum(loss[:5]) / 5 - 0.5, loss  # a clear drop from ~ln(512)
    assert all(torch.isfinite(torch.tensor(loss)))


def test_muon_resume_is_exact(tmp_path, small_overrides):
    args = [*small_overrides, "train.optimizer=muon", "train.clock=steps", "train.max_steps=12",
            "impl.ckpt_every_steps=4", "impl.ckpt_every_s=0", "impl.log_every_steps=1",
            "train.muon_momentum_warmup_frac=0.5"]
    whole = tmp_path / "whole"
    train(load_config("tiny", args), whole)
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    for path in (resumed / "checkpoint").glob("ckpt-0000001[02]*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (resumed / "result.json").unlink()
    train(load_config("tiny", args), resumed, resume=True)
    assert max_diff(final_params(resumed), final_params(whole)) == 0.0
    assert losses(resumed) == losses(whole)


def test_muon_under_ddp_matches_one_process(tmp_path, go_corpus, cache_dir):
    from tests.test_engines import base_args as engine_args  # the fixture's body, as a function

    args = [*engine_args.__wrapped__(go_corpus, cache_dir), "train.max_steps=6", "train.optimizer=muon"]
    single = tmp_path / "single"
    from tests.conftest import run_gocram

    done = run_gocram("train", *args, "train.micro_batch=8", "--out", str(single))
    assert done.returncode == 0, done.stderr
    ddp = tmp_path / "ddp"
    torchrun(*args, "train.micro_batch=4", "--engine", "ddp", "--out", str(ddp))
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-4)
    # Newton-Schulz runs in bf16: an fp32 reduction-order difference can flip a bf16 rounding
    assert max_diff(final_params(ddp), final_params(single)) < 2e-3
