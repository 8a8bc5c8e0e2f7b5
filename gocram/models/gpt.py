"""A decoder-only, pre-LN GPT whose norm, activation, attention and loss are chosen by name.

`ModelConfig` says what each part computes; `ImplConfig` says who computes it (the plain-torch
reference or a fused kernel, models/parts.py), so the same weights run under either.

Shapes: B batch, T sequence length, C = d_model, nh heads, hs = C // nh head size, V padded vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gocram.config import ImplConfig, ModelConfig
from gocram.models.layers import softcap_logits
from gocram.models.parts import ACTIVATIONS, ATTENTIONS, LOSSES, NORMS
from gocram.models.token_drop import TokenDrop, run_on_subset

# Bigram hash (parameter-golf's input embedding): two odd multipliers xor-ed, then mod buckets.
BIGRAM_MULTIPLIERS = (36313, 27191)


def bigram_buckets(idx: torch.Tensor, previous: torch.Tensor, buckets: int) -> torch.Tensor:
    """hash(previous token, token) mod buckets, (B, T) -> (B, T); `previous` holds NO_PREVIOUS
    (the padded vocabulary size, never a token id) where a token has none."""
    a, b = BIGRAM_MULTIPLIERS
    return torch.bitwise_xor(previous.long() * a, idx.long() * b) % buckets


def rope_tables(
    positions: torch.Tensor, head_size: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (..., T, hs/2) for integer positions of shape (..., T)."""
    inv_freq = 1.0 / (
        base ** (torch.arange(0, head_size, 2, device=positions.device).float() / head_size)
    )
    angles = positions.float()[..., None] * inv_freq  # (..., T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x[2i], x[2i+1]) of x (B, nh, T, hs) by the position angle."""
    x_pairs = x.float().unflatten(-1, (-1, 2))  # (B, nh, T, hs/2, 2)
    x_even, x_odd = x_pairs.unbind(-1)  # each (B, nh, T, hs/2)
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, impl: ImplConfig, *, has_value_embedding: bool = False):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.backend = ATTENTIONS.build(impl.attention)
        self.qk_norm = cfg.qk_norm
        # v + ve_lambda * (this layer's value embedding), when the layer has one (model.value_embeddings)
        self.ve_lambda = nn.Parameter(torch.tensor(0.5)) if has_value_embedding else None

    def forward(self, x, rope=None, document_ids=None, kv_cache=None, value_embedding=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        if value_embedding is not None:
            v = v + self.ve_lambda * value_embedding  # (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.qk_norm:  # per head, no gain, before RoPE (modded-nanogpt): bounded attention logits
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:  # decoding: this layer's cache stores k, v and attends over all of it
            y = kv_cache.attend(q, k, v)  # (B, nh, T, hs)
        else:
            y = self.backend(
                q, k, v,
                dropout_p=self.dropout if self.training else 0.0,
                document_ids=document_ids,
            )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """dense: proj(act(fc(x))). gated (model.mlp, a GLU): proj(act(fc(x)) * up(x)), at the width
    ModelConfig.mlp_width gives so both have the same parameters up to rounding."""

    def __init__(self, cfg: ModelConfig, impl: ImplConfig):
        super().__init__()
        width = cfg.mlp_width
        # The first projection's bias belongs to the activation so a fused bias+act can own it.
        self.fc = nn.Linear(cfg.d_model, width, bias=False)
        self.act = ACTIVATIONS.get(cfg.activation, impl.activation)(width, bias=cfg.bias)
        self.up = nn.Linear(cfg.d_model, width, bias=cfg.bias) if cfg.mlp == "gated" else None
        self.proj = nn.Linear(width, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = self.act(self.fc(x))  # (B, T, width)
        if self.up is not None:
            h = h * self.up(x)  # (B, T, width): the gate
        return self.dropout(self.proj(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, impl: ImplConfig, *, has_value_embedding: bool = False):
        super().__init__()
        norm = NORMS.get(cfg.norm, impl.norm)
        self.norm_attn = norm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, impl, has_value_embedding=has_value_embedding)
        self.norm_mlp = norm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg, impl)

    def forward(self, x, rope=None, document_ids=None, kv_cache=None, value_embedding=None):
        x = x + self.attn(self.norm_attn(x), rope, document_ids, kv_cache, value_embedding)
        x = x + self.mlp(self.norm_mlp(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, impl: ImplConfig | None = None):
        super().__init__()
        impl = impl or ImplConfig()
        self.cfg = cfg
        V = cfg.padded_vocab_size
        self.wte = nn.Embedding(V, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.position == "learned" else None
        # hash(previous token, token) -> an input embedding added to wte's (model.bigram_buckets)
        self.bigram = nn.Embedding(cfg.bigram_buckets, cfg.d_model) if cfg.bigram_buckets else None
        # token -> a vector added to the attention values of the layers that share it
        self.value_embeds = nn.ModuleList(nn.Embedding(V, cfg.d_model)
                                          for _ in range(cfg.value_embeddings))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg, impl, has_value_embedding=cfg.value_embedding_of(i) is not None)
            for i in range(cfg.n_layer))
        self.norm_f = NORMS.get(cfg.norm, impl.norm)(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, V, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.loss_fn = LOSSES.get(cfg.loss, impl.loss)()
        self.token_drop = TokenDrop(cfg)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
                if cfg.zero_init_proj:  # each block starts as the identity (modded-nanogpt)
                    nn.init.zeros_(p)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def hidden_states(self, idx, *, positions=None, document_ids=None, kv_cache=None):
        """Final-norm hidden states (B, T, C) for token ids idx (B, T).

        With `kv_cache` (gocram/eval/kvcache.py: `.length` and one per-layer cache in `.layers`),
        idx continues the cached tokens: positions start at the cached length.
        """
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.cfg.seq_len:
            raise ValueError(f"sequence of length {start + T} exceeds model.seq_len={self.cfg.seq_len}")
        if positions is None:
            positions = torch.arange(start, start + T, device=idx.device).expand(B, T)  # (B, T)
        x = self.wte(idx)  # (B, T, C)
        if self.bigram is not None:
            x = x + self.bigram(self._bigram_ids(idx, positions, kv_cache))  # (B, T, C)
        value_embeds = [table(idx) for table in self.value_embeds]  # each (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(positions)  # (B, T, C)
        else:
            cos, sin = rope_tables(positions, self.cfg.head_size)  # each (B, T, hs/2)
            rope = (cos[:, None], sin[:, None])  # each (B, 1, T, hs/2): broadcast over heads
        x = self.drop(x)
        dropping = self.token_drop.active(self.training, T)  # training only: never with a kv cache
        for i, block in enumerate(self.blocks):
            table = self.cfg.value_embedding_of(i)
            ve = value_embeds[table] if table is not None else None
            if dropping and i in self.token_drop.layers:
                keep = self.token_drop.select(B, T, idx.device)  # (B, K)
                x = run_on_subset(block, x, keep, rope, document_ids, ve)
            else:
                x = block(x, rope, document_ids, kv_cache.layers[i] if kv_cache is not None else None, ve)
        return self.norm_f(x)

    def _bigram_ids(self, idx, positions, kv_cache):
        """Bucket ids (B, T) of (previous token, token). A document's first token (position 0:
        a window's start, or a packed document's) has the fixed previous id NO_PREVIOUS; with a
        KV cache the first new token's previous is the last cached one."""
        no_previous = self.cfg.padded_vocab_size  # no token has this id
        first = torch.full_like(idx[:, :1], no_previous)  # (B, 1)
        if kv_cache is not None and kv_cache.length:
            first = kv_cache.last_tokens[:, None]  # (B, 1)
        previous = torch.cat([first, idx[:, :-1]], dim=1)  # (B, T): the token before each
        previous = previous.masked_fill(positions == 0, no_previous)
        if kv_cache is not None:
            kv_cache.last_tokens = idx[:, -1]  # (B,)
        return bigram_buckets(idx, previous, self.cfg.bigram_buckets)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Output logits (..., V) of hidden states (..., C), soft-capped when model.logit_softcap is
        on: what the loss sees, so generation, eval and compress must use this, not lm_head."""
        return softcap_logits(self.lm_head(h), self.cfg.logit_softcap)

    def forward(self, idx, targets=None, *, reduction="mean", positions=None, document_ids=None):
        """Logits (B, T, V) without targets; the loss (fp32 scalar) with targets (B, T)."""
        h = self.hidden_states(idx, positions=positions, document_ids=document_ids)
        if targets is None:
            return self.logits(h)  # (B, T, V)
        B, T, C = h.shape
        # the cap is passed only when on: a loss without it (the Triton one) keeps its contract
        cap = {"softcap": self.cfg.logit_softcap} if self.cfg.logit_softcap else {}
        return self.loss_fn(
            h.reshape(B * T, C), self.lm_head.weight, targets.reshape(B * T), reduction=reduction, **cap
        )

    def set_budget_fraction(self, fraction: float) -> None:
        """A trainer step hook: schedules keyed to the budget (the token-drop rate) move here."""
        self.token_drop.set_budget_fraction(fraction)

    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token (embedding lookups do not)."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))

    def param_roles(self) -> dict[str, list[nn.Parameter]]:
        """Each trainable parameter once, by what it is (train/optimizers.py groups by role):
        `matrix` the blocks' 2-D weights (a gated MLP's `up` too), `embedding` lookup tables (wte,
        wpe, the bigram and value-embedding tables), `head` an untied output matrix, `vector` norm
        gains, biases and scalars (the value-embedding mixes)."""
        roles: dict[str, list[nn.Parameter]] = {"matrix": [], "embedding": [], "head": [], "vector": []}
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if p.dim() < 2:
                roles["vector"].append(p)
            elif name.startswith("blocks."):
                roles["matrix"].append(p)
            elif name.startswith("lm_head."):
                roles["head"].append(p)
            else:
                roles["embedding"].append(p)
        return roles

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Decay matrices (dim >= 2), not biases, norm weights or gains (nanoGPT's rule): the
        groups DeepSpeed's own AdamW takes."""
        roles = self.param_roles()
        return [
            {"params": roles["matrix"] + roles["embedding"] + roles["head"], "weight_decay": weight_decay},
            {"params": roles["vector"], "weight_decay": 0.0},
        ]
