"""The toggle registry: every setting the lab switches in a matrix cell, by name.

A toggle is written `name` or `name=value` (e.g. `compile`, `attention=flex`, `vocab=4096`) and is
nothing but config overrides, so any cell can be re-run with plain `gocram train` from its row's
config columns. Its *kind* (cramming's split) follows from the section it writes: a toggle that
writes only `impl.*` is `exact` (it may change speed, not what is learned beyond the tolerance of
its tests); one that writes a meaning section (`model`, `data`, `train`, `eval`) is `approximate`,
judged by val bits per byte at a fixed budget. The one named exception is `engine`, which also
splits `train.micro_batch` over the processes while pinning the same global batch.

Cells are validated once, on the final config, by the plan (gocram/plan.py): whether a backend
fits a layout or a device is answered there, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from gocram.config import MEANING_SECTIONS, RunConfig, build_config
from gocram.core.errors import ConfigError
from gocram.plan import Env, plan

Overrides = dict[str, Any]
Kind = Literal["exact", "approximate"]


@dataclass(frozen=True, kw_only=True)
class Toggle:
    name: str
    description: str
    writes: tuple[str, ...]  # the 'section.key' fields it may set: they decide its kind
    apply: Callable[[RunConfig, Any], Overrides]  # (base config, value) -> {'section.key': value}
    group: str | None = None  # at most one toggle per group in a cell (e.g. one attention)
    takes_value: bool = False
    exact_because: str | None = None  # why a toggle writing a meaning field is still exact

    @property
    def kind(self) -> Kind:
        meaning = [key for key in self.writes if key.partition(".")[0] in MEANING_SECTIONS]
        return "approximate" if meaning and not self.exact_because else "exact"


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


def check_groups(specs: tuple[str, ...]) -> None:
    """Reject a cell with two toggles of one group (two attention backends, two vocabularies)."""
    groups: dict[str, str] = {}
    for spec in specs:
        toggle = parse_spec(spec)[0]
        if toggle.group:
            if toggle.group in groups:
                raise ConfigError(f"toggles {groups[toggle.group]!r} and {spec!r} both set "
                                  f"{toggle.group}; a cell takes one")
            groups[toggle.group] = spec


def apply_toggles(cfg: RunConfig, specs: tuple[str, ...]) -> RunConfig:
    """The base config with every toggle's overrides applied, validated once, on the result: the
    order of a cell's toggles never matters."""
    check_groups(specs)
    values = cfg.to_dict()
    written_by: dict[str, str] = {}  # two toggles setting one field: the last would win silently
    for spec in specs:
        toggle, value = parse_spec(spec)
        for key, new in toggle.apply(cfg, value).items():
            if key not in toggle.writes:
                raise ValueError(f"toggle {toggle.name!r} wrote {key!r}, not one of {toggle.writes}")
            if written_by.setdefault(key, spec) != spec:
                raise ConfigError(f"toggles {written_by[key]!r} and {spec!r} both set {key}; "
                                  "a cell takes one")
            section, _, field_name = key.partition(".")
            values[section][field_name] = new
    try:
        return build_config(values)
    except ConfigError as err:
        raise ConfigError(f"toggles {list(specs)}: {err}") from None


def unsupported_reason(env: Env, cfg: RunConfig) -> str | None:
    """Why a cell's final config gives no meaningful row on this machine, from the plan."""
    return plan(cfg, env).unsupported


def _engine_overrides(cfg: RunConfig, value: Any) -> Overrides:
    """Same global batch as the base cell, split over the processes the runner launches (one per
    GPU, two gloo processes on CPU): micro_batch / nproc per process, batch_tokens pinned."""
    from gocram.train.engines import ENGINES, launch_nproc

    overrides: Overrides = {"impl.engine": value}
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


def _setting(key: str, name: str, description: str, *, group: str | None = None,
             value: Any = None) -> Toggle:
    """A toggle that sets one field: to its value (`name=VALUE`) or to a fixed one (`name`)."""
    takes_value = value is None
    return Toggle(name=name, description=description, writes=(key,), group=group or name,
                  takes_value=takes_value,
                  apply=(lambda cfg, v: {key: v}) if takes_value else (lambda cfg, v: {key: value}))


