"""Run configuration: keyword-only dataclasses, loaded from YAML plus `section.key=value` overrides.

Every field is type-checked when a config is built, unknown keys are rejected with a suggestion,
and illegal combinations raise ConfigError naming the field, so a bad run fails before it starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gocram.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def pad_vocab(vocab_size: int, multiple: int = 64) -> int:
    """Round the embedding table up so matmuls see friendly shapes."""
    return ((vocab_size + multiple - 1) // multiple) * multiple


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    seq_len: int = 256
    vocab_size: int = 8192  # the tokenizer's size; the embedding is padded to a multiple of 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    position: Literal["learned", "rope"] = "learned"
    norm: str = "layernorm"
    activation: str = "gelu"
    attention: str = "sdpa"
    loss: str = "cross_entropy"
    # Token dropping (random-LTD for a causal LM, models/token_drop.py): in training, each layer of
    # token_drop_layers ("middle" = all but the first and last, or "a-b", 0-based inclusive) runs
    # on a random subset of the tokens; the dropped share falls linearly from token_drop_rate at
    # the start of the budget to 0 at the budget fraction token_drop_until.
    token_drop_rate: float = 0.0
    token_drop_layers: str = "middle"
    token_drop_until: float = 0.8

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "seq_len", "vocab_size", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}"
            )
        if self.position == "rope" and (self.d_model // self.n_head) % 2:
            raise ConfigError(
                f"model.position=rope needs an even head size, got d_model/n_head="
                f"{self.d_model // self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.token_drop_rate < 1.0:
            raise ConfigError(f"model.token_drop_rate must be in [0, 1), got {self.token_drop_rate}")
        if not 0.0 < self.token_drop_until <= 1.0:
            raise ConfigError(f"model.token_drop_until must be in (0, 1], got {self.token_drop_until}")
        if self.token_drop_rate > 0:
            self.token_drop_layer_range  # noqa: B018 - validates token_drop_layers against n_layer

    @property
    def token_drop_layer_range(self) -> range:
        """The layers that may drop tokens; the first and the last layer always see every token."""
        where = f"model.token_drop_layers={self.token_drop_layers!r}"
        if self.n_layer < 3:
            raise ConfigError(f"{where}: token dropping needs model.n_layer >= 3 (the first and last "
                              f"layers see every token), got {self.n_layer}")
        if self.token_drop_layers == "middle":
            return range(1, self.n_layer - 1)
        first, dash, last = self.token_drop_layers.partition("-")
        try:
            lo, hi = int(first), int(last if dash else first)
        except ValueError:
            raise ConfigError(f"{where}: expected 'middle', a layer 'a' or a range 'a-b'") from None
        if not 1 <= lo <= hi <= self.n_layer - 2:
            raise ConfigError(f"{where}: must lie within 1-{self.n_layer - 2} (layer 0 and the last "
                              f"layer, {self.n_layer - 1}, see every token), with a <= b")
        return range(lo, hi + 1)

    @property
    def padded_vocab_size(self) -> int:
        return pad_vocab(self.vocab_size)

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    budget_s: float = 120.0  # wall-clock seconds of training (compile included, eval excluded)
    # wall: the LR schedule follows elapsed/budget_s. steps: it follows step/max_steps, which makes
    # runs bit-reproducible (used to prove kill-and-resume exactness); budget_s is then ignored.
    clock: Literal["wall", "steps"] = "wall"
    max_steps: int | None = None
    micro_batch: int = 16
    batch_tokens: int | None = None  # tokens per optimizer step; None = one micro-batch
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"
    warmup_frac: float = 0.05
    decay_frac: float = 0.2  # the final fraction that WSD spends decaying
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where native
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # How the run spreads over processes (train/engines): single, ddp, fsdp, zero1, zero2, zero3.
    # With several processes train.micro_batch is per process and train.batch_tokens is global.
    engine: str = "single"
    seed: int = 0
    log_every_steps: int = 10
    progress_every_s: float = 5.0
    ckpt_every_s: float = 60.0  # of budget time; 0 = only at the end
    ckpt_every_steps: int = 0  # 0 = by time only
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.budget_s <= 0:
            raise ConfigError(f"train.budget_s must be > 0, got {self.budget_s}")
        if self.clock == "steps" and not self.max_steps:
            raise ConfigError("train.clock=steps needs train.max_steps")
        if self.micro_batch < 1:
            raise ConfigError(f"train.micro_batch must be >= 1, got {self.micro_batch}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ConfigError(f"train.warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if not 0.0 < self.decay_frac <= 1.0:
            raise ConfigError(f"train.decay_frac must be in (0, 1], got {self.decay_frac}")
        if self.keep_checkpoints < 1:
            raise ConfigError("train.keep_checkpoints must be >= 1")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    corpus: str = "corpus/sample"  # a directory of .go files, or of parquet files in Stack schema
    layout: str = "random"  # how batches are cut from the token stream (data/batches.py LAYOUTS)
    # packed: tokens of documents packed (and their rows shuffled) together; each batch draws from
    # one such group, so a small one gives batches of few files (data/layouts.py)
    pack_group_tokens: int = 1 << 20
    val_frac: float = 0.05  # share of Go packages (directories) held out, never of files
    split_salt: str = "gocram"
    tokenizer: str | None = None  # a tokenizer.json to use instead of training one
    tokenizer_tricks: str = ""  # comma-separated names from data/tokenizer/tricks.py; "" = GPT-2 BPE
    cache_dir: str | None = None  # default: $GOCRAM_CACHE or ~/.cache/gocram

    def __post_init__(self) -> None:
        if self.pack_group_tokens < 1:
            raise ConfigError(f"data.pack_group_tokens must be at least 1, got {self.pack_group_tokens}")
        if not 0.0 < self.val_frac < 1.0:
            raise ConfigError(f"data.val_frac must be in (0, 1), got {self.val_frac}")
        from gocram.data.tokenizer.tricks import parse_tricks  # light: names and regexes only

        if parse_tricks(self.tokenizer_tricks, where="data.tokenizer_tricks") and self.tokenizer:
            raise ConfigError("data.tokenizer_tricks only applies when gocram trains the tokenizer; "
                              "it cannot change the given data.tokenizer file")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    every_s: float = 60.0  # of budget time between validations; 0 = only at the end
    max_bytes: int = 262_144  # the fixed validation set: whole val files up to this many bytes
    micro_batch: int = 16
    # Also score validation with sliding windows every `stride` tokens (gocram/eval/scoring.py);
    # 0 = only today's non-overlapping chunks, whose val_bpb every result row keeps.
    stride: int = 0

    def __post_init__(self) -> None:
        if self.stride < 0:
            raise ConfigError(f"eval.stride must be >= 0 (0 = chunked only), got {self.stride}")


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """Guards for long runs (train/health.py, docs/health.md). Not part of the config hash: they
    watch a run without changing its math until they fire, and every firing is logged."""

    # A step whose loss or gradient norm is NaN/Inf is skipped (no update); after this many in a
    # row the run rolls back to the last good checkpoint with the LR scaled by rollback_lr_factor.
    max_bad_steps: int = 3
    max_rollbacks: int = 3  # one more rollback needed after this many: stop with an error
    rollback_lr_factor: float = 0.5
    # Loss-spike guard, off at 0: a loss more than spike_zscore standard deviations above the mean
    # of the last spike_window good steps is treated like a NaN step (skipped, counted).
    spike_zscore: float = 0.0
    spike_window: int = 50
    # Step watchdog, off at 0: a step slower than stall_factor x the running median step time is
    # reported with the data loader's queue depth.
    stall_factor: float = 10.0
    heartbeat_every_s: float = 5.0  # how often status.json is rewritten; 0 = never
    # If a checkpoint cannot be written while the run has none (this process wrote none and did
    # not resume from one), stop with an error instead of training on with nothing to resume from.
    require_checkpoints: bool = True

    def __post_init__(self) -> None:
        if self.max_bad_steps < 1:
            raise ConfigError(f"health.max_bad_steps must be >= 1, got {self.max_bad_steps}")
        if self.max_rollbacks < 0:
            raise ConfigError(f"health.max_rollbacks must be >= 0, got {self.max_rollbacks}")
        if not 0.0 < self.rollback_lr_factor <= 1.0:
            raise ConfigError(f"health.rollback_lr_factor must be in (0, 1], got {self.rollback_lr_factor}")
        if self.spike_zscore < 0:
            raise ConfigError(f"health.spike_zscore must be >= 0 (0 = off), got {self.spike_zscore}")
        if self.spike_window < 2:
            raise ConfigError(f"health.spike_window must be >= 2, got {self.spike_window}")
        if self.stall_factor != 0 and self.stall_factor <= 1:
            raise ConfigError(f"health.stall_factor must be > 1 (0 = off), got {self.stall_factor}")
        if self.heartbeat_every_s < 0:
            raise ConfigError(f"health.heartbeat_every_s must be >= 0, got {self.heartbeat_every_s}")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    @property
    def grad_accum(self) -> int:
        per_micro = self.train.micro_batch * self.model.seq_len
        if self.train.batch_tokens is None:
            return 1
        if self.train.batch_tokens % per_micro:
            raise ConfigError(
                f"train.batch_tokens={self.train.batch_tokens} is not a multiple of "
                f"train.micro_batch*model.seq_len={per_micro}"
            )
        return self.train.batch_tokens // per_micro

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Every setting as a 'section.key' column, for result rows."""
        return {f"{s}.{k}": v for s, sec in self.to_dict().items() for k, v in sec.items()}

    def hash(self) -> str:
        """What the run computes; health guards are left out (HealthConfig), so changing one
        neither blocks a --resume nor re-runs finished ablation cells."""
        values = {s: v for s, v in self.to_dict().items() if s not in UNHASHED_SECTIONS}
        blob = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "train": TrainConfig, "data": DataConfig, "eval": EvalConfig,
    "health": HealthConfig,
}
UNHASHED_SECTIONS = ("health",)


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return value (ints widened to float where a float is expected) or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {annotation}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads '1e-3' (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def _build_section(name: str, values: dict[str, Any]):
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{name}.{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{name}.{key}'{hint}")
        kwargs[key] = _check_type(value, hints[key], f"{name}.{key}")
    return cls(**kwargs)


def build_config(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from {'model': {...}, 'train': {...}, ...}."""
    if not isinstance(values, dict):
        raise ConfigError("a config must be a mapping of sections")
    for section, body in values.items():
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, list(SECTIONS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config section '{section}'{hint}")
        if not isinstance(body, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
    cfg = RunConfig(**{s: _build_section(s, values.get(s) or {}) for s in SECTIONS})
    cfg.grad_accum  # noqa: B018 - validates batch_tokens against the batch shape
    _check_part_names(cfg)
    _check_layout_attention(cfg)
    _check_engine(cfg)
    return cfg


def _check_part_names(cfg: RunConfig) -> None:
    """Names chosen from registries must exist: fail at config time, not after data prep."""
    from gocram.data.batches import LAYOUTS
    from gocram.models.registry import ACTIVATIONS, ATTENTIONS, LOSSES, NORMS

    for field_name, registry, value in (
        ("model.norm", NORMS, cfg.model.norm), ("model.activation", ACTIVATIONS, cfg.model.activation),
        ("model.attention", ATTENTIONS, cfg.model.attention), ("model.loss", LOSSES, cfg.model.loss),
        ("data.layout", LAYOUTS, cfg.data.layout),
    ):
        if value not in registry:
            try:
                registry.get(value)  # raises with the choices and a suggestion
            except ConfigError as err:
                raise ConfigError(f"{field_name}: {err}") from None


def _check_engine(cfg: RunConfig) -> None:
    """Engines that cannot take a setting say so here, before any process is launched."""
    from gocram.train.engines import ENGINES  # lazy entries: no deepspeed import here

    try:
        engine = ENGINES.get(cfg.train.engine)
    except ConfigError as err:
        raise ConfigError(f"train.engine: {err}") from None
    where = f"train.engine={cfg.train.engine!r}"
    if cfg.train.compile and not engine.supports_compile:
        raise ConfigError(f"{where} cannot run with train.compile=true: torch.compile under "
                          f"DeepSpeed's ZeRO hooks is not wired here; use engine ddp or fsdp to compile")
    if cfg.train.precision == "fp16" and not engine.supports_fp16:
        raise ConfigError(f"{where} cannot run with train.precision=fp16: its loss scaling is not "
                          f"torch's GradScaler; use bf16 (or engine single/ddp for fp16)")


def layout_needs_document_mask(layout: str) -> bool:
    """Whether a data layout's batches carry documents that must not see each other."""
    from gocram.data.batches import LAYOUTS  # late: the registries import this module

    try:
        return bool(getattr(LAYOUTS.get(layout), "document_mask", False))
    except ConfigError as err:
        raise ConfigError(f"data.layout: {err}") from None


def _applies_document_mask(backend_builder) -> bool:
    """Whether an attention backend can apply a document mask on some device."""
    return bool(getattr(backend_builder, "supports_document_mask", False))


def _check_layout_attention(cfg: RunConfig) -> None:
    """Reject a layout that needs a document mask paired with a backend that cannot apply one.

    Device-dependent limits (e.g. torch's CUDA flash kernel takes no mask) are checked by the
    trainer once the device is known.
    """
    from gocram.models.registry import ATTENTIONS

    try:
        backend = ATTENTIONS.get(cfg.model.attention)
    except ConfigError as err:
        raise ConfigError(f"model.attention: {err}") from None
    if layout_needs_document_mask(cfg.data.layout) and not _applies_document_mask(backend):
        why = getattr(backend, "no_document_mask_why", "it has no document mask")
        able = [n for n in ATTENTIONS.names() if _applies_document_mask(ATTENTIONS.get(n))]
        raise ConfigError(
            f"data.layout={cfg.data.layout!r} needs a document mask, but "
            f"model.attention={cfg.model.attention!r} cannot apply one ({why}); choose one of {able}")


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """['model.n_layer=6', 'train.compile=true'] -> {'model': {'n_layer': 6}, 'train': {...}}."""
    nested: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        nested.setdefault(section, {})[name] = yaml.safe_load(raw) if raw else None
    return nested


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a YAML file, or a named size under configs/ ('tiny', 'small')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    raise ConfigError(f"config file not found: {name_or_path}")


def load_config(name_or_path: str | None, overrides: list[str] = ()) -> RunConfig:
    values: dict[str, Any] = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
    for section, body in parse_overrides(list(overrides)).items():
        current = values.get(section) or {}
        if not isinstance(current, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        values[section] = {**current, **body}
    return build_config(values)


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved with to_dict() (a checkpoint's config)."""
    return build_config(values)
