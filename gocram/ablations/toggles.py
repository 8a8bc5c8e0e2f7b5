"""The toggle registry: every optimization the lab can switch, by name.

A toggle is written `name` or `name=value` (e.g. `compile`, `attention=flex`, `vocab=4096`).
It has a *kind* (cramming's split): `exact` toggles may only change speed, so they are checked by
equality tests; `approximate` ones change what is learned and are judged by val bits per byte at
a fixed budget. Its *stage* says where it takes effect: `config` (before the model is built),
`model` (after it is built, e.g. torch.compile) or `engine` (last, e.g. DDP). Every toggle is
expressed as config overrides, so any cell can be re-run with plain `gocram train` from its
row's config columns; the stage is where the trainer acts on those settings.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import yaml

from gocram.config import RunConfig
from gocram.errors import ConfigError


@dataclass(frozen=True)
class RunEnv:
    """What the machine offers, as seen by `supported` checks."""

    device_type: str  # "cuda" or "cpu"
    device_name: str
    triton_interpret: bool
    device_count: int = 1  # GPUs a multi-process engine cell would spread over

    @classmethod
    def detect(cls, requested: str = "auto") -> RunEnv:
        from gocram.bench.device import device_name, pick_device

        device = pick_device(requested)
        count = torch.cuda.device_count() if device.type == "cuda" else 1
        return cls(device.type, device_name(device), os.environ.get("TRITON_INTERPRET") == "1", count)


Overrides = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Toggle:
    name: str
    kind: Literal["exact", "approximate"]
    stage: Literal["config", "model", "engine"]
    description: str
    apply: Callable[[RunConfig, Any], Overrides]  # (config so far, value) -> {'section.key': value}
    group: str | None = None  # at most one toggle per group in a cell (e.g. one attention)
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    takes_value: bool = False
    supported: Callable[[RunEnv, RunConfig], str | None] = lambda env, cfg: None


TOGGLES: dict[str, Toggle] = {}


def register(toggle: Toggle) -> Toggle:
    if toggle.name in TOGGLES:
        raise ValueError(f"toggle {toggle.name!r} registered twice")
    TOGGLES[toggle.name] = toggle
    return toggle


def parse_spec(spec: str) -> tuple[Toggle, Any]:
    """'attention=flex' -> (the attention toggle, 'flex'), values YAML-typed ('4096' -> 4096)."""
    name, sep, value = spec.partition("=")
    if name not in TOGGLES:
        raise ConfigError(f"unknown toggle {name!r} in {spec!r}; choose one of {sorted(TOGGLES)}")
    toggle = TOGGLES[name]
    if toggle.takes_value and not sep:
        raise ConfigError(f"toggle {name!r} needs a value, e.g. '{name}=...'")
    if not toggle.takes_value and sep:
        raise ConfigError(f"toggle {name!r} takes no value (got {spec!r})")
    return toggle, (yaml.safe_load(value) if sep else None)


def check_combination(specs: tuple[str, ...]) -> None:
    """Reject a cell whose toggles conflict, share a group, or miss a requirement."""
    toggles = [parse_spec(s)[0] for s in specs]
    names = [t.name for t in toggles]
    groups: dict[str, str] = {}
    for spec, toggle in zip(specs, toggles, strict=True):
        if toggle.group:
            if toggle.group in groups:
                raise ConfigError(f"toggles {groups[toggle.group]!r} and {spec!r} both set "
                                  f"{toggle.group}; a cell takes one")
            groups[toggle.group] = spec
        for other in toggle.conflicts:
            if other in names:
                raise ConfigError(f"toggle {spec!r} conflicts with {other!r}")
        for needed in toggle.requires:
            if needed not in names:
                raise ConfigError(f"toggle {spec!r} requires {needed!r}")


def apply_toggles(cfg: RunConfig, specs: tuple[str, ...]) -> RunConfig:
    """The base config with every toggle's overrides applied in order, validated once at the end."""
    from gocram.config import build_config

    check_combination(specs)
    values = cfg.to_dict()
    for spec in specs:
        toggle, value = parse_spec(spec)
        current = build_config(values)
        for key, new in toggle.apply(current, value).items():
            section, _, field_name = key.partition(".")
            values[section][field_name] = new
    try:
        return build_config(values)
    except ConfigError as err:
        raise ConfigError(f"toggles {list(specs)}: {err}") from None


def unsupported_reason(env: RunEnv, cfg: RunConfig, specs: tuple[str, ...]) -> str | None:
    for spec in specs:
        reason = parse_spec(spec)[0].supported(env, cfg)
        if reason:
            return f"{spec}: {reason}"
    return None


# -- support checks ------------------------------------------------------------------------------

def triton_speed_path(env: RunEnv, cfg: RunConfig) -> str | None:
    if env.device_type != "cuda":
        return ("Triton kernels need CUDA; on CPU the interpreter only proves correctness "
                "(tests), it is no speed path")
    from gocram.kernels.availability import unsupported_reason

    return unsupported_reason(env.device_type)


def attention_support(env: RunEnv, cfg: RunConfig) -> str | None:
    from gocram.data.batches import LAYOUTS
    from gocram.models.registry import ATTENTIONS
    from gocram.train.trainer import PRECISION_DTYPES, resolve_precision

    backend = ATTENTIONS.build(cfg.model.attention)
    precision = resolve_precision(cfg.train.precision, torch.device(env.device_type))
    layout = LAYOUTS.get(cfg.data.layout)
    return backend.unsupported_reason(
        device=torch.device(env.device_type), dtype=PRECISION_DTYPES.get(precision, torch.float32),
        training=True, document_mask=bool(getattr(layout, "document_mask", False)),
        dropout=cfg.model.dropout > 0, head_size=cfg.model.head_size)


