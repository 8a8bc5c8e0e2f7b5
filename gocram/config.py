"""Run configuration: keyword-only dataclasses, loaded from YAML plus `section.key=value` overrides.

The sections say two different things (cramming's split):
- *meaning*, what is learned: `model`, `data`, `train` (budget, batch, schedule, optimizer,
  precision) and `eval` (what the score is computed on). Changing one changes the result, so it is
  judged by bits per byte at a fixed budget.
- *implementation*, how it is computed: `impl` (attention backend, kernel implementations of the
  norm / activation / loss, compile, engine, device, cadences). Changing one may change speed, and
  the numbers only within the tolerance its tests state.
`health` watches a run without changing its math. `meaning_hash()` and `impl_hash()` are kept apart:
`--resume` keys on the meaning, the harness's "already done" check on both, and neither on a cadence.

Every field is type- and range-checked when a config is built and unknown keys are rejected with a
suggestion; whether the parts it names exist and fit together is decided by `gocram.plan`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gocram.core.errors import ConfigError
from gocram.core.typed import build_dataclass
from gocram.plan import check_config  # the one place that knows the parts; it imports no config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def pad_vocab(vocab_size: int, multiple: int = 64) -> int:
    """Round the embedding table up so matmuls see friendly shapes."""
    return ((vocab_size + multiple - 1) // multiple) * multiple


# `hashed=UNLESS_DEFAULT` marks a field added after configs were hashed and recorded: at its
# default it is left out of the hash, so every older config (and its result rows, its checkpoints)
# keeps the hash it had; set to anything else it is hashed like any other field.
UNLESS_DEFAULT = "unless_default"


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, hashed: bool | str = True):
    """A dataclass field with its allowed range (checked when the config is built).

    Every float must also be finite. `hashed=False` marks a cadence: it neither blocks a --resume
    nor makes the harness re-run a finished cell. `hashed=UNLESS_DEFAULT`: see above.
    """
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "hashed": hashed})


def unhashed(default: Any):
    return field(default=default, metadata={"hashed": False})


def _check_range(section: str, obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        where = f"{section}.{f.name}"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")
        lo = f.metadata.get("ge"), f.metadata.get("gt")
        hi = f.metadata.get("le"), f.metadata.get("lt")
        ok = ((lo[0] is None or value >= lo[0]) and (lo[1] is None or value > lo[1])
              and (hi[0] is None or value <= hi[0]) and (hi[1] is None or value < hi[1]))
        if ok:
            continue
        low = f"[{lo[0]:g}" if lo[0] is not None else f"({lo[1]:g}" if lo[1] is not None else None
        high = f"{hi[0]:g}]" if hi[0] is not None else f"{hi[1]:g})" if hi[1] is not None else None
        if low and high:
            raise ConfigError(f"{where} must be in {low}, {high}, got {value}")
        if low:
            raise ConfigError(f"{where} must be {'>=' if lo[0] is not None else '>'} {low[1:]}, got {value}")
        raise ConfigError(f"{where} must be {'<=' if hi[0] is not None else '<'} {high[:-1]}, got {value}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What the network computes. The part names (norm, activation, loss) name math; who computes
    it is `impl.*`."""

    n_layer: int = bounded(4, ge=1, le=1024)
    n_head: int = bounded(4, ge=1, le=1024)
    d_model: int = bounded(256, ge=1, le=65536)
    seq_len: int = bounded(256, ge=2, le=1 << 17)
    vocab_size: int = bounded(8192, ge=2, le=1 << 20)  # the tokenizer's; the embedding is padded to 64
    mlp_ratio: int = bounded(4, ge=1, le=64)
    dropout: float = bounded(0.0, ge=0.0, lt=1.0)
    bias: bool = True
    tie_embeddings: bool = True
    position: Literal["learned", "rope"] = "learned"
    norm: str = "layernorm"
    activation: str = "gelu"
    loss: str = "cross_entropy"
    # Token dropping (random-LTD for a causal LM, models/token_drop.py): in training, each layer of
    # token_drop_layers ("middle" = all but the first and last, or "a-b", 0-based inclusive) runs
    # on a random subset of the tokens; the dropped share falls linearly from token_drop_rate at
    # the start of the budget to 0 at the budget fraction token_drop_until.
    token_drop_rate: float = bounded(0.0, ge=0.0, lt=1.0)
    token_drop_layers: str = "middle"
    token_drop_until: float = bounded(0.8, gt=0.0, le=1.0)
    # The modern block (README "Model parts"); each off by default, so older configs keep their hash.
    # mlp: dense = act(x W_fc) W_proj; gated = (act(x W_fc) * x W_up) W_proj (GLU: gelu -> GeGLU,
    # silu -> SwiGLU), its hidden width cut to gated_mlp_width() so the parameters match dense.
    mlp: Literal["dense", "gated"] = bounded("dense", hashed=UNLESS_DEFAULT)
    qk_norm: bool = bounded(False, hashed=UNLESS_DEFAULT)  # RMS-normalise q, k per head (before RoPE)
    logit_softcap: float = bounded(0.0, ge=0.0, hashed=UNLESS_DEFAULT)  # cap*tanh(z/cap); 0 = off
    # k extra token embeddings added to the values of layer j and layer n_layer-1-j (j < k), each
    # layer with its own learned mixing scalar; 0 = off
    value_embeddings: int = bounded(0, ge=0, le=512, hashed=UNLESS_DEFAULT)
    # an embedding of hash(previous token, token) mod bigram_buckets added to the input; 0 = off
    bigram_buckets: int = bounded(0, ge=0, le=1 << 24, hashed=UNLESS_DEFAULT)
    zero_init_proj: bool = bounded(False, hashed=UNLESS_DEFAULT)  # output projections start at 0

    def __post_init__(self) -> None:
        _check_range("model", self)
        if self.value_embeddings > (self.n_layer + 1) // 2:
            raise ConfigError(
                f"model.value_embeddings={self.value_embeddings}: each table is shared by layer j and "
                f"layer n_layer-1-j, so at most ceil(model.n_layer/2)={(self.n_layer + 1) // 2}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}"
            )
        if self.position == "rope" and (self.d_model // self.n_head) % 2:
            raise ConfigError(
                f"model.position=rope needs an even head size, got d_model/n_head="
                f"{self.d_model // self.n_head}"
            )
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
    def mlp_width(self) -> int:
        """The MLP's hidden width: mlp_ratio * d_model dense; for gated, 2/3 of that rounded to a
        multiple of 8 (three matrices instead of two: the same parameters up to the rounding)."""
        dense = self.mlp_ratio * self.d_model
        if self.mlp == "dense":
            return dense
        return max(8, round(2 * dense / 3 / 8) * 8)

    def value_embedding_of(self, layer: int) -> int | None:
        """The value-embedding table layer `layer` mixes in, or None: table j serves layers j and
        n_layer-1-j (modded-nanogpt shares them between the first and the last layers)."""
        j = min(layer, self.n_layer - 1 - layer)
        return j if j < self.value_embeddings else None

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What the run learns from: budget, batch, LR schedule, optimizer and precision."""

    budget_s: float = bounded(120.0, gt=0.0)  # wall-clock s of training (compile in, eval out)
    # wall: the LR schedule follows elapsed/budget_s. steps: it follows step/max_steps, which makes
    # runs bit-reproducible (used to prove kill-and-resume exactness); budget_s is then ignored.
    clock: Literal["wall", "steps"] = "wall"
    max_steps: int | None = bounded(None, ge=1)
    # Per process when an engine runs several; train.batch_tokens is the global batch.
    micro_batch: int = bounded(16, ge=1, le=1 << 16)
    batch_tokens: int | None = bounded(None, ge=1)  # tokens per optimizer step; None = one micro-batch
    # Cramming's batch ramp, off at 0: the micro-batches per step grow from 1 to the full count over
    # this fraction of the budget (train/schedule.py ramp_accum)
    batch_ramp_frac: float = bounded(0.0, ge=0.0, le=1.0, hashed=UNLESS_DEFAULT)
    lr: float = bounded(2e-3, gt=0.0, le=10.0)
    min_lr_ratio: float = bounded(0.1, ge=0.0, le=1.0)
    schedule: str = "cosine"
    warmup_frac: float = bounded(0.05, ge=0.0, lt=1.0)
    decay_frac: float = bounded(0.2, gt=0.0, le=1.0)  # the final fraction that WSD spends decaying
    weight_decay: float = bounded(0.1, ge=0.0)
    # train/optimizers.py: adamw (everything at lr) or muon (block matrices at matrix_lr, the rest
    # AdamW at lr), Muon's momentum rising from muon_momentum_start over the first
    # muon_momentum_warmup_frac of the budget
    optimizer: str = "adamw"
    matrix_lr: float = bounded(0.02, gt=0.0, le=10.0)
    muon_momentum: float = bounded(0.95, ge=0.0, lt=1.0)
    muon_momentum_start: float = bounded(0.85, ge=0.0, lt=1.0)
    muon_momentum_warmup_frac: float = bounded(0.1, ge=0.0, le=1.0)
    beta1: float = bounded(0.9, ge=0.0, lt=1.0)
    beta2: float = bounded(0.95, ge=0.0, lt=1.0)
    grad_clip: float = bounded(1.0, ge=0.0)  # 0 disables clipping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where native
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        _check_range("train", self)
        if self.clock == "steps" and not self.max_steps:
            raise ConfigError("train.clock=steps needs train.max_steps")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    corpus: str = "corpus/sample"  # a directory of .go files, or of parquet files in Stack schema
    layout: str = "random"  # how batches are cut from the token stream (data/batches.py LAYOUTS)
    # packed: tokens of documents packed (and their rows shuffled) together; each batch draws from
    # one such group, so a small one gives batches of few files (data/layouts.py)
    pack_group_tokens: int = bounded(1 << 20, ge=1)
    val_frac: float = bounded(0.05, gt=0.0, lt=1.0)  # share of Go packages (directories) held out
    split_salt: str = "gocram"
    tokenizer: str | None = None  # a tokenizer.json to use instead of training one
    tokenizer_tricks: str = ""  # comma-separated names from data/tokenizer/tricks.py; "" = GPT-2 BPE
    cache_dir: str | None = None  # default: $GOCRAM_CACHE or ~/.cache/gocram

    def __post_init__(self) -> None:
        _check_range("data", self)
        from gocram.data.tokens.tokenizer.tricks import parse_tricks  # a leaf: names and regexes only

        if parse_tricks(self.tokenizer_tricks, where="data.tokenizer_tricks") and self.tokenizer:
            raise ConfigError("data.tokenizer_tricks only applies when gocram trains the tokenizer; "
                              "it cannot change the given data.tokenizer file")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What the validation score is computed on."""

    max_bytes: int = bounded(262_144, ge=1)  # the fixed validation set: whole val files up to this
    # Also score validation with sliding windows every `stride` tokens (gocram/eval/scoring.py);
    # 0 = only today's non-overlapping chunks, whose val_bpb every result row keeps.
    stride: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        _check_range("eval", self)


@dataclass(frozen=True, kw_only=True)
class ImplConfig:
    """How the run is computed. None of these may change what is learned beyond the tolerance
    stated by its tests; the cadences (unhashed) do not change it at all."""

    attention: str = "sdpa"  # an attention backend (models/parts.py ATTENTIONS)
    norm: str = "torch"  # who computes model.norm: torch (the reference) or triton
    activation: str = "torch"  # who computes model.activation (with the MLP's first bias)
    # who computes model.loss: torch (full logits), chunked (plain torch, no full fp32 logits) or
    # triton (chunked, fused kernel)
    loss: str = "torch"
    # Who computes the AdamW update (train/optimizers.py ADAMW_KERNELS): for_loop, foreach or
    # fused; auto = fused on CUDA, for_loop on CPU
    optimizer_kernel: Literal["auto", "for_loop", "foreach", "fused"] = bounded(
        "auto", hashed=UNLESS_DEFAULT)
    # Who orthogonalises Muon's update (train/muon.py NEWTON_SCHULZ): torch (torch.optim.Muon, bf16,
    # one matrix at a time), bf16 or fp32 (same-shape matrices in one batch); auto = torch where
    # bf16 is native, fp32 where it is emulated
    newton_schulz: Literal["auto", "torch", "bf16", "fp32"] = bounded("auto", hashed=UNLESS_DEFAULT)
    compile: bool = False
    # torch.compile's mode under impl.compile (train/compile.py); inductor caches its code under
    # the data cache directory, and a row says whether it compiled (cold) or loaded (warm)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = bounded("default", hashed=UNLESS_DEFAULT)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's intra-op threads, set once when the run starts (torch.set_num_threads); 0 = leave
    # torch's default (or what OMP_NUM_THREADS says)
    threads: int = bounded(0, ge=0, le=4096, hashed=UNLESS_DEFAULT)
    # How the run spreads over processes (train/engines): single, ddp, fsdp, zero1, zero2, zero3.
    engine: str = "single"
    eval_micro_batch: int = bounded(16, ge=1, le=1 << 16)
    # cadences: how often the run reports, validates and checkpoints
    eval_every_s: float = bounded(60.0, ge=0.0, hashed=False)  # of budget time; 0 = only at the end
    log_every_steps: int = bounded(10, ge=1, hashed=False)
    progress_every_s: float = bounded(5.0, ge=0.0, hashed=False)
    ckpt_every_s: float = bounded(60.0, ge=0.0, hashed=False)  # of budget time; 0 = only at the end
    ckpt_every_steps: int = bounded(0, ge=0, hashed=False)  # 0 = by time only
    keep_checkpoints: int = bounded(2, ge=1, hashed=False)

    def __post_init__(self) -> None:
        _check_range("impl", self)


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """Guards for long runs (train/health.py, docs/health.md). Not hashed: they watch a run
    without changing its math until they fire, and every firing is logged."""

    # A step whose loss or gradient norm is NaN/Inf is skipped (no update); after this many in a
    # row the run rolls back to the last good checkpoint with the LR scaled by rollback_lr_factor.
    max_bad_steps: int = bounded(3, ge=1)
    max_rollbacks: int = bounded(3, ge=0)  # one more rollback needed after this many: stop with an error
    rollback_lr_factor: float = bounded(0.5, gt=0.0, le=1.0)
    # Loss-spike guard, off at 0: a loss more than spike_zscore standard deviations above the mean
    # of the last spike_window good steps is treated like a NaN step (skipped, counted).
    spike_zscore: float = bounded(0.0, ge=0.0)
    spike_window: int = bounded(50, ge=2)
    # Step watchdog, off at 0: a step slower than stall_factor x the running median step time is
    # reported with the data loader's queue depth.
    stall_factor: float = bounded(10.0, ge=0.0)
    heartbeat_every_s: float = bounded(5.0, ge=0.0)  # how often status.json is rewritten; 0 = never
    # If a checkpoint cannot be written while the run has none (this process wrote none and did
    # not resume from one), stop with an error instead of training on with nothing to resume from.
    require_checkpoints: bool = True

    def __post_init__(self) -> None:
        _check_range("health", self)
        if self.stall_factor != 0 and self.stall_factor <= 1:
            raise ConfigError(f"health.stall_factor must be > 1 (0 = off), got {self.stall_factor}")


MEANING_SECTIONS = ("model", "train", "data", "eval")
IMPL_SECTIONS = ("impl",)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    impl: ImplConfig = field(default_factory=ImplConfig)
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

    def _hashed(self, sections: tuple[str, ...]) -> dict[str, Any]:
        def counts(f: dataclasses.Field, value: Any) -> bool:
            hashed = f.metadata.get("hashed", True)
            return value != f.default if hashed == UNLESS_DEFAULT else bool(hashed)

        return {name: {f.name: getattr(getattr(self, name), f.name)
                       for f in dataclasses.fields(getattr(self, name))
                       if counts(f, getattr(getattr(self, name), f.name))}
                for name in sections}

    def meaning_hash(self) -> str:
        """What is learned: equal for runs that must give the same numbers (up to implementation)."""
        return _digest(self._hashed(MEANING_SECTIONS))

    def impl_hash(self) -> str:
        """How it is computed, cadences left out."""
        return _digest(self._hashed(IMPL_SECTIONS))

    def hash(self) -> str:
        """A cell's identity in the harness: meaning and implementation, no cadence, no guard."""
        return _digest({"meaning": self.meaning_hash(), "impl": self.impl_hash()})


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "train": TrainConfig, "data": DataConfig, "eval": EvalConfig,
    "impl": ImplConfig, "health": HealthConfig,
}

