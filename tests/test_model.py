import pytest
import torch

from gocram.config import ImplConfig, ModelConfig
from gocram.core.errors import ConfigError
from gocram.core.registry import Registry
from gocram.models.gpt import GPT
from gocram.models.parts import ATTENTIONS, NORMS


def small(**kw) -> ModelConfig:
    base = dict(n_layer=2, n_head=3, d_model=48, seq_len=33, vocab_size=300)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("tie", [True, False])
def test_shapes_and_loss(position, tie):
    cfg = small(position=position, tie_embeddings=tie)
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (5, 33))
    logits = model(idx)
    assert logits.shape == (5, 33, 320)  # vocab padded up to a multiple of 64
    loss = model(idx, torch.randint(0, cfg.vocab_size, (5, 33)))
    assert loss.shape == () and loss.dtype == torch.float32
    # Untrained: close to uniform over the padded vocabulary.
    assert abs(loss.item() - torch.log(torch.tensor(320.0)).item()) < 0.5
    assert (model.lm_head.weight is model.wte.weight) == tie


def test_shorter_sequences_and_single_row():
    model = GPT(small())
    assert model(torch.randint(0, 300, (1, 1))).shape == (1, 1, 320)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.randint(0, 300, (1, 34)))


def test_causality():
    """Changing a later token never changes earlier logits."""
    torch.manual_seed(0)
    model = GPT(small(position="rope")).eval()
    idx = torch.randint(0, 300, (2, 20))
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 300
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_math_and_sdpa_attention_agree_forward_and_backward():
    torch.manual_seed(0)
    ref = GPT(small(), ImplConfig(attention="math"))
    fast = GPT(small(), ImplConfig(attention="sdpa"))
    fast.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 300, (3, 33))
    loss_ref, loss_fast = ref(idx, idx), fast(idx, idx)
    loss_ref.backward()
    loss_fast.backward()
    torch.testing.assert_close(loss_fast, loss_ref, atol=1e-5, rtol=1e-5)
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_sum_reduction_is_mean_times_count():
    model = GPT(small())
    idx = torch.randint(0, 300, (2, 10))
    torch.testing.assert_close(model(idx, idx, reduction="sum"), model(idx, idx) * 20)


def test_parts_chosen_by_name():
    model = GPT(small(norm="rmsnorm", activation="gelu_tanh"), ImplConfig(attention="math"))
    assert type(model.blocks[0].norm_attn).__name__ == "RMSNorm"
    assert type(model.blocks[0].mlp.act).__name__ == "GELUTanh"
    assert model.blocks[0].attn.backend.name == "math"


def test_unknown_part_names_the_choices():
    with pytest.raises(ConfigError, match="did you mean 'layernorm'"):
        GPT(small(norm="layrnorm"))
    assert {"math", "sdpa"} <= set(ATTENTIONS.names())
    assert "layernorm" in NORMS
    with pytest.raises(ConfigError, match="no 'triton' implementation; choose one of \\['torch'\\]"):
        GPT(small(norm="rmsnorm"), ImplConfig(norm="triton"))


def test_lazy_registry_entries_import_on_first_use():
    reg = Registry("thing")
    reg.add("json_dumps", "json:dumps")
    reg.add("json_dumps", "json:loads", impl="other")
    assert "json_dumps" in reg.names() and reg.impls("json_dumps") == ["other", "torch"]
    assert reg.build("json_dumps", [1]) == "[1]"
    assert reg.get("json_dumps", "other")("[2]") == [2]
    with pytest.raises(ValueError, match="twice"):
        reg.add("json_dumps", "json:loads")
    assert "unknown thing 'json_dump' (did you mean 'json_dumps'?)" in reg.check("json_dump")


def test_param_roles_cover_every_parameter_once():
    for tie in (True, False):
        model = GPT(small(tie_embeddings=tie))
        roles = model.param_roles()
        ids = [id(p) for group in roles.values() for p in group]
        assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
        assert all(p.dim() == 2 for p in roles["matrix"]) and all(p.dim() < 2 for p in roles["vector"])
        assert (len(roles["head"]) == 1) == (not tie)


def test_sdpa_refuses_document_masks_with_a_reason():
    backend = ATTENTIONS.build("sdpa")
    reason = backend.unsupported_reason(device=torch.device("cpu"), dtype=torch.float32,
                                        training=True, document_mask=True)
    assert "document mask" in reason
    assert ATTENTIONS.build("math").unsupported_reason(
        device=torch.device("cpu"), dtype=torch.float32, training=True, document_mask=True) is None


def test_math_attention_document_mask_blocks_other_documents():
    torch.manual_seed(0)
    backend = ATTENTIONS.build("math")
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    docs = torch.tensor([[0, 0, 0, 1, 1, 1]])
    out = backend(q, k, v, document_ids=docs)
    v2 = v.clone()
    v2[..., :3, :] += 1.0  # perturb document 0 only
    out2 = backend(q, k, v2, document_ids=docs)
    torch.testing.assert_close(out[..., 3:, :], out2[..., 3:, :])