def compile_support(env: RunEnv, cfg: RunConfig) -> str | None:
    if env.device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
        return "torch.compile on CPU needs a C compiler (cc/gcc) for inductor"
    return None


def precision_support(env: RunEnv, cfg: RunConfig) -> str | None:
    if env.device_type == "cuda" and cfg.train.precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{env.device_name} has no bf16 support"
    return None


def engine_support(env: RunEnv, cfg: RunConfig) -> str | None:
    from gocram.train.engines import ENGINES

    engine = ENGINES.get(cfg.train.engine)
    reason = engine.unsupported_reason(env.device_type)
    if reason:
        return reason
    if engine.distributed and env.device_type == "cuda" and env.device_count < 2:
        return (f"a multi-process engine needs >= 2 GPUs, found {env.device_count}; one process "
                f"would measure only the wrapper's overhead")
    return None


def _engine_overrides(cfg: RunConfig, value: Any) -> Overrides:
    """Same global batch as the base cell, split over the processes the runner launches (one per
    GPU, two gloo processes on CPU): micro_batch / nproc per process, batch_tokens pinned."""
    from gocram.train.engines import ENGINES, launch_nproc

    overrides: Overrides = {"train.engine": value}
    if not ENGINES.get(value).distributed:
        return overrides
    nproc = launch_nproc()
    tc = cfg.train
    if tc.micro_batch % nproc:
        raise ConfigError(f"engine={value}: train.micro_batch={tc.micro_batch} cannot be split over "
                          f"{nproc} processes; engine cells keep the base cell's global batch")
    overrides["train.micro_batch"] = tc.micro_batch // nproc
    overrides["train.batch_tokens"] = tc.micro_batch * cfg.model.seq_len * cfg.grad_accum
    return overrides


# -- the shipped toggles -------------------------------------------------------------------------

def _twin_activation(cfg: RunConfig, _value: Any) -> Overrides:
    twins = {"gelu": "triton_bias_gelu", "gelu_tanh": "triton_bias_gelu_tanh"}
    if cfg.model.activation not in twins:
        raise ConfigError(f"triton_bias_gelu has no twin for model.activation={cfg.model.activation!r}")
    return {"model.activation": twins[cfg.model.activation]}


register(Toggle(
    name="triton_layernorm", kind="exact", stage="config", group="norm",
    description="fused Triton LayerNorm forward+backward",
    apply=lambda cfg, v: {"model.norm": "triton_layernorm"}, supported=triton_speed_path))
register(Toggle(
    name="triton_bias_gelu", kind="exact", stage="config", group="activation",
    description="fused Triton bias+GELU, recomputed in backward",
    apply=_twin_activation, supported=triton_speed_path))
register(Toggle(
    name="fused_cross_entropy", kind="exact", stage="config", group="loss",
    description="chunked Triton linear+cross-entropy, no full fp32 logits",
    apply=lambda cfg, v: {"model.loss": "fused_cross_entropy"}, supported=triton_speed_path))
register(Toggle(
    name="attention", kind="exact", stage="config", group="attention", takes_value=True,
    description="attention backend by name (math, sdpa, sdpa_flash, flex, flash_attn, xformers, ...)",
    apply=lambda cfg, v: {"model.attention": v}, supported=attention_support))
register(Toggle(
    name="layout", kind="approximate", stage="config", group="layout", takes_value=True,
    description="how batches are cut from documents (random, concat, padded, packed)",
    apply=lambda cfg, v: {"data.layout": v}, supported=attention_support))
register(Toggle(
    name="compile", kind="exact", stage="model",
    description="torch.compile the training model (compile time counts against the budget)",
    apply=lambda cfg, v: {"train.compile": True}, supported=compile_support))
register(Toggle(
    name="precision", kind="approximate", stage="config", group="precision", takes_value=True,
    description="fp32, bf16 autocast, or fp16 autocast with loss scaling",
    apply=lambda cfg, v: {"train.precision": v}, supported=precision_support))
register(Toggle(
    name="vocab", kind="approximate", stage="config", group="vocab", takes_value=True,
    description="tokenizer vocabulary size (a BPE is trained for it)",
    apply=lambda cfg, v: {"model.vocab_size": v}))
register(Toggle(
    name="token_drop", kind="approximate", stage="config", group="token_drop", takes_value=True,
    description="random token dropping in the middle layers, rate falling to 0 over the budget",
    apply=lambda cfg, v: {"model.token_drop_rate": v}))
register(Toggle(
    name="tokenizer", kind="approximate", stage="config", group="tokenizer", takes_value=True,
    description="Go-aware BPE tricks by name (data/tokenizer/tricks.py), e.g. go,ws,idioms",
    apply=lambda cfg, v: {"data.tokenizer_tricks": str(v)}))
register(Toggle(
    name="engine", kind="exact", stage="engine", group="engine", takes_value=True,
    description="training engine (single, ddp, zero1, zero2: equal to one process up to fp32 "
                "reduction order; fsdp, zero3: also regather shards, equal within 1e-4 in tests), "
                "same global batch, launched by torchrun",
    apply=_engine_overrides, supported=engine_support))
