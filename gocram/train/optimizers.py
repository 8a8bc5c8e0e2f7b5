"""Optimizers by name (`train.optimizer`), each a recipe that splits the model's parameters by role.

A model names each parameter's role (`GPT.param_roles`): `matrix` (the 2-D weights inside the
blocks), `embedding`, `head`, `vector` (norm gains, biases, scalars). A recipe maps roles to
parameter groups, each with its own base LR; the schedule scales every group's base LR by the same
budget-keyed multiplier (`set_lr_multiplier`), so a group's LR is named in the config for what it is.

- adamw: AdamW on everything at `train.lr` (decay on matrices, embeddings and head; not on vectors).
- muon: torch.optim.Muon (Newton-Schulz orthogonalised momentum) on the `matrix` role at
  `train.matrix_lr`, AdamW on the rest at `train.lr`; Muon's momentum warms up from
  `train.muon_momentum_start` to `train.muon_momentum` over the first `muon_momentum_warmup_frac`
  of the budget (modded-nanogpt's recipe).

Who computes the AdamW update is `impl.optimizer_kernel` (ADAMW_KERNELS): torch's per-parameter
loop, its multi-tensor `foreach` path, or its `fused` kernel (CUDA and, since torch 2.x, CPU);
`auto` keeps the choice the trainer always made (fused on CUDA, the loop on CPU). The three
compute the same update, equal within fp32 rounding (tests/test_optimizers.py). Who orthogonalises
Muon's update is `impl.newton_schulz` (train/muon.py): torch.optim.Muon, or our batched iteration in
bf16 or fp32 (for CPUs that only emulate bf16).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gocram.core.registry import Registry
from gocram.train.muon import NEWTON_SCHULZ_DTYPES, BatchedMuon

OPTIMIZERS = Registry("optimizer")

# impl.optimizer_kernel -> torch.optim.AdamW's implementation flags
ADAMW_KERNELS: dict[str, dict[str, bool]] = {
    "for_loop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
}


def resolve_adamw_kernel(requested: str, device_type: str) -> str:
    """'auto' -> what the trainer always chose: fused on CUDA, the plain loop elsewhere."""
    if requested != "auto":
        return requested
    return "fused" if device_type == "cuda" else "for_loop"


class GroupedOptimizer:
    """Several torch optimizers stepped as one: what the trainer, engines and GradScaler see.

    `param_groups` is the concatenation of the parts' groups (so unscale, clipping and the LR
    schedule see every parameter); `state_dict` keeps each part's state under its name.
    """

    def __init__(self, parts: dict[str, torch.optim.Optimizer]):
        self.parts = parts

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for part in self.parts.values() for group in part.param_groups]

    def step(self, closure=None):
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.parts):
            raise ValueError(f"optimizer state has parts {sorted(state)}, expected {sorted(self.parts)}")
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


def set_lr_multiplier(optimizer, multiplier: float) -> None:
    """Every group's LR = its base LR (from the config) x the schedule's multiplier."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier


def _group(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> dict[str, Any]:
    return {"params": list(params), "lr": lr, "base_lr": lr, "weight_decay": weight_decay}


def _by_role(roles: dict[str, list[torch.nn.Parameter]], *names: str) -> list[torch.nn.Parameter]:
    return [p for name in names for p in roles.get(name, [])]


class AdamWRecipe:
    """AdamW on every parameter; weight decay on matrices (dim >= 2), none on vectors (nanoGPT)."""

    name = "adamw"

    @staticmethod
    def engine_reason(engine: str) -> str | None:
        return None

    @staticmethod
    def build(roles: dict[str, list[torch.nn.Parameter]], tc, *, kernel: str,
              newton_schulz: str = "torch") -> GroupedOptimizer:
        del newton_schulz  # no Muon part
        groups = [_group(_by_role(roles, "matrix", "embedding", "head"), tc.lr, tc.weight_decay),
                  _group(_by_role(roles, "vector"), tc.lr, 0.0)]
        adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=tc.lr,
                                  betas=(tc.beta1, tc.beta2), **ADAMW_KERNELS[kernel])
        return GroupedOptimizer({"adamw": adamw})

    @staticmethod
    def set_budget_fraction(optimizer: GroupedOptimizer, fraction: float, tc) -> None:
        del optimizer, fraction, tc


class MuonRecipe:
    """torch.optim.Muon on the blocks' 2-D matrices, AdamW on embeddings, head and vectors."""

    name = "muon"

    @staticmethod
    def engine_reason(engine: str) -> str | None:
        if engine in ("single", "ddp"):
            return None
        return ("Muon orthogonalises each whole weight matrix, but this engine shards parameters "
                "(FSDP) or owns the optimizer (DeepSpeed ZeRO); use engine single or ddp")

    @staticmethod
    def build(roles: dict[str, list[torch.nn.Parameter]], tc, *, kernel: str,
              newton_schulz: str = "torch") -> GroupedOptimizer:
        """kernel: an ADAMW_KERNELS name for the AdamW part; newton_schulz: who orthogonalises the
        Muon part (train/muon.py NEWTON_SCHULZ, resolved: torch, bf16 or fp32)."""
        matrices = _by_role(roles, "matrix")
        adam_groups = [_group(_by_role(roles, "embedding", "head"), tc.lr, tc.weight_decay),
                       _group(_by_role(roles, "vector"), tc.lr, 0.0)]
        parts: dict[str, torch.optim.Optimizer] = {}
        if matrices:
            groups = [_group(matrices, tc.matrix_lr, tc.weight_decay)]
            settings = dict(lr=tc.matrix_lr, weight_decay=tc.weight_decay, momentum=tc.muon_momentum,
                            nesterov=True)
            if newton_schulz == "torch":
                parts["muon"] = torch.optim.Muon(groups, **settings)
            else:
                parts["muon"] = BatchedMuon(groups, dtype=NEWTON_SCHULZ_DTYPES[newton_schulz], **settings)
        parts["adamw"] = torch.optim.AdamW([g for g in adam_groups if g["params"]], lr=tc.lr,
                                           betas=(tc.beta1, tc.beta2), **ADAMW_KERNELS[kernel])
        return GroupedOptimizer(parts)

    @staticmethod
    def momentum_at(fraction: float, tc) -> float:
        if tc.muon_momentum_warmup_frac <= 0 or fraction >= tc.muon_momentum_warmup_frac:
            return tc.muon_momentum
        ramp = fraction / tc.muon_momentum_warmup_frac
        return tc.muon_momentum_start + ramp * (tc.muon_momentum - tc.muon_momentum_start)

    @classmethod
    def set_budget_fraction(cls, optimizer: GroupedOptimizer, fraction: float, tc) -> None:
        muon = optimizer.parts.get("muon")
        if muon is not None:
            for group in muon.param_groups:
                group["momentum"] = cls.momentum_at(fraction, tc)


OPTIMIZERS.add("adamw", AdamWRecipe)
OPTIMIZERS.add("muon", MuonRecipe)
