"""Optimizer recipes: parameter groups by role, per-group LRs under one schedule, Muon's momentum
warm-up, state in checkpoints (resume exact), a few CPU steps that learn, and Muon under DDP."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from gocram.ablations.toggles import apply_toggles
from gocram.config import ModelConfig, load_config
from gocram.core.errors import ConfigError
from gocram.models.gpt import GPT
from gocram.train.optimizers import OPTIMIZERS, MuonRecipe, resolve_adamw_kernel, set_lr_multiplier
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
                                             kernel="for_loop")
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
    optimizer = OPTIMIZERS.get("adamw").build(model.param_roles(), _train_cfg(weight_decay=0.1),
                                              kernel="for_loop")
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
    optimizer = OPTIMIZERS.get("muon").build(model.param_roles(), tc, kernel="for_loop")
    MuonRecipe.set_budget_fraction(optimizer, 0.05, tc)
    assert optimizer.parts["muon"].param_groups[0]["momentum"] == pytest.approx(0.875)


def test_grouped_state_round_trips():
    model = _model()
    tc = _train_cfg()
    optimizer = OPTIMIZERS.get("muon").build(model.param_roles(), tc, kernel="for_loop")
    idx = torch.randint(0, 100, (4, 16))
    for _ in range(2):
        model(idx, idx).backward()
        optimizer.step()
        optimizer.zero_grad()
    state = copy.deepcopy(optimizer.state_dict())  # torch's state_dict shares the live tensors
    twin = _model()
    twin.load_state_dict(model.state_dict())
    restored = OPTIMIZERS.get("muon").build(twin.param_roles(), tc, kernel="for_loop")
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


@pytest.mark.parametrize("newton_schulz", ["torch", "fp32"])
def test_muon_resume_is_exact(tmp_path, small_overrides, newton_schulz):
    args = [*small_overrides, "train.optimizer=muon", f"impl.newton_schulz={newton_schulz}",
            "train.clock=steps", "train.max_steps=12",
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


# -- who computes the AdamW update (impl.optimizer_kernel) ---------------------------------------
KERNEL_STEPS = ["train.clock=steps", "train.max_steps=6", "impl.ckpt_every_steps=3", "impl.ckpt_every_s=0",
                "impl.log_every_steps=1"]


@pytest.fixture(scope="module")
def kernel_runs(tmp_path_factory, go_corpus, cache_dir) -> dict:
    """Six AdamW steps of the small model with each kernel (the checkpoints keep the parameters)."""
    from tests.conftest import small_overrides_for

    root = tmp_path_factory.mktemp("adamw_kernels")
    runs = {}
    for kernel in ("for_loop", "foreach", "fused"):
        cfg = load_config("tiny", [*small_overrides_for(go_corpus, cache_dir), *KERNEL_STEPS,
                                   f"impl.optimizer_kernel={kernel}"])
        train(cfg, root / kernel)
        runs[kernel] = root / kernel
    return runs


@pytest.mark.parametrize("kernel", ["foreach", "fused"])
def test_adamw_kernels_train_like_the_loop(kernel_runs, kernel):
    # The same update, summed in another order: fp32 rounding, compounded over six steps.
    ref, run = kernel_runs["for_loop"], kernel_runs[kernel]
    assert losses(run).keys() == losses(ref).keys() and len(losses(ref)) == 6
    torch.testing.assert_close(torch.tensor(list(losses(run).values())),
                               torch.tensor(list(losses(ref).values())), atol=1e-5, rtol=1e-5)
    assert max_diff(final_params(run), final_params(ref)) < 1e-5
    assert losses(ref)[6] < losses(ref)[1]  # the steps did update the parameters


def test_a_fused_adamw_resume_is_exact(kernel_runs, tmp_path, go_corpus, cache_dir):
    from tests.conftest import small_overrides_for

    whole = kernel_runs["fused"]
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    last = list((resumed / "checkpoint").glob("ckpt-00000006*"))
    assert last, "the run's last checkpoint is at step 6"
    for path in last:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (resumed / "result.json").unlink()
    cfg = load_config("tiny", [*small_overrides_for(go_corpus, cache_dir), *KERNEL_STEPS,
                               "impl.optimizer_kernel=fused"])
    train(cfg, resumed, resume=True)
    assert max_diff(final_params(resumed), final_params(whole)) == 0.0
    assert losses(resumed) == losses(whole)


def test_the_adamw_setting_resolves_validates_and_toggles():
    assert resolve_adamw_kernel("auto", "cuda") == "fused"
    assert resolve_adamw_kernel("auto", "cpu") == "for_loop"
    assert resolve_adamw_kernel("foreach", "cuda") == "foreach"
    base = load_config("tiny")
    cfg = apply_toggles(base, ("adamw=fused",))
    assert cfg.impl.optimizer_kernel == "fused" and cfg.meaning_hash() == base.meaning_hash()
    with pytest.raises(ConfigError, match="impl.optimizer_kernel"):
        load_config("tiny", ["impl.optimizer_kernel=apex"])
    tc = _train_cfg()
    for kernel in ("for_loop", "foreach", "fused"):
        for name in ("adamw", "muon"):
            adamw = OPTIMIZERS.get(name).build(_model().param_roles(), tc, kernel=kernel).parts["adamw"]
            assert (adamw.defaults["foreach"], adamw.defaults["fused"]) == (
                kernel == "foreach", kernel == "fused"), (name, kernel)
