"""The plan: from a config and the machine, every builder a run uses and every reason it cannot run.

This is the one place that answers "can this run happen here?". Config building asks it for the
reasons that hold on any machine (`check_config`), the Trainer for the reasons on its device
(`plan(cfg, Env.for_device(...))`), and the harness for those plus the reasons a cell measures
nothing worth a row (`Plan.measure_reasons`, e.g. a Triton kernel run by the CPU interpreter).

It reads a config by duck typing (it imports no config module), so `gocram.config` can call it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gocram.core.env import cpu_has_native_bf16, device_name, pick_device
from gocram.core.errors import ConfigError
from gocram.data.batching.batches import LAYOUTS
from gocram.models.parts import ACTIVATIONS, ATTENTIONS, LOSSES, NORMS, SOFTCAP_LOSSES
from gocram.train.engines import ENGINES
from gocram.train.muon import resolve_newton_schulz
from gocram.train.optimizers import OPTIMIZERS
from gocram.train.schedule import SCHEDULES

if TYPE_CHECKING:
    from gocram.config import RunConfig

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Env:
    """What the machine offers a run."""

    device_type: str  # "cuda" or "cpu"
    device_name: str
    triton_interpret: bool
    device_count: int = 1  # GPUs a multi-process engine would spread over
    native_bf16: bool = True  # bf16 arithmetic in hardware (every CUDA GPU we run; some CPUs)

    @classmethod
    def for_device(cls, device: torch.device) -> Env:
        count = torch.cuda.device_count() if device.type == "cuda" else 1
        native = device.type == "cuda" or cpu_has_native_bf16()
        return cls(device.type, device_name(device), os.environ.get("TRITON_INTERPRET") == "1",
                   count, native)

    @classmethod
    def detect(cls, requested: str = "auto") -> Env:
        return cls.for_device(pick_device(requested))


def resolve_precision(requested: str, env: Env) -> str:
    """auto: bf16 where the device has bf16 arithmetic (CUDA; a CPU with AVX512-BF16 or AMX), else
    fp32: emulated bf16 is many times slower than fp32 (results/cpu-quick)."""
    if requested != "auto":
        return requested
    return "bf16" if env.native_bf16 else "fp32"


@dataclass(frozen=True)
class Plan:
    """What a run will use, and why it cannot (reasons) or should not be measured (measure_reasons)."""

    precision: str  # fp32, bf16 or fp16, auto resolved
    reasons: tuple[str, ...]
    measure_reasons: tuple[str, ...] = ()

    @property
    def dtype(self) -> torch.dtype:
        return PRECISION_DTYPES[self.precision]

    def raise_if_blocked(self) -> None:
        if self.reasons:
            raise ConfigError(self.reasons[0])

    @property
    def unsupported(self) -> str | None:
        """The first reason a harness cell cannot give a meaningful row, or None."""
        return next(iter((*self.reasons, *self.measure_reasons)), None)


def _part_reasons(cfg: RunConfig) -> list[str]:
    """Every named part exists, with the implementation asked for."""
    checks = (
        ("model.norm", NORMS, cfg.model.norm, "impl.norm", cfg.impl.norm),
        ("model.activation", ACTIVATIONS, cfg.model.activation, "impl.activation", cfg.impl.activation),
        ("model.loss", LOSSES, cfg.model.loss, "impl.loss", cfg.impl.loss),
        ("impl.attention", ATTENTIONS, cfg.impl.attention, None, None),
        ("data.layout", LAYOUTS, cfg.data.layout, None, None),
        ("impl.engine", ENGINES, cfg.impl.engine, None, None),
        ("train.optimizer", OPTIMIZERS, cfg.train.optimizer, None, None),
    )
    reasons = []
    for where, registry, name, impl_where, impl in checks:
        reason = registry.check(name)
        if reason:
            reasons.append(f"{where}: {reason}")
        elif impl is not None and registry.check(name, impl):
            reasons.append(f"{impl_where}: {registry.check(name, impl)}")
    if cfg.train.schedule not in SCHEDULES:
        reasons.append(f"train.schedule: unknown schedule {cfg.train.schedule!r}; "
                       f"choose one of {sorted(SCHEDULES)}")
    return reasons


def needs_document_mask(layout: str) -> bool:
    """Whether a data layout's batches carry documents that must not see each other."""
    return bool(getattr(LAYOUTS.get(layout), "document_mask", False))


