"""Muon with the Newton-Schulz orthogonalisation batched and in a chosen dtype (`impl.newton_schulz`).

torch.optim.Muon (the reference) orthogonalises one matrix at a time in bf16. On a CPU without
bf16 dot products (AVX2) bf16 matmuls are emulated and tens of times slower than fp32, so the
reference's step takes longer than the whole fp32 training step (README, "What the lab has
measured"). `BatchedMuon` computes the same update (momentum, Nesterov, quintic Newton-Schulz
with torch's coefficients, torch's LR adjustment and decoupled weight decay) with every
same-shape matrix of a group stacked into one batched iteration, in bf16 (torch's numbers up
to bf16 rounding) or in fp32 (closer to the exact iteration than either bf16 path).
tests/test_muon.py compares both with torch.optim.Muon step by step.

The fp32 path is exact only up to bf16's rounding in the reference: on well-conditioned updates
the two differ by about a percent, but the iteration's slope at zero amplifies rounding in an
update's small singular directions, so on nearly low-rank updates (training's, with momentum)
torch's bf16 update is the further of the two from the exact iteration. A training test holds
both to the same model within a stated bpb; a matrix's `loss ≡ base` column checks its cells.

NEWTON_SCHULZ names who orthogonalises: `torch` (torch.optim.Muon), `bf16` and `fp32` (BatchedMuon);
`auto` is torch where bf16 is native and fp32 where it is emulated.
"""

from __future__ import annotations

import inspect
import math

import torch

NEWTON_SCHULZ_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
NEWTON_SCHULZ = ("torch", *NEWTON_SCHULZ_DTYPES)

# torch.optim.Muon's own defaults (its signature), so both paths iterate the same polynomial
_TORCH_DEFAULTS = {name: p.default for name, p in inspect.signature(torch.optim.Muon).parameters.items()
                   if p.default is not inspect.Parameter.empty}


def resolve_newton_schulz(requested: str, *, native_bf16: bool) -> str:
    """auto -> torch's bf16 reference where bf16 is native, our fp32 batch where it is emulated."""
    if requested != "auto":
        return requested
    return "torch" if native_bf16 else "fp32"


def newton_schulz(updates: torch.Tensor, *, coefficients: tuple[float, float, float], steps: int,
                  eps: float, dtype: torch.dtype) -> torch.Tensor:
    """Orthogonalise each matrix of `updates` (K, A, B) by the quintic iteration, in `dtype`.

    The same arithmetic as torch.optim.Muon's per-matrix iteration, batched over K; returns (K, A, B)
    in `dtype`.
    """
    a, b, c = coefficients
    x = updates.to(dtype)  # (K, A, B)
    wide = x.size(-2) > x.size(-1)
    if wide:
        x = x.mT  # (K, B, A): iterate on the short side, as torch does
    # each matrix's Frobenius norm bounds its spectral norm: scale every one to at most 1
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT  # (K, S, S), S the short side
        gram_update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # (K, S, S)
        x = torch.baddbmm(x, gram_update, x, beta=a)  # (K, S, L)
    return x.mT if wide else x


def adjusted_lr(lr: float, shape: torch.Size) -> float:
    """torch.optim.Muon's default ('original') LR adjustment: tall matrices step by sqrt(A / B)."""
    rows, cols = shape[:2]
    return lr * math.sqrt(max(1.0, rows / cols))


class BatchedMuon(torch.optim.Optimizer):
    """torch.optim.Muon's update, same-shape matrices orthogonalised in one batch, in `dtype`.

    Its state is torch's (`momentum_buffer` per parameter), so a checkpoint of either loads into
    the other.
    """

    def __init__(self, params, *, lr: float, weight_decay: float = _TORCH_DEFAULTS["weight_decay"],
                 momentum: float = _TORCH_DEFAULTS["momentum"], nesterov: bool = True,
                 dtype: torch.dtype = torch.float32,
                 ns_coefficients: tuple[float, float, float] = _TORCH_DEFAULTS["ns_coefficients"],
                 ns_steps: int = _TORCH_DEFAULTS["ns_steps"], eps: float = _TORCH_DEFAULTS["eps"]):
        if lr < 0 or weight_decay < 0 or momentum < 0:
            raise ValueError(f"lr, weight_decay and momentum must be >= 0, got {lr}, {weight_decay}, "
                             f"{momentum}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_coefficients=tuple(ns_coefficients),
                                      ns_steps=ns_steps, eps=eps,
                                      # torch's key: its default ('original') is the one computed
                                      # here, and torch's Muon can load this state
                                      adjust_lr_fn=None))
        self.dtype = dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon orthogonalises 2-D matrices; got a parameter of shape "
                                     f"{tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                self._step_same_shape(group, shape, params)
        return loss

    def _step_same_shape(self, group: dict, shape: torch.Size, params: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        grads = [p.grad for p in params]
        bufs = []
        for p, g in zip(params, grads, strict=True):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        updates = torch._foreach_lerp(grads, bufs, momentum) if group["nesterov"] else bufs
        ortho = newton_schulz(torch.stack(updates), coefficients=group["ns_coefficients"],
                              steps=group["ns_steps"], eps=group["eps"], dtype=self.dtype)  # (K, A, B)
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_add_(params, list(ortho.to(params[0].dtype).unbind(0)),
                            alpha=-adjusted_lr(lr, shape))