# Keys that lived elsewhere before the meaning / implementation split: a user's YAML or override
# naming the old place gets an error naming the new one; a saved config (a checkpoint's) is moved.
MOVED_KEYS = {
    "model.attention": "impl.attention", "train.compile": "impl.compile",
    "train.device": "impl.device", "train.engine": "impl.engine",
    "train.log_every_steps": "impl.log_every_steps", "train.progress_every_s": "impl.progress_every_s",
    "train.ckpt_every_s": "impl.ckpt_every_s", "train.ckpt_every_steps": "impl.ckpt_every_steps",
    "train.keep_checkpoints": "impl.keep_checkpoints", "eval.every_s": "impl.eval_every_s",
    "eval.micro_batch": "impl.eval_micro_batch",
}
# Part names that used to say both what and how: old name -> (meaning field, name, impl field, impl)
LEGACY_PART_NAMES = {
    ("model.norm", "triton_layernorm"): ("layernorm", "impl.norm", "triton"),
    ("model.activation", "triton_bias_gelu"): ("gelu", "impl.activation", "triton"),
    ("model.activation", "triton_bias_gelu_tanh"): ("gelu_tanh", "impl.activation", "triton"),
    ("model.loss", "fused_cross_entropy"): ("cross_entropy", "impl.loss", "triton"),
}


