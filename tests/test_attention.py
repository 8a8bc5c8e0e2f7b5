"""Attention backends against `math`, document masks, and where each backend refuses to run."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gocram.config import ImplConfig, ModelConfig
from gocram.models.attention import causal_document_mask, cu_seqlens, segment_ids
from gocram.models.gpt import GPT
from gocram.models.parts import ATTENTIONS

CPU = torch.device("cpu")
BACKENDS = ATTENTIONS.names()
# Forward/backward tolerances against math in fp32 (bf16 inputs keep ~3 significant digits).
TOLERANCES = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}
# (B, nh, T, hs): T not a power of two, a single row, a single token, an odd head size.
SHAPES = [(2, 3, 37, 16), (1, 2, 50, 8), (1, 1, 1, 8), (3, 2, 13, 7)]


def packed_ids(B: int, T: int, seed: int) -> torch.Tensor:
    """(B, T) document ids of random lengths, one-token documents included."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        ids, doc = [], 0
        while len(ids) < T:
            ids += [doc] * int(torch.randint(1, max(2, T // 3), (1,), generator=gen))
            doc += 1
        rows.append(ids[:T])
    return torch.tensor(rows)


def reason_here(name, *, dtype, training, document_mask, head_size=None):
    return ATTENTIONS.build(name).unsupported_reason(
        device=CPU, dtype=dtype, training=training, document_mask=document_mask, head_size=head_size)


@pytest.mark.parametrize("documents", [False, True], ids=["causal", "documents"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", BACKENDS)
def test_backend_matches_math_forward_and_backward(name, shape, dtype, documents):
    B, nh, T, hs = shape
    if documents and not ATTENTIONS.get(name).supports_document_mask:
        pytest.skip(f"{name} takes no document mask (rejected when the config is built)")
    training = reason_here(name, dtype=dtype, training=True, document_mask=documents, head_size=hs)
    forward = reason_here(name, dtype=dtype, training=False, document_mask=documents, head_size=hs)
    if forward:
        pytest.skip(f"cannot run here: {forward}")
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, nh, T, hs) for _ in range(3))
    grad_out = torch.randn(B, nh, T, hs)
    docs = packed_ids(B, T, seed=T) if documents else None
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = ATTENTIONS.build("math")(*ref_in, document_ids=docs)
    ref.backward(grad_out)
    test_in = [t.to(dtype).requires_grad_(training is None) for t in (q, k, v)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex's eager-mode notice on CPU
        out = ATTENTIONS.build(name)(*test_in, document_ids=docs)
    assert out.shape == (B, nh, T, hs) and out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, **TOLERANCES[dtype])
    if training:  # forward only here (flex on CPU); test_what_runs_on_this_cpu pins the reason
        return
    out.backward(grad_out.to(dtype))
    for got, want, which in zip(test_in, ref_in, "qkv", strict=True):
        torch.testing.assert_close(got.grad.float(), want.grad, **TOLERANCES[dtype], msg=f"d{which}")


def test_what_runs_on_this_cpu():
    """The reasons describe this torch on CPU; if torch gains a kernel, this says to update them."""
    fp32 = dict(dtype=torch.float32, document_mask=False)
    for name in ("math", "sdpa", "sdpa_flash"):
        assert reason_here(name, training=True, **fp32) is None
    assert reason_here("flex", training=False, **fp32) is None
    assert "no backward on CPU" in reason_here("flex", training=True, **fp32)
    assert "cannot run sdpa_efficient on cpu" in reason_here("sdpa_efficient", training=False, **fp32)
    for name in ("flash_attn", "xformers"):
        reason = reason_here(name, training=True, **fp32)
        assert "not installed" in reason or "CUDA" in reason
    for name in ("math", "sdpa_flash", "flex"):
        assert reason_here(name, training=False, dtype=torch.float32, document_mask=True) is None
    assert "document mask" in reason_here("sdpa", training=False, dtype=torch.float32, document_mask=True)
    dropout = ATTENTIONS.build("sdpa_flash").unsupported_reason(
        device=CPU, dtype=torch.float32, training=True, document_mask=False, dropout=True)
    assert "dropout" in dropout
    assert "dropout" in ATTENTIONS.build("flex").unsupported_reason(
        device=CPU, dtype=torch.float32, training=False, document_mask=False, dropout=True)


def test_the_cpu_reasons_match_what_torch_does():
    q = torch.randn(1, 1, 8, 16, requires_grad=True)
    with pytest.raises(RuntimeError), sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    with pytest.raises(RuntimeError), sdpa_kernel(SDPBackend.FLASH_ATTENTION), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.scaled_dot_product_attention(q, q, q, is_causal=True, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="backward on CPU"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ATTENTIONS.build("flex")(q, q, q).sum().backward()


@pytest.mark.parametrize("name", [n for n in BACKENDS if n != "math"])
def test_backends_on_cuda(name):
    if not torch.cuda.is_available():
        pytest.skip(f"needs CUDA: this check runs {name} on a GPU in bf16")
    device = torch.device("cuda")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 300, 64, device=device) for _ in range(3))
    grad_out = torch.randn_like(q)
    ran = []
    for ids in (None, packed_ids(2, 300, seed=1).to(device)):
        reason = ATTENTIONS.build(name).unsupported_reason(
            device=device, dtype=torch.bfloat16, training=True, document_mask=ids is not None,
            head_size=64)
        if reason:
            continue
        ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
        ref = ATTENTIONS.build("math")(*ref_in, document_ids=ids)
        ref.backward(grad_out)
        inputs = [t.bfloat16().requires_grad_() for t in (q, k, v)]
        out = ATTENTIONS.build(name)(*inputs, document_ids=ids)
        torch.testing.assert_close(out.float(), ref, **TOLERANCES[torch.bfloat16])
        out.backward(grad_out.bfloat16())
        for got, want in zip(inputs, ref_in, strict=True):
            torch.testing.assert_close(got.grad.float(), want.grad, atol=5e-2, rtol=5e-2)
        ran.append(ids is not None)
    if not ran:
        pytest.skip(f"cannot run on this GPU: {reason}")


def test_documents_are_contiguous_runs():
    ids = torch.tensor([[7, 7, 3, 3, 3, 7], [0, 0, 0, 0, 1, 1]])
    # A repeated id after another one is a new document; each row starts a new one.
    assert segment_ids(ids).tolist() == [[0, 0, 1, 1, 1, 2], [3, 3, 3, 3, 4, 4]]
    assert cu_seqlens(ids).tolist() == [0, 2, 5, 6, 10, 12]
    assert cu_seqlens(ids).dtype == torch.int32
    mask = causal_document_mask(6, ids, CPU)  # (B, 1, T, T)
    assert mask.shape == (2, 1, 6, 6)
    assert mask[0, 0, 5].tolist() == [False] * 5 + [True]  # the second '7' document sees itself only
    assert mask[0, 0, 4].tolist() == [False, False, True, True, True, False]
    assert mask[1, 0, 3].tolist() == [True] * 4 + [False] * 2


def doc_positions(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) positions restarting at 0 at each document start."""
    seg = segment_ids(document_ids)  # (B, T)
    index = torch.arange(seg.numel()).view_as(seg)
    first = torch.zeros(int(seg.max()) + 1, dtype=torch.long).scatter_reduce(
        0, seg.flatten(), index.flatten(), reduce="amin", include_self=False)
    return index - first[seg]


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("name", [n for n in BACKENDS if ATTENTIONS.get(n).supports_document_mask])
def test_perturbing_one_document_leaves_the_others_identical(name, position):
    reason = reason_here(name, dtype=torch.float32, training=False, document_mask=True)
    if reason:
        pytest.skip(f"cannot run here: {reason}")
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_head=2, d_model=32, seq_len=45, vocab_size=100, position=position)
    model = GPT(cfg, ImplConfig(attention=name)).eval()
    docs = torch.tensor([[0] * 10 + [1] * 1 + [2] * 20 + [3] * 14, [0] * 45])  # (2, 45)
    positions = doc_positions(docs)
    assert positions[0, :12].tolist() == list(range(10)) + [0, 0]
    idx = torch.randint(0, 100, (2, 45))
    changed = idx.clone()
    changed[0, 11:31] = (changed[0, 11:31] + 1) % 100  # all of document 2
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = model(idx, positions=positions, document_ids=docs)
        b = model(changed, positions=positions, document_ids=docs)
    others = torch.ones(2, 45, dtype=torch.bool)
    others[0, 11:31] = False
    assert torch.equal(a[others], b[others])
    assert not torch.allclose(a[0, 11:31], b[0, 11:31])
    # Without the mask the later document would see the change: the test can fail.
    with torch.no_grad():
        c = GPT(cfg, ImplConfig(attention="math")).eval()
        c.load_state_dict(model.state_dict())
        unmasked = [c(t, positions=positions)[0, 31:] for t in (idx, changed)]
        assert not torch.allclose(*unmasked)


def test_sdpa_with_document_ids_raises_with_the_reason():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="cannot apply a document mask"):
        ATTENTIONS.build("sdpa")(q, q, q, document_ids=torch.zeros(1, 4, dtype=torch.long))


def test_flex_reuses_one_block_mask_per_forward():
    from gocram.models.attention import flex

    docs = packed_ids(2, 20, seed=3)
    first = flex._block_masks.get(20, docs, CPU)
    assert flex._block_masks.get(20, docs, CPU) is first
    assert flex._block_masks.get(20, docs.clone(), CPU) is not first  # another batch
    docs[0, 0] = 5  # edited in place: the version counter moves
    assert flex._block_masks.get(20, docs, CPU) is not first
    causal = flex._block_masks.get(20, None, CPU)
    flex._block_masks.get(12, None, CPU)  # another length (token dropping) does not evict it
    assert flex._block_masks.get(20, None, CPU) is causal
