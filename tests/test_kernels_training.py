"""The kernels are *exact* toggles: the tiny model trains to the same losses with and without each."""

from __future__ import annotations

import json

import pytest
import torch

from gocram.config import ImplConfig, ModelConfig, load_config
from gocram.models.gpt import GPT
from gocram.models.parts import ACTIVATIONS, LOSSES, NORMS
from gocram.train.trainer import train
from tests.kernel_device import DEVICE, needs_kernels

FUSED = ImplConfig(norm="triton", activation="triton", loss="triton")

STEPS = 20



@pytest.fixture(scope="module")
def reference_runs() -> dict:
    """Reference runs shared by the kernels that swap the same part (filled on first use)."""
    return {}


def run_config(overrides: list[str]):
    return load_config(None, [*overrides, "train.clock=steps", f"train.max_steps={STEPS}",
                              "impl.log_every_steps=1", f"impl.device={DEVICE.type}"])


def run_losses(cfg, out) -> tuple[list[float], float]:
    result = train(cfg, out)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "event" not in r and "loss" in r]
    assert len(losses) == STEPS
    return losses, result["val_loss"]


@needs_kernels
@pytest.mark.parametrize("kernel,reference", [
    (["impl.norm=triton"], ["impl.norm=torch"]),
    (["impl.activation=triton"], ["impl.activation=torch"]),
    (["model.activation=gelu_tanh", "impl.activation=triton"], ["model.activation=gelu_tanh"]),
    (["impl.loss=triton"], ["impl.loss=torch"]),
])
def test_training_with_kernel_matches_reference(kernel, reference, small_overrides, reference_runs,
                                                tmp_path):
    ref_cfg = run_config([*small_overrides, *reference])
    if ref_cfg.hash() not in reference_runs:  # three of the references are the default config
        reference_runs[ref_cfg.hash()] = run_losses(ref_cfg, tmp_path / "reference")
    ref_losses, ref_val = reference_runs[ref_cfg.hash()]
    losses, val = run_losses(run_config([*small_overrides, *kernel]), tmp_path / "kernel")
    # Equal up to float summation order: far tighter than any real change would allow.
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), atol=1e-4, rtol=1e-5)
    assert abs(val - ref_val) < 1e-4
    assert ref_losses[-1] < ref_losses[0] - 0.3  # it did learn, so the comparison means something


def test_kernels_are_registered_lazily():
    assert NORMS.impls("layernorm") == ["torch", "triton"]
    assert ACTIVATIONS.impls("gelu") == ACTIVATIONS.impls("gelu_tanh") == ["torch", "triton"]
    assert LOSSES.impls("cross_entropy") == ["chunked", "torch", "triton"]


@needs_kernels
@pytest.mark.parametrize("bias", [True, False])
def test_state_dicts_interchange_with_the_reference_parts(bias):
    torch.manual_seed(0)
    base = dict(n_layer=1, n_head=2, d_model=32, seq_len=16, vocab_size=100, bias=bias)
    ref = GPT(ModelConfig(**base)).to(DEVICE)
    fast = GPT(ModelConfig(**base), FUSED).to(DEVICE)
    assert type(fast.norm_f).__name__ == "TritonLayerNorm"
    assert type(fast.blocks[0].mlp.act).__name__ == "TritonBiasGELU"
    fast.load_state_dict(ref.state_dict())  # strict: the same parameter names
    idx = torch.randint(0, 100, (2, 16), device=DEVICE)
    torch.testing.assert_close(fast(idx), ref(idx), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast(idx, idx), ref(idx, idx), atol=1e-5, rtol=1e-5)



@needs_kernels
def test_kernels_survive_torch_compile():
    """Dynamo runs the kernels eagerly (a clean graph break); which backend compiles the rest does
    not change that, so the cheap 'eager' backend stands in for inductor here."""
    torch.manual_seed(0)
    base = dict(n_layer=1, n_head=2, d_model=32, seq_len=16, vocab_size=100)
    ref = GPT(ModelConfig(**base, activation="gelu_tanh")).to(DEVICE)
    fast = GPT(ModelConfig(**base, activation="gelu_tanh"), FUSED).to(DEVICE)
    fast.load_state_dict(ref.state_dict())
    compiled = torch.compile(fast, backend="eager")
    idx = torch.randint(0, 100, (2, 16), device=DEVICE)
    loss_fast, loss_ref = compiled(idx, idx), ref(idx, idx)
    loss_fast.backward()
    loss_ref.backward()
    torch.testing.assert_close(loss_fast, loss_ref, atol=1e-5, rtol=1e-5)
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=name)