def _build_section(name: str, values: dict[str, Any]):
    for key in values:
        moved = MOVED_KEYS.get(f"{name}.{key}")
        if moved:
            raise ConfigError(f"config key '{name}.{key}' is now '{moved}' (how a run is "
                              f"computed lives in the impl section)")
    return build_dataclass(SECTIONS[name], values, f"{name}.", noun="config key")


def build_config(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from {'model': {...}, 'train': {...}, ...}.

    Types, ranges and the batch shape are checked here; the parts it names and how they combine
    are checked by gocram.plan (device-independent reasons at once, the rest on the device).
    """
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
    check_config(cfg)
    return cfg


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """['model.n_layer=6', 'impl.compile=true'] -> {'model': {'n_layer': 6}, 'impl': {...}}."""
    nested: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        nested.setdefault(section, {})[name] = yaml.safe_load(raw) if raw else None
    return nested


def merge(values: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Section-wise merge of nested overrides into config values (a new dict)."""
    merged = {section: dict(body or {}) if isinstance(body, dict) else body
              for section, body in values.items()}
    for section, body in overrides.items():
        current = merged.get(section) or {}
        if not isinstance(current, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        merged[section] = {**current, **body}
    return merged


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a YAML file, or a named config under configs/ ('tiny', 'small', 'baseline')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    raise ConfigError(f"config file not found: {name_or_path}")


def read_config_values(name_or_path: str) -> dict[str, Any]:
    """The raw sections of a YAML config (a path or a named config), not yet validated."""
    path = resolve_config_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return values


def load_config(name_or_path: str | None, overrides: list[str] = ()) -> RunConfig:
    values = read_config_values(name_or_path) if name_or_path is not None else {}
    return build_config(merge(values, parse_overrides(list(overrides))))


def migrate_saved(values: dict[str, Any]) -> dict[str, Any]:
    """A config saved before the meaning / implementation split, in today's sections."""
    values = {s: dict(v) for s, v in values.items()}
    for old, new in MOVED_KEYS.items():
        old_section, _, old_key = old.partition(".")
        if old_key in values.get(old_section, {}):
            new_section, _, new_key = new.partition(".")
            values.setdefault(new_section, {})[new_key] = values[old_section].pop(old_key)
    for (where, old_name), (name, impl_field, impl) in LEGACY_PART_NAMES.items():
        section, _, key = where.partition(".")
        if values.get(section, {}).get(key) == old_name:
            values[section][key] = name
            values.setdefault("impl", {})[impl_field.partition(".")[2]] = impl
    return values


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved with to_dict() (a checkpoint's config), older layouts included."""
    return build_config(migrate_saved(values))