def _combination_reasons(cfg: RunConfig) -> list[str]:
    """Combinations that fail on any machine."""
    reasons = []
    backend = ATTENTIONS.get(cfg.impl.attention)
    if needs_document_mask(cfg.data.layout) and not getattr(backend, "supports_document_mask", False):
        why = getattr(backend, "no_document_mask_why", "it has no document mask")
        able = [n for n in ATTENTIONS.names()
                if getattr(ATTENTIONS.get(n), "supports_document_mask", False)]
        reasons.append(f"data.layout={cfg.data.layout!r} needs a document mask, but "
                       f"impl.attention={cfg.impl.attention!r} cannot apply one ({why}); "
                       f"choose one of {able}")
    if cfg.impl.compile_mode != "default" and not cfg.impl.compile:
        reasons.append(f"impl.compile_mode={cfg.impl.compile_mode!r} needs impl.compile=true "
                       f"(without it nothing is compiled)")
    engine = ENGINES.get(cfg.impl.engine)
    where = f"impl.engine={cfg.impl.engine!r}"
    if cfg.impl.compile and not engine.supports_compile:
        reasons.append(f"{where} cannot run with impl.compile=true: torch.compile under DeepSpeed's "
                       f"ZeRO hooks is not wired here; use engine ddp or fsdp to compile")
    if cfg.train.precision == "fp16" and not engine.supports_fp16:
        reasons.append(f"{where} cannot run with train.precision=fp16: its loss scaling is not "
                       f"torch's GradScaler; use bf16 (or engine single/ddp for fp16)")
    optimizer = OPTIMIZERS.get(cfg.train.optimizer)
    reason = optimizer.engine_reason(cfg.impl.engine)
    if reason:
        reasons.append(f"train.optimizer={cfg.train.optimizer!r} with {where}: {reason}")
    if cfg.impl.newton_schulz != "auto" and cfg.train.optimizer != "muon":
        reasons.append(f"impl.newton_schulz={cfg.impl.newton_schulz!r} orthogonalises Muon's update, "
                       f"but train.optimizer={cfg.train.optimizer!r} has no Muon part; leave it auto")
    if cfg.model.logit_softcap and (cfg.model.loss, cfg.impl.loss) not in SOFTCAP_LOSSES:
        able = sorted(impl for name, impl in SOFTCAP_LOSSES if name == cfg.model.loss)
        reasons.append(f"model.logit_softcap={cfg.model.logit_softcap:g} needs a loss that caps its "
                       f"logits, but impl.loss={cfg.impl.loss!r} does not; choose impl.loss from {able}")
    if cfg.train.batch_ramp_frac and not engine.supports_batch_ramp:
        reasons.append(f"train.batch_ramp_frac={cfg.train.batch_ramp_frac:g} with {where}: the engine "
                       f"fixes the micro-batches per step when it is built; use engine single, ddp or fsdp")
    return reasons


def check_config(cfg: RunConfig) -> None:
    """Raise on the first reason the config cannot run on any machine (config build time)."""
    reasons = _part_reasons(cfg)
    if not reasons:
        reasons = _combination_reasons(cfg)
    if reasons:
        raise ConfigError(reasons[0])


def _uses_triton(cfg: RunConfig) -> list[str]:
    return [f"impl.{part}" for part in ("norm", "activation", "loss") if getattr(cfg.impl, part) == "triton"]


def plan(cfg: RunConfig, env: Env) -> Plan:
    """Everything a run on `env` needs to know, and every reason it cannot run there."""
    reasons = _part_reasons(cfg) or _combination_reasons(cfg)
    precision = resolve_precision(cfg.train.precision, env)
    measure: list[str] = []
    if reasons:
        return Plan(precision, tuple(reasons))
    device = torch.device(env.device_type)
    backend = ATTENTIONS.build(cfg.impl.attention)
    reason = backend.unsupported_reason(
        device=device, dtype=PRECISION_DTYPES[precision], training=True,
        document_mask=needs_document_mask(cfg.data.layout), dropout=cfg.model.dropout > 0,
        head_size=cfg.model.head_size)
    if reason:
        reasons.append(f"impl.attention={cfg.impl.attention!r}: {reason}")
    triton_parts = _uses_triton(cfg)
    if triton_parts:
        from gocram.kernels.availability import unsupported_reason as triton_reason

        reason = triton_reason(device)
        if reason:
            reasons.append(f"{', '.join(triton_parts)}=triton: {reason}")
        elif env.device_type != "cuda":
            measure.append(f"{', '.join(triton_parts)}=triton: Triton kernels need CUDA; on CPU the "
                           f"interpreter only proves correctness (tests), it is no speed path")
    if cfg.impl.compile and env.device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
        reasons.append("impl.compile=true on CPU needs a C compiler (cc/gcc) for inductor")
    if env.device_type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        reasons.append(f"train.precision=bf16: {env.device_name} has no bf16 support")
    if (cfg.train.optimizer == "muon" and not env.native_bf16
            and resolve_newton_schulz(cfg.impl.newton_schulz, native_bf16=False) != "fp32"):
        measure.append(f"impl.newton_schulz={cfg.impl.newton_schulz!r} runs Muon's Newton-Schulz in "
                       f"bf16, which {env.device_name} only emulates (tens of times slower than "
                       f"fp32): the optimizer step, not the model, sets this row's speed")
    engine = ENGINES.get(cfg.impl.engine)
    reason = engine.unsupported_reason(env.device_type)
    if reason:
        reasons.append(f"impl.engine={cfg.impl.engine!r}: {reason}")
    elif engine.distributed and env.device_type == "cuda" and env.device_count < 2:
        measure.append(f"a multi-process engine needs >= 2 GPUs, found {env.device_count}; one "
                       f"process would measure only the wrapper's overhead")
    return Plan(precision, tuple(reasons), tuple(measure))
