"""BatchedMuon (train/muon.py) against torch.optim.Muon: the same update step by step, on shapes
that reach every path (tall and wide matrices, several of one shape batched, a lone shape), in
bf16 and fp32; fp32 against the float64 iteration; state interchangeable with torch's; the setting
resolves, validates and trains."""

from __future__ import annotations

import copy

import pytest
import torch

from gocram.ablations.toggles import apply_toggles
from gocram.config import load_config
from gocram.core.errors import ConfigError
from gocram.train.muon import BatchedMuon, newton_schulz, resolve_newton_schulz
from gocram.train.trainer import train

# tall (rows > cols: iterated transposed) three times, wide twice, a square and a lone odd shape
SHAPES = [(48, 16), (48, 16), (48, 16), (16, 40), (16, 40), (24, 24), (7, 33)]
TORCH_DEFAULTS = torch.optim.Muon([torch.nn.Parameter(torch.zeros(2, 2))]).defaults
# relative distance of the parameters' total change from torch's, on well-conditioned gradients:
# bf16 differs from torch only by the order of a batched matmul's rounding (equal on the CPUs tried);
# fp32 by bf16's rounding of torch's own iteration
TOLERANCE = {"bf16": 2e-2, "fp32": 5e-2}


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.1) for s in SHAPES]


def _run(optimizer, params, steps: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    start = [p.detach().clone() for p in params]
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizer.step()
    return [p.detach() - s for p, s in zip(params, start, strict=True)]


def _relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x - y).norm() / y.norm()).item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype_name", ["bf16", "fp32"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_batched_muon_steps_like_torch_muon(dtype_name, nesterov):
    settings = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov)
    params = _params()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    ours = _run(BatchedMuon(params, dtype=dtype, **settings), params)
    reference_params = _params()
    theirs = _run(torch.optim.Muon(reference_params, **settings), reference_params)
    assert _relative(ours, theirs) < TOLERANCE[dtype_name]


def test_batched_muon_differs_when_the_iteration_is_broken():
    """The comparison bites: one Newton-Schulz step fewer is far outside the tolerance."""
    settings = dict(lr=0.02, weight_decay=0.1, momentum=0.9)
    broken = BatchedMuon(_params(), dtype=torch.float32, ns_steps=TORCH_DEFAULTS["ns_steps"] - 1,
                         **settings)
    ours = _run(broken, broken.param_groups[0]["params"])
    reference_params = _params()
    theirs = _run(torch.optim.Muon(reference_params, **settings), reference_params)
    assert _relative(ours, theirs) > 2 * TOLERANCE["fp32"]


def test_fp32_iteration_is_the_float64_iteration_and_bf16_is_not():
    gen = torch.Generator().manual_seed(2)
    updates = torch.randn(3, 40, 16, generator=gen, dtype=torch.float64)  # (K, A, B), tall
    kw = dict(coefficients=TORCH_DEFAULTS["ns_coefficients"], steps=TORCH_DEFAULTS["ns_steps"],
              eps=TORCH_DEFAULTS["eps"])
    exact = newton_schulz(updates, dtype=torch.float64, **kw)
    fp32 = newton_schulz(updates, dtype=torch.float32, **kw)
    bf16 = newton_schulz(updates, dtype=torch.bfloat16, **kw)
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert fp32.shape == updates.shape
    fp32_err = ((fp32.double() - exact).norm() / exact.norm()).item()
    bf16_err = ((bf16.double() - exact).norm() / exact.norm()).item()
    assert fp32_err < 1e-5 < 1e-3 < bf16_err


def test_state_loads_into_torch_muon_and_steps_the_same():
    ours_params = _params()
    ours = BatchedMuon(ours_params, lr=0.02, dtype=torch.bfloat16)
    _run(ours, ours_params, steps=2)
    theirs_params = [torch.nn.Parameter(p.detach().clone()) for p in ours_params]
    theirs = torch.optim.Muon(theirs_params, lr=0.02)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))  # else the buffers are shared
    for a, b in zip(ours.param_groups[0]["params"], theirs.param_groups[0]["params"], strict=True):
        assert torch.equal(ours.state[a]["momentum_buffer"], theirs.state[b]["momentum_buffer"])
    step_ours, step_theirs = _run(ours, ours_params, steps=1), _run(theirs, theirs_params, steps=1)
    assert _relative(step_ours, step_theirs) < TOLERANCE["bf16"]


def test_batched_muon_rejects_a_vector():
    with pytest.raises(ValueError, match="2-D"):
        BatchedMuon([torch.nn.Parameter(torch.zeros(4))], lr=0.02)


def test_the_setting_resolves_by_the_machine_validates_and_toggles():
    assert resolve_newton_schulz("auto", native_bf16=True) == "torch"
    assert resolve_newton_schulz("auto", native_bf16=False) == "fp32"
    assert resolve_newton_schulz("bf16", native_bf16=False) == "bf16"
    cfg = apply_toggles(load_config("tiny", ["train.optimizer=muon"]), ["newton_schulz=fp32"])
    assert cfg.impl.newton_schulz == "fp32"
    assert cfg.meaning_hash() == load_config("tiny", ["train.optimizer=muon"]).meaning_hash()
    with pytest.raises(ConfigError, match="impl.newton_schulz"):
        load_config("tiny", ["train.optimizer=adamw", "impl.newton_schulz=fp32"])
    with pytest.raises(ConfigError, match="newton_schulz"):
        load_config("tiny", ["impl.newton_schulz=fp16"])


@pytest.mark.parametrize("implementation", ["torch", "bf16", "fp32"])
def test_every_implementation_trains_and_they_agree(tmp_path, small_overrides, implementation):
    args = [*small_overrides, "train.optimizer=muon", "train.clock=steps", "train.max_steps=20",
            "impl.log_every_steps=1", "impl.ckpt_every_s=0", f"impl.newton_schulz={implementation}"]
    result = train(load_config("tiny", args), tmp_path / implementation)
    assert result["val_bpb"] is not None and torch.isfinite(torch.tensor(result["val_bpb"]))
    if implementation != "torch":
        reference = train(load_config("tiny", [*args[:-1], "impl.newton_schulz=torch"]), tmp_path / "ref")
        # 20 steps of a rounding-level difference in the update: the same model within a few mbpb
        assert abs(result["val_bpb"] - reference["val_bpb"]) < 0.02