HEAD_SIZE = 64  # the size toggle keeps each head this wide, so width changes the head count


def _size_overrides(cfg: RunConfig, value: Any) -> Overrides:
    """'LxD' -> L layers of width D with D // HEAD_SIZE heads: depth and width in one cell."""
    layers, sep, width = str(value).lower().partition("x")
    if not (sep and layers.isdigit() and width.isdigit()):
        raise ConfigError(f"size={value}: write LAYERSxWIDTH, e.g. size=4x256")
    if int(width) % HEAD_SIZE:
        raise ConfigError(f"size={value}: the width must be a multiple of the head size {HEAD_SIZE}")
    return {"model.n_layer": int(layers), "model.d_model": int(width),
            "model.n_head": int(width) // HEAD_SIZE}


def _batch_tokens_overrides(cfg: RunConfig, value: Any) -> Overrides:
    """Tokens per optimizer step, in whole sequences; the micro-batch stays the base's where it
    divides them (else the largest that does), so only the batch, not the kernel shapes, moves."""
    sequences, rest = divmod(int(value), cfg.model.seq_len)
    if rest or not sequences:
        raise ConfigError(f"batch_tokens={value}: must be a positive multiple of model.seq_len="
                          f"{cfg.model.seq_len}")
    micro = max(m for m in range(1, min(cfg.train.micro_batch, sequences) + 1) if sequences % m == 0)
    return {"train.batch_tokens": int(value), "train.micro_batch": micro}


def _context_overrides(cfg: RunConfig, value: Any) -> Overrides:
    """model.seq_len=N with the base's tokens per micro-batch (so per step too): the micro-batch
    holds fewer, longer sequences, so only the context moves, and validation is scored in
    chunks of N tokens (gocram/eval/bpb.py)."""
    micro_tokens = cfg.train.micro_batch * cfg.model.seq_len
    if not isinstance(value, int) or value < 1 or micro_tokens % value:
        raise ConfigError(f"context={value}: must be a whole number of tokens that divides the base's "
                          f"micro-batch of {micro_tokens} tokens (train.micro_batch x model.seq_len)")
    return {"model.seq_len": value, "train.micro_batch": micro_tokens // value}


# -- the shipped toggles -------------------------------------------------------------------------
for _toggle in (
    _setting("impl.norm", "triton_layernorm", "fused Triton LayerNorm forward+backward",
             group="norm", value="triton"),
    _setting("impl.activation", "triton_bias_gelu", "fused Triton bias+GELU, recomputed in backward",
             group="activation", value="triton"),
    _setting("impl.loss", "fused_cross_entropy", "chunked Triton linear+cross-entropy, no full fp32 logits",
             group="loss", value="triton"),
    _setting("impl.loss", "chunked_cross_entropy",
             "chunked linear+cross-entropy in plain torch (CPU and GPU), no full fp32 logits",
             group="loss", value="chunked"),
    _setting("impl.optimizer_kernel", "adamw",
             "who computes the AdamW update: for_loop, foreach or fused (torch's kernels, CPU too)"),
    _setting("impl.newton_schulz", "newton_schulz",
             "who orthogonalises Muon's update: torch (torch.optim.Muon, bf16), bf16 or fp32 (same-shape "
             "matrices batched; fp32 where bf16 is emulated)"),
    _setting("impl.threads", "threads", "torch's intra-op CPU threads for the run (0 = torch's default)"),
    _setting("impl.attention", "attention",
             "attention backend by name (math, sdpa, sdpa_flash, flex, flash_attn, xformers, ...)"),
    _setting("impl.compile", "compile",
             "torch.compile the training model (compile time counts against the budget)", value=True),
    Toggle(name="compile_mode", group="compile", takes_value=True,
           writes=("impl.compile", "impl.compile_mode"),
           description="torch.compile with a mode (default, reduce-overhead, max-autotune: "
                       "inductor's GEMM templates, max-autotune-no-cudagraphs)",
           apply=lambda cfg, v: {"impl.compile": True, "impl.compile_mode": v}),
    _setting("data.layout", "layout", "how batches are cut from documents (random, concat, padded, packed)"),
    _setting("train.precision", "precision", "fp32, bf16 autocast, or fp16 autocast with loss scaling"),
    _setting("model.vocab_size", "vocab", "tokenizer vocabulary size (a BPE is trained for it)"),
    _setting("model.token_drop_rate", "token_drop",
             "random token dropping in the middle layers, rate falling to 0 over the budget"),
    _setting("train.optimizer", "optimizer",
             "optimizer recipe by name (adamw; muon: Muon on the block matrices, AdamW on the rest)"),
    # the modern block (README "Model parts"): each a meaning setting, so approximate
    _setting("model.activation", "activation",
             "MLP activation by name (gelu, gelu_tanh, relu, relu2, silu; silu with gated_mlp is SwiGLU)",
             group="model-activation"),
    _setting("model.mlp", "gated_mlp", "gated MLP (GLU) at the dense MLP's parameter count", value="gated"),
    _setting("model.qk_norm", "qk_norm", "RMS-normalise queries and keys per head before attention",
             value=True),
    _setting("model.logit_softcap", "softcap", "soft-cap the logits: cap * tanh(logits / cap)"),
    _setting("model.value_embeddings", "value_embeddings",
             "K token embeddings mixed into the attention values of the first and last K layers"),
    _setting("model.bigram_buckets", "bigram", "hashed (previous, current) token embedding, N buckets"),
    _setting("model.zero_init_proj", "zero_init_proj",
             "zero-initialise every block's attention and MLP output projections", value=True),
    _setting("model.tie_embeddings", "untied_head", "an output head apart from the token embedding",
             value=False),
    _setting("model.bias", "no_bias", "no biases in linear layers and norms", value=False),
    _setting("train.batch_ramp_frac", "batch_ramp",
             "micro-batches per step grow from 1 to the full batch over this fraction of the budget"),
    # the size for the budget (matrices/size.yaml): shape, batch and each optimizer group's LR
    Toggle(name="size", group="size", takes_value=True,
           writes=("model.n_layer", "model.d_model", "model.n_head"),
           description=f"model shape LAYERSxWIDTH (e.g. 4x256), heads of size {HEAD_SIZE}",
           apply=_size_overrides),
    Toggle(name="batch_tokens", group="batch_tokens", takes_value=True,
           writes=("train.batch_tokens", "train.micro_batch"),
           description="tokens per optimizer step (whole sequences; the micro-batch divides them)",
           apply=_batch_tokens_overrides),
    Toggle(name="context", group="context", takes_value=True,
           writes=("model.seq_len", "train.micro_batch"),
           description="context length in tokens at the base's tokens per step (fewer, longer sequences)",
           apply=_context_overrides),
    _setting("train.lr", "lr", "learning rate of AdamW (every parameter under adamw; embeddings, head "
             "and vectors under muon)"),
    _setting("train.matrix_lr", "matrix_lr", "learning rate of Muon's block matrices (optimizer=muon)"),
    # the LR's shape over the budget (train/schedule.py SCHEDULES; matrices/muon-lr.yaml)
    _setting("train.schedule", "schedule",
             "LR shape over the budget's elapsed fraction (cosine, linear, constant, wsd, one_cycle)"),
    _setting("train.decay_frac", "decay_frac", "the final fraction of the budget that wsd decays over"),
    Toggle(name="tokenizer", group="tokenizer", takes_value=True, writes=("data.tokenizer_tricks",),
           description="Go-aware BPE tricks by name (data/tokenizer/tricks.py), e.g. go,ws,idioms",
           apply=lambda cfg, v: {"data.tokenizer_tricks": str(v)}),
    Toggle(name="engine", group="engine", takes_value=True,
           writes=("impl.engine", "train.micro_batch", "train.batch_tokens"),
           exact_because="it splits train.micro_batch over the processes and pins the global batch",
           description="training engine (single, ddp, zero1, zero2: equal to one process up to fp32 "
                       "reduction order; fsdp, zero3: also regather shards, equal within 1e-4 in tests), "
                       "same global batch, launched by torchrun",
           apply=_engine_overrides),
):
    register(_toggle)
