"""The modern block's parts (README "Model parts"): each part's math, its config checks, its
parameters' optimizer roles, causality and KV-cache decoding with every part on, a few CPU training
steps per part, and the batch ramp (its step sizes and an exact resume)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from gocram.ablations.toggles import TOGGLES, apply_toggles
from gocram.config import ImplConfig, ModelConfig, load_config
from gocram.core.errors import ConfigError
from gocram.eval.kvcache import KVCache
from gocram.models.gpt import GPT, bigram_buckets
from gocram.models.layers import cross_entropy_loss
from gocram.models.parts import ACTIVATIONS
from gocram.train.optimizers import OPTIMIZERS
from gocram.train.schedule import ramp_accum
from gocram.train.trainer import train
from tests.test_engines import final_params, losses, max_diff

V = 100  # vocabulary of the unit-test models (padded to 128)
# every part on at once: what the `modern` cell of the block matrix trains
MODERN = dict(mlp="gated", activation="silu", qk_norm=True, logit_softcap=15.0, value_embeddings=1,
              bigram_buckets=64, zero_init_proj=True, tie_embeddings=False, bias=False)


def small(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(n_layer=2, n_head=2, d_model=32, seq_len=24, vocab_size=V), **kw})


def model_of(seed=0, impl=None, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(small(**kw), impl)


# -- activations -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "reference"), [
    ("relu2", lambda h: torch.where(h > 0, h * h, torch.zeros_like(h))),
    ("silu", lambda h: h / (1 + torch.exp(-h))),
])
def test_new_activations_own_the_bias_forward_and_backward(name, reference):
    torch.manual_seed(0)
    act = ACTIVATIONS.get(name)(7, bias=True)
    with torch.no_grad():
        act.bias.normal_()
    h = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    act = act.double()
    out = act(h)
    want = reference(h + act.bias)
    torch.testing.assert_close(out, want)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (h, act.bias), g)
    ref = torch.autograd.grad(want, (h, act.bias), g)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


# -- gated MLP -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("d_model", "mlp_ratio", "bias"), [(32, 4, True), (48, 4, False), (96, 3, True),
                                                             (40, 2, True)])
def test_gated_mlp_matches_the_dense_parameter_count_within_rounding(d_model, mlp_ratio, bias):
    kw = dict(d_model=d_model, n_head=2, mlp_ratio=mlp_ratio, bias=bias)
    dense, gated = GPT(small(**kw)), GPT(small(mlp="gated", **kw))
    width = small(mlp="gated", **kw).mlp_width
    assert width % 8 == 0
    # width is 2/3 of the dense width rounded to 8: at most 4 columns off in each of three matrices
    assert abs(gated.num_params() - dense.num_params()) <= 2 * 3 * 4 * (d_model + 1)
    assert abs(3 * width - 2 * mlp_ratio * d_model) <= 3 * 4


def test_gated_mlp_computes_act_of_gate_times_up():
    mlp = model_of(mlp="gated", activation="gelu").blocks[0].mlp
    x = torch.randn(2, 5, 32)
    want = mlp.proj(F.gelu(x @ mlp.fc.weight.t() + mlp.act.bias) * mlp.up(x))
    torch.testing.assert_close(mlp(x), want)
    assert model_of().blocks[0].mlp.up is None  # dense keeps today's two matrices


# -- QK-norm ---------------------------------------------------------------------------------------

def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k():
    idx = torch.randint(0, V, (2, 24))
    for qk_norm in (True, False):
        model = model_of(qk_norm=qk_norm).eval()
        before = model(idx)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.weight[:64] *= 7.0  # the q and k rows (C = 32 each)
                if block.attn.qkv.bias is not None:
                    block.attn.qkv.bias[:64] *= 7.0
        same = torch.allclose(model(idx), before, atol=1e-5)
        assert same == qk_norm


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_qk_norm_agrees_on_math_and_sdpa_forward_and_backward(position):
    ref = model_of(impl=ImplConfig(attention="math"), qk_norm=True, position=position)
    fast = model_of(impl=ImplConfig(attention="sdpa"), qk_norm=True, position=position)
    fast.load_state_dict(ref.state_dict())
    idx = torch.randint(0, V, (3, 23))  # not the full seq_len: an awkward length
    loss_ref, loss_fast = ref(idx, idx), fast(idx, idx)
    loss_ref.backward()
    loss_fast.backward()
    torch.testing.assert_close(loss_fast, loss_ref, atol=1e-5, rtol=1e-5)
    for p_ref, p_fast in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=1e-5, rtol=1e-4)


# -- logit soft-cap --------------------------------------------------------------------------------

def test_softcap_bounds_the_logits_and_the_loss_sees_the_capped_ones():
    model = model_of(logit_softcap=2.0)
    with torch.no_grad():
        model.lm_head.weight.mul_(300.0)  # raw logits far beyond the cap
    idx, targets = torch.randint(0, V, (2, 24)), torch.randint(0, V, (2, 24))
    logits = model(idx)
    assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9  # tanh saturates to 2 in fp32
    h = model.hidden_states(idx)
    raw = model.lm_head(h)
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))
    want = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(model(idx, targets), want)
    # gradient through the cap: the reference loss with softcap= against autograd on the formula
    hidden = torch.randn(6, 32, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, 32, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, V, (6,))
    got = torch.autograd.grad(cross_entropy_loss()(hidden, weight, t, softcap=3.0), (hidden, weight))
    ref = torch.autograd.grad(F.cross_entropy(3.0 * torch.tanh(hidden @ weight.t() / 3.0), t),
                              (hidden, weight))
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_softcap_off_leaves_the_model_bit_identical():
    a, b = model_of(), model_of(logit_softcap=0.0)
    idx = torch.randint(0, V, (2, 24))
    assert torch.equal(a(idx), b(idx)) and torch.equal(a(idx, idx), b(idx, idx))


def test_softcap_with_a_loss_that_cannot_cap_is_rejected_naming_both_fields():
    with pytest.raises(ConfigError, match=r"model.logit_softcap=15.*impl.loss='triton'"):
        load_config("tiny", ["model.logit_softcap=15", "impl.loss=triton"])
    load_config("tiny", ["impl.loss=triton"])  # no cap: the fused loss is fine
    with pytest.raises(ConfigError, match="model.logit_softcap must be >= 0"):
        load_config("tiny", ["model.logit_softcap=-1"])


# -- value embeddings ------------------------------------------------------------------------------

def test_value_embeddings_are_shared_by_the_first_and_last_layers():
    layers = lambda n, k: [small(n_layer=n, value_embeddings=k).value_embedding_of(i) for i in range(n)]  # noqa: E731
    assert layers(4, 2) == [0, 1, 1, 0]
    assert layers(5, 2) == [0, 1, None, 1, 0]
    assert layers(3, 2) == [0, 1, 0]
    assert layers(2, 0) == [None, None]
    with pytest.raises(ConfigError, match=r"model.value_embeddings=3.*ceil\(model.n_layer/2\)=2"):
        small(n_layer=4, value_embeddings=3)
    model = model_of(n_layer=3, value_embeddings=1)
    assert len(model.value_embeds) == 1
    assert [b.attn.ve_lambda is not None for b in model.blocks] == [True, False, True]


def test_value_embeddings_mix_into_the_values_and_learn():
    model = model_of(value_embeddings=1)
    idx = torch.randint(0, V, (2, 24))
    loss = model(idx, idx)
    loss.backward()
    assert model.value_embeds[0].weight.grad.abs().sum() > 0
    assert all(b.attn.ve_lambda.grad.abs() > 0 for b in model.blocks)
    with torch.no_grad():
        before = model(idx)
        model.value_embeds[0].weight.zero_()
        assert not torch.allclose(model(idx), before)
        for block in model.blocks:
            block.attn.ve_lambda.zero_()
    plain = model_of()  # the same weights without the tables now compute the same function
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if "value_embeds" not in k and "ve_lambda" not in k})
    torch.testing.assert_close(model(idx), plain(idx))


# -- bigram hash -----------------------------------------------------------------------------------

def test_bigram_hash_is_deterministic_and_spreads_over_the_buckets():
    cur = torch.arange(64).repeat(64)[None]  # every (previous, token) pair of 64 tokens
    prev = torch.arange(64).repeat_interleave(64)[None]
    ids = bigram_buckets(cur, prev, 256)
    assert torch.equal(ids, bigram_buckets(cur.clone(), prev.clone(), 256))
    counts = torch.bincount(ids.flatten(), minlength=256)
    assert ids.min() >= 0 and ids.max() < 256
    assert (counts > 0).float().mean() > 0.95 and counts.max() <= 4 * 4096 / 256  # near uniform


def test_bigram_position_zero_uses_the_no_previous_id():
    model = model_of(bigram_buckets=64)
    idx = torch.randint(0, V, (2, 10))
    ids = model._bigram_ids(idx, torch.arange(10).expand(2, 10), None)
    no_prev = torch.full_like(idx[:, :1], model.cfg.padded_vocab_size)
    assert torch.equal(ids[:, :1], bigram_buckets(idx[:, :1], no_prev, 64))
    assert torch.equal(ids[:, 1:], bigram_buckets(idx[:, 1:], idx[:, :-1], 64))
    # a packed row: a document starting mid-row (position 0 again) has no previous token either
    packed = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0, 1, 2]]).expand(2, 10)
    ids = model._bigram_ids(idx, packed, None)
    starts = packed == 0
    assert torch.equal(ids[starts], bigram_buckets(idx, no_prev.expand(2, 10), 64)[starts])


# -- every part on at once -------------------------------------------------------------------------

@pytest.mark.parametrize("position", ["learned", "rope"])
def test_all_parts_keep_causality(position):
    """Changing token t+1 changes no output at t or before (the bigram reads only backwards)."""
    model = model_of(position=position, **{**MODERN, "zero_init_proj": False}).eval()
    idx = torch.randint(0, V, (2, 20))
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 1) % V
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_kv_cache_decoding_matches_the_full_forward_with_every_part():
    model = model_of(**{**MODERN, "zero_init_proj": False}).eval()
    idx = torch.randint(0, V, (3, 16))
    with torch.no_grad():
        full = model(idx)  # (B, T, V)
        cache = KVCache(model, 3)
        steps = [model.logits(model.hidden_states(idx[:, :9], kv_cache=cache))]
        cache.keep(torch.tensor([0, 1, 2]))
        for t in range(9, 16):
            steps.append(model.logits(model.hidden_states(idx[:, t:t + 1], kv_cache=cache)))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert full.abs().max() < 15.0  # the cap holds in decoding too


def test_zero_init_proj_makes_every_block_start_as_the_identity():
    model = model_of(zero_init_proj=True)
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.proj.weight.any()
    idx = torch.randint(0, V, (2, 24))
    with torch.no_grad():
        embedded = model.wte(idx) + model.wpe(torch.arange(24))
        torch.testing.assert_close(model.hidden_states(idx), model.norm_f(embedded))
    assert model_of().blocks[0].mlp.proj.weight.any()


def test_every_new_parameter_has_its_optimizer_role():
    model = model_of(**MODERN)
    roles = model.param_roles()
    ids = {name: id(p) for name, p in model.named_parameters()}
    role_of = {i: role for role, params in roles.items() for i in map(id, params)}
    assert len(role_of) == len(ids)  # each parameter once
    for name, i in ids.items():
        if name.startswith("blocks.") and name.endswith(".weight") and "norm" not in name:
            assert role_of[i] == "matrix", name  # qkv, proj, fc, up: on Muon
    assert role_of[ids["bigram.weight"]] == role_of[ids["value_embeds.0.weight"]] == "embedding"
    assert role_of[ids["blocks.0.attn.ve_lambda"]] == "vector"
    assert role_of[ids["lm_head.weight"]] == "head"
    muon = OPTIMIZERS.get("muon").build(roles, load_config("tiny").train, kernel="for_loop")
    assert {id(p) for p in muon.parts["muon"].param_groups[0]["params"]} == set(map(id, roles["matrix"]))


# -- training --------------------------------------------------------------------------------------

PARTS = {
    "relu2": dict(activation="relu2"), "geglu": dict(mlp="gated"),
    "swiglu": dict(mlp="gated", activation="silu"), "qk_norm": dict(qk_norm=True),
    "softcap": dict(logit_softcap=5.0), "value_embeddings": dict(value_embeddings=1),
    "bigram": dict(bigram_buckets=64), "zero_init_proj": dict(zero_init_proj=True),
    "untied_head": dict(tie_embeddings=False), "no_bias": dict(bias=False), "modern": MODERN,
}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_few_steps_learn_with_each_part(part):
    """30 AdamW steps on a repeating token pattern: the loss falls and stays finite."""
    model = model_of(**PARTS[part])
    pattern = torch.randint(0, V, (1, 7))
    data = pattern.repeat(4, 4)[:, :25]  # (4, 25): a period-7 sequence per row
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seen = []
    for _ in range(30):
        loss = model(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(loss.item())
    assert all(torch.isfinite(torch.tensor(seen)))
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 - 0.5, seen


def test_the_modern_block_trains_with_muon_in_the_trainer(tmp_path, small_overrides):
    parts = ["model.mlp=gated", "model.activation=silu", "model.qk_norm=true", "model.logit_softcap=15",
             "model.value_embeddings=1", "model.bigram_buckets=256", "model.zero_init_proj=true",
             "model.tie_embeddings=false", "model.bias=false"]
    cfg = load_config("tiny", [*small_overrides, *parts, "train.optimizer=muon", "train.clock=steps",
                               "train.max_steps=25", "impl.log_every_steps=1", "impl.ckpt_every_s=0"])
    result = train(cfg, tmp_path / "modern")
    loss = list(losses(tmp_path / "modern").values())
    assert len(loss) == 25 and all(torch.isfinite(torch.tensor(loss)))
    assert sum(loss[-3:]) / 3 < sum(loss[:3]) / 3 - 0.5, loss
    assert result["val_bpb"] > 0


# -- config, hashes and toggles --------------------------------------------------------------------

NEW_MODEL_FIELDS = ("mlp", "qk_norm", "logit_softcap", "value_embeddings", "bigram_buckets",
                    "zero_init_proj")


def test_new_fields_at_their_default_leave_the_hash_alone():
    for name in ("baseline", "tiny", "small"):
        cfg = load_config(name)
        hashed = cfg._hashed(("model", "train"))
        assert not set(NEW_MODEL_FIELDS) & set(hashed["model"]) and "batch_ramp_frac" not in hashed["train"]
    base = load_config("tiny")
    for override in ("model.mlp=gated", "model.qk_norm=true", "model.logit_softcap=30",
                     "model.value_embeddings=1", "model.bigram_buckets=8", "model.zero_init_proj=true",
                     "train.batch_ramp_frac=0.2"):
        assert load_config("tiny", [override]).meaning_hash() != base.meaning_hash(), override
    # set back to the default explicitly: the same hash as leaving it out
    assert load_config("tiny", ["model.qk_norm=false"]).meaning_hash() == base.meaning_hash()


@pytest.mark.parametrize(("spec", "field", "value"), [
    ("activation=relu2", "model.activation", "relu2"), ("gated_mlp", "model.mlp", "gated"),
    ("qk_norm", "model.qk_norm", True), ("softcap=15", "model.logit_softcap", 15.0),
    ("value_embeddings=1", "model.value_embeddings", 1), ("bigram=4096", "model.bigram_buckets", 4096),
    ("zero_init_proj", "model.zero_init_proj", True), ("untied_head", "model.tie_embeddings", False),
    ("no_bias", "model.bias", False), ("batch_ramp=0.3", "train.batch_ramp_frac", 0.3),
])
def test_block_toggles_are_approximate_and_write_their_field(spec, field, value):
    base = load_config("tiny")
    cfg = apply_toggles(base, (spec,))
    section, _, key = field.partition(".")
    assert getattr(getattr(cfg, section), key) == value
    assert TOGGLES[spec.partition("=")[0]].kind == "approximate"
    assert cfg.meaning_hash() != base.meaning_hash()


# -- batch ramp ------------------------------------------------------------------------------------

def test_ramp_accum_grows_from_one_to_full():
    assert [ramp_accum(s / 8, 4, 0.5) for s in range(9)] == [1, 1, 2, 3, 4, 4, 4, 4, 4]
    assert [ramp_accum(f, 4, 0.0) for f in (0.0, 0.3, 1.0)] == [4, 4, 4]
    assert ramp_accum(0.0, 1, 0.5) == 1


def test_batch_ramp_is_rejected_where_the_engine_fixes_the_accumulation():
    with pytest.raises(ConfigError, match=r"train.batch_ramp_frac=0.5 with impl.engine='zero1'"):
        load_config("tiny", ["train.batch_ramp_frac=0.5", "impl.engine=zero1", "train.optimizer=adamw"])


def test_batch_ramp_steps_follow_the_ramp_and_resume_exactly(tmp_path, small_overrides):
    per_micro = 4 * 64  # train.micro_batch x model.seq_len of the small overrides
    args = [*small_overrides, f"train.batch_tokens={4 * per_micro}", "train.batch_ramp_frac=0.75",
            "train.clock=steps", "train.max_steps=8", "impl.ckpt_every_steps=2", "impl.ckpt_every_s=0",
            "impl.log_every_steps=1", "impl.keep_checkpoints=8"]
    whole = tmp_path / "whole"
    train(load_config("tiny", args), whole)
    records = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    tokens = [r["tokens"] for r in records if "loss" in r]
    per_step = [b - a for a, b in zip([0, *tokens], tokens, strict=False)]
    assert per_step == [n * per_micro for n in (1, 1, 2, 2, 3, 3, 4, 4)]
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    for path in (resumed / "checkpoint").glob("ckpt-0000000[68]*"):  # resume from step 4, mid-ramp
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (resumed / "result.json").unlink()
    train(load_config("tiny", args), resumed, resume=True)
    records = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("event") == "resume"] == [4]
    assert losses(resumed) == losses(whole)
    assert max_diff(final_params(resumed), final_params(whole)) == 0.0


def test_token_dropping_carries_the_value_embeddings_of_the_kept_tokens():
    model = model_of(n_layer=3, value_embeddings=2, bigram_buckets=32, token_drop_rate=0.5)
    model.train()
    idx = torch.randint(0, V, (2, 24))
    loss = model(idx, idx)  # layer 1 (the middle) drops tokens and mixes table 1 into its values
    loss.backward()
    assert torch.isfinite(loss) and model.value_embeds[1].weight.grad.abs().sum() > 0


def test_export_refuses_the_parts_gpt2_lacks():
    from gocram.eval.export import gpt2_refusal

    assert gpt2_refusal(small()) is None and gpt2_refusal(small(zero_init_proj=True)) is None
    for part in ("mlp", "qk_norm", "logit_softcap", "value_embeddings", "bigram_buckets"):
        kw = {k: v for k, v in MODERN.items() if k == part}
        assert f"model.{part}=" in gpt2_refusal(small(**kw)), part
