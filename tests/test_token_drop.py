"""Token dropping: exact at rate 0 and in eval, causal under dropping, on its budget schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gocram.config import ImplConfig, ModelConfig, load_config
from gocram.core.errors import ConfigError
from gocram.models.attention import causal_document_mask
from gocram.models.gpt import GPT, apply_rope, rope_tables
from gocram.models.token_drop import TokenDrop, run_on_subset
from gocram.train.trainer import Trainer


def cfg(**kw) -> ModelConfig:
    base = dict(n_layer=4, n_head=2, d_model=32, seq_len=40, vocab_size=200)
    return ModelConfig(**{**base, **kw})


def math_gpt(model_cfg: ModelConfig) -> GPT:
    """The explicit-mask reference below is written against math attention."""
    return GPT(model_cfg, ImplConfig(attention="math"))


def twins(**kw) -> tuple[GPT, GPT]:
    """A baseline and a token-dropping model with the same weights."""
    torch.manual_seed(0)
    base = math_gpt(cfg(**kw))
    drop = math_gpt(cfg(token_drop_rate=0.5, **kw))
    drop.load_state_dict(base.state_dict())
    return base, drop


@pytest.mark.parametrize(("override", "message"), [
    ({"token_drop_rate": 1.0}, "model.token_drop_rate must be in"),
    ({"token_drop_rate": -0.1}, "model.token_drop_rate must be in"),
    ({"token_drop_until": 0.0}, "model.token_drop_until must be in"),
    ({"token_drop_rate": 0.5, "n_layer": 2}, "needs model.n_layer >= 3"),
    ({"token_drop_rate": 0.5, "token_drop_layers": "0-2"}, "must lie within 1-2"),
    ({"token_drop_rate": 0.5, "token_drop_layers": "1-3"}, "must lie within 1-2"),
    ({"token_drop_rate": 0.5, "token_drop_layers": "2-1"}, "a <= b"),
    ({"token_drop_rate": 0.5, "token_drop_layers": "mid"}, "model.token_drop_layers='mid'"),
])
def test_config_rejects_bad_token_drop_settings(override, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**override)


def test_layer_ranges_and_the_override_syntax():
    assert cfg(token_drop_rate=0.5).token_drop_layer_range == range(1, 3)
    assert cfg(token_drop_rate=0.5, token_drop_layers="2-2").token_drop_layer_range == range(2, 3)
    assert cfg(n_layer=6, token_drop_rate=0.5, token_drop_layers="2").token_drop_layer_range == range(2, 3)
    run = load_config("tiny", ["model.n_layer=4", "model.token_drop_rate=0.5", "model.token_drop_layers=1-2"])
    assert run.model.token_drop_layer_range == range(1, 3)
    with pytest.raises(ConfigError, match="model.token_drop_layers"):
        load_config("tiny", ["model.n_layer=4", "model.token_drop_rate=0.5", "model.token_drop_layers=1-3"])


def test_schedule_follows_the_budget_fraction():
    drop = TokenDrop(cfg(token_drop_rate=0.5, token_drop_until=0.8))
    assert [drop.rate_at(f) for f in (0.0, 0.4, 0.8, 1.0)] == [0.5, 0.25, 0.0, 0.0]
    drop.set_budget_fraction(0.4)
    assert drop.rate == 0.25
    assert drop.kept(40) == 32  # 30 rounded up to a multiple of 8
    assert drop.kept(3) == 3 and drop.kept(1) == 1
    drop.set_budget_fraction(0.0)
    assert drop.kept(64) == 32
    keep = drop.select(5, 64, torch.device("cpu"))  # (B, K)
    assert keep.shape == (5, 32)
    assert (keep.diff(dim=1) > 0).all() and keep.min() >= 0 and keep.max() < 64


def test_rate_zero_equals_the_baseline_exactly():
    base, drop = twins()
    drop.set_budget_fraction(0.9)  # past token_drop_until: nothing is dropped any more
    assert drop.token_drop.rate == 0.0
    idx = torch.randint(0, 200, (3, 40))
    a, b = base(idx, idx), drop(idx, idx)
    a.backward()
    b.backward()
    assert torch.equal(a, b)
    for (name, p), q in zip(base.named_parameters(), drop.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
    zero = math_gpt(cfg(token_drop_rate=0.0))
    assert not zero.token_drop.layers


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_eval_never_drops_and_training_does(position):
    base, drop = twins(position=position)
    idx = torch.randint(0, 200, (2, 40))
    with torch.no_grad():
        assert torch.equal(base.eval()(idx), drop.eval()(idx))
        base.train()
        drop.train()
        assert not torch.allclose(base(idx), drop(idx))


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_causality_holds_under_dropping(position):
    torch.manual_seed(0)
    model = math_gpt(cfg(position=position, token_drop_rate=0.6)).train()
    idx = torch.randint(0, 200, (2, 37))
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 200
    torch.manual_seed(1)
    a = model(idx)
    torch.manual_seed(1)  # the same kept subsets in both runs
    b = model(changed)
    assert torch.equal(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def block_with_mask(block, x, allowed, cos, sin):
    """Block.forward written out with an explicit (B, 1, T, T) attention mask."""
    attn = block.attn
    B, T, C = x.shape
    h = block.norm_attn(x)
    q, k, v = attn.qkv(h).split(C, dim=2)  # each (B, T, C)
    q, k, v = (t.view(B, T, attn.n_head, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
    y = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v  # (B, nh, T, hs)
    x = x + attn.proj(y.transpose(1, 2).reshape(B, T, C))
    return x + block.mlp(block.norm_mlp(x))


def test_kept_tokens_keep_their_positions_and_see_only_earlier_kept_tokens():
    """A dropping layer equals the full layer with dropped keys masked out, at the kept tokens."""
    torch.manual_seed(0)
    model = math_gpt(cfg(position="rope", token_drop_rate=0.5))
    block = model.blocks[1]
    B, T, C = 2, 29, 32
    x = torch.randn(B, T, C)
    docs = torch.tensor([[0] * 12 + [1] * 17, [0] * 29])
    positions = torch.arange(T).expand(B, T)
    cos, sin = rope_tables(positions, cfg().head_size)  # each (B, T, hs/2)
    rope = (cos[:, None], sin[:, None])  # each (B, 1, T, hs/2)
    keep = model.token_drop.select(B, T, x.device)  # (B, K)
    out = run_on_subset(block, x, keep, rope, docs)  # (B, T, C)
    kept = torch.zeros(B, T, dtype=torch.bool).scatter(1, keep, True)  # (B, T)
    allowed = causal_document_mask(T, docs, x.device) & kept[:, None, None, :]  # (B, 1, T, T)
    want = block_with_mask(block, x, allowed, *rope)
    torch.testing.assert_close(out[kept], want[kept], atol=1e-5, rtol=1e-5)
    assert torch.equal(out[~kept], x[~kept])  # dropped tokens skip the layer untouched


def test_gradients_reach_every_parameter_while_dropping():
    torch.manual_seed(0)
    model = math_gpt(cfg(position="rope", token_drop_rate=0.7, tie_embeddings=False)).train()
    idx = torch.randint(0, 200, (2, 40))
    model(idx, idx).backward()
    for name, p in model.named_parameters():
        if name == "wte.weight":  # only the rows of tokens that occur get a gradient
            assert p.grad[idx.unique()].abs().sum() > 0
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_trainer_moves_the_rate_with_the_budget(tmp_path, small_overrides):
    run = load_config("tiny", small_overrides + [
        "model.n_layer=3", "model.token_drop_rate=0.5", "model.token_drop_until=0.5",
        "train.clock=steps", "train.max_steps=6", "impl.attention=math"])
    trainer = Trainer(run, tmp_path / "run")
    seen = []
    trainer.step_hooks.append(lambda frac: seen.append((frac, trainer.model.token_drop.rate)))
    result = trainer.run()
    assert [round(f, 4) for f, _ in seen] == [round(s / 6, 4) for s in range(6)]
    assert [r for _, r in seen] == pytest.approx([0.5 * max(0.0, 1 - s / 3) for s in range(6)])
    assert result["status"] == "ok" and math.isfinite(result["val_bpb"])
