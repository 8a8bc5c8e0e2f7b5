"""KV-cached sampling from a gocram GPT: temperature, top-k, top-p, a length cap and Go stop rules.

All rows of a batch continue the same prompt (pass@k draws n samples of one task), so they stay
the same length and share one cache; a finished row leaves the batch. When the context window
(model.seq_len) fills, the cache is rebuilt from the last half of the window and decoding goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gocram.core.errors import ConfigError
from gocram.data.tokens.tokenizer import eos_id
from gocram.eval.gostop import StopRules
from gocram.eval.kvcache import KVCache


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    function_end: bool = True  # stop when the braces the prompt left open are closed
    stop_strings: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    text: str
    tokens: list[int]
    stop_reason: str  # function_end | stop_string | eos | max_new_tokens


def filter_logits(logits: torch.Tensor, *, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scaled and filtered logits (B, V): removed tokens get -inf. temperature must be > 0."""
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass,
        # so the most likely token always stays.
        before = torch.cumsum(probs, dim=-1) - probs  # (B, V)
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    """One token id per row (B,) from last-position logits (B, V)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    filtered = filter_logits(logits, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
    probs = torch.softmax(filtered, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _last_logits(model, ids: torch.Tensor, cache: KVCache, vocab_size: int) -> torch.Tensor:
    h = model.hidden_states(ids, kv_cache=cache)  # (B, T, C)
    logits = model.logits(h[:, -1])  # (B, V_padded), soft-capped like training
    return logits[:, :vocab_size]  # padding rows of the embedding are never sampled


class _Row:
    """One sample being decoded: its tokens, its accepted text and its stop rules.

    Text is streamed with a hold-back of len(longest stop string) - 1 characters, so a stop
    string that arrives split over tokens is never shown.
    """

    def __init__(self, tokenizer, rules: StopRules, hold: int):
        self.tokenizer, self.rules, self.hold = tokenizer, rules, hold
        self.tokens: list[int] = []
        self.text = ""  # decoded text accepted so far (cut where the rules said)
        self.emitted = 0  # characters of text already streamed
        self.done: Completion | None = None

    def add(self, token: int, eos: int, limit: int) -> str:
        """Append a token; returns the text now safe to stream. Sets `done` when finished."""
        if token == eos:
            self.done = Completion(self.text, self.tokens, "eos")
            return self._flush()
        self.tokens.append(token)
        decoded = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        # An incomplete UTF-8 sequence decodes to U+FFFD until its next byte arrives.
        if not decoded.endswith("\ufffd") or len(self.tokens) >= limit:
            cut = self.rules.feed(decoded[len(self.text):])
            self.text = decoded
            if cut is not None:
                self.text = decoded[:cut.end]
                self.done = Completion(self.text, self.tokens, cut.reason)
                return self._flush()
        if len(self.tokens) >= limit:
            self.done = Completion(self.text, self.tokens, "max_new_tokens")
            return self._flush()
        ready = max(len(self.text) - self.hold, self.emitted)
        delta, self.emitted = self.text[self.emitted:ready], ready
        return delta

    def _flush(self) -> str:
        delta, self.emitted = self.text[self.emitted:], len(self.text)
        return delta


@torch.no_grad()
def generate(model, tokenizer, prompt: str, cfg: SamplingConfig, *, n: int = 1,
             on_text: Callable[[int, str], None] | None = None) -> list[Completion]:
    """n completions of prompt, decoded together; on_text(row, text) streams each row's new text."""
    was_training = model.training
    model.eval()
    try:
        return _generate(model, tokenizer, prompt, cfg, n, on_text)
    finally:
        model.train(was_training)


def _generate(model, tokenizer, prompt, cfg, n, on_text):
    device = next(model.parameters()).device
    window = model.cfg.seq_len
    eos = eos_id(tokenizer)
    vocab = tokenizer.get_vocab_size()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    # Documents follow an EOS in training, so the prompt does too.
    prompt_ids = [eos, *tokenizer.encode(prompt, add_special_tokens=False).ids][-(window - 1):]
    hold = max((len(s) - 1 for s in cfg.stop_strings), default=0)
    rows = [_Row(tokenizer, StopRules(prompt, function_end=cfg.function_end,
                                      stop_strings=cfg.stop_strings), hold) for _ in range(n)]
    active = list(range(n))  # rows still decoding, in batch order
    context = torch.tensor(prompt_ids, device=device).expand(n, -1)  # (B, L): what the cache holds
    cache = KVCache(model, n, window)
    logits = _last_logits(model, context, cache, vocab)  # (B, V)
    while active:
        chosen = next_tokens(logits, cfg, generator)  # (B,)
        for slot, row_index in enumerate(active):
            delta = rows[row_index].add(int(chosen[slot]), eos, cfg.max_new_tokens)
            if delta and on_text is not None:
                on_text(row_index, delta)
        keep = [slot for slot, r in enumerate(active) if rows[r].done is None]
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.keep(index)
            chosen, context = chosen[index], context[index]
            active = [active[slot] for slot in keep]
        context = torch.cat([context, chosen[:, None]], dim=1)  # (B, L+1)
        step_ids = chosen[:, None]  # (B, 1)
        if cache.length == window:  # the window is full: restart from its last half
            context = context[:, -(window // 2):]
            cache = KVCache(model, len(active), window)
            step_ids = context
        logits = _last_logits(model, step_ids, cache, vocab)
    return [r.done for r in rows]
