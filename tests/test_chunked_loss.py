"""The chunked plain-torch linear + cross-entropy (impl.loss=chunked) against the reference loss."""

from __future__ import annotations

import json

import pytest
import torch

from gocram.ablations.toggles import apply_toggles, unsupported_reason
from gocram.config import load_config
from gocram.core.tokens import IGNORE_INDEX
from gocram.models import chunked_loss
from gocram.models.layers import cross_entropy_loss
from gocram.models.parts import LOSSES
from gocram.plan import Env
from gocram.train.trainer import train

REFERENCE = cross_entropy_loss()
# fp32: summation order only. bf16: the same bf16 matmuls, the gradient rounded to bf16 once per
# chunk instead of once for the batch, and dweight accumulated over chunks in fp32.
TOLERANCES = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _inputs(n, d, vocab, dtype, *, ignore=()):
    gen = torch.Generator().manual_seed(n * 1000 + vocab)
    hidden = torch.randn(n, d, generator=gen).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, d, generator=gen) / d**0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[list(ignore)] = IGNORE_INDEX
    return hidden, weight, targets


def _loss_and_grads(loss_fn, hidden, weight, targets, reduction):
    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    loss = loss_fn(h, w, targets, reduction=reduction)
    (loss * 1.7).backward()  # a non-unit upstream gradient reaches the saved gradients
    return loss, h.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,vocab,chunk_rows,ignore", [
    (37, 101, 8, ()),  # a ragged last chunk (37 = 4 * 8 + 5), an odd vocabulary
    (64, 97, 16, range(16, 32)),  # one chunk entirely of ignored rows
    (10, 33, 3, (0, 4, 9)),  # scattered ignored rows, one in the ragged last chunk
    (9, 50, 64, ()),  # one chunk larger than the batch
    (21, 65, None, (2,)),  # the default chunking
])
def test_forward_and_backward_match_the_reference(dtype, reduction, n, vocab, chunk_rows, ignore):
    hidden, weight, targets = _inputs(n, 24, vocab, dtype, ignore=ignore)
    chunked = chunked_loss.chunked_cross_entropy(chunk_rows=chunk_rows)
    loss, dh, dw = _loss_and_grads(chunked, hidden, weight, targets, reduction)
    ref_loss, ref_dh, ref_dw = _loss_and_grads(REFERENCE, hidden, weight, targets, reduction)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert (dh.dtype, dw.dtype) == (dtype, dtype)
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(loss, ref_loss, **tol)
    torch.testing.assert_close(dh.float(), ref_dh.float(), **tol)
    torch.testing.assert_close(dw.float(), ref_dw.float(), **tol)
    if ignore:
        assert not dh[list(ignore)].any()  # ignored rows get no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_soft_capped_logits_match_the_reference(dtype):
    """model.logit_softcap: the cap and its derivative inside the chunks, several chunks."""
    hidden, weight, targets = _inputs(29, 24, 77, dtype, ignore=(3,))
    hidden = (hidden.detach() * 8).requires_grad_()  # logits well beyond the cap: tanh saturates
    chunked = chunked_loss.chunked_cross_entropy(chunk_rows=6)
    for reduction in ("mean", "sum"):
        got = _loss_and_grads(lambda *a, **k: chunked(*a, **k, softcap=3.0), hidden, weight,
                              targets, reduction)
        want = _loss_and_grads(lambda *a, **k: REFERENCE(*a, **k, softcap=3.0), hidden, weight,
                               targets, reduction)
        uncapped = _loss_and_grads(chunked, hidden, weight, targets, reduction)
        assert not torch.allclose(got[0], uncapped[0])  # the cap changed the loss
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a.float(), b.float(), **TOLERANCES[dtype])


def test_matches_under_bf16_autocast():
    hidden, weight, targets = _inputs(45, 32, 77, torch.float32, ignore=(3,))
    chunked = chunked_loss.chunked_cross_entropy(chunk_rows=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, dh, dw = _loss_and_grads(chunked, hidden, weight, targets, "mean")
        ref_loss, ref_dh, ref_dw = _loss_and_grads(REFERENCE, hidden, weight, targets, "mean")
    tol = TOLERANCES[torch.bfloat16]
    torch.testing.assert_close(loss, ref_loss, **tol)
    torch.testing.assert_close(dh, ref_dh, **tol)
    torch.testing.assert_close(dw, ref_dw, **tol)


def test_all_rows_ignored():
    hidden, weight, targets = _inputs(12, 16, 40, torch.float32, ignore=range(12))
    chunked = chunked_loss.chunked_cross_entropy(chunk_rows=5)
    loss, dh, dw = _loss_and_grads(chunked, hidden, weight, targets, "sum")
    assert loss.item() == 0 and not dh.any() and not dw.any()
    with torch.no_grad():  # 'mean' over no rows is nan, as torch's
        assert torch.isnan(chunked(hidden, weight, targets, reduction="mean"))
        assert torch.isnan(REFERENCE(hidden, weight, targets, reduction="mean"))


def test_without_grad_it_computes_only_the_loss():
    hidden, weight, targets = _inputs(30, 16, 41, torch.float32)
    chunked = chunked_loss.chunked_cross_entropy(chunk_rows=4)
    with torch.no_grad():
        loss = chunked(hidden, weight, targets)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, REFERENCE(hidden, weight, targets).detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        chunked(hidden, weight, targets, reduction="none")


def test_the_toggle_selects_it_and_runs_on_cpu():
    base = load_config("baseline")
    cfg = apply_toggles(base, ("chunked_cross_entropy",))
    assert (cfg.model.loss, cfg.impl.loss) == ("cross_entropy", "chunked")
    assert cfg.meaning_hash() == base.meaning_hash()
    assert LOSSES.get("cross_entropy", "chunked") is chunked_loss.chunked_cross_entropy
    cpu = Env("cpu", "cpu", triton_interpret=False)
    assert unsupported_reason(cpu, cfg) is None


STEPS = 6


def _train_losses(overrides, out) -> list[float]:
    cfg = load_config(None, [*overrides, "train.clock=steps", f"train.max_steps={STEPS}",
                             "impl.log_every_steps=1", "impl.device=cpu"])
    train(cfg, out)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "event" not in r and "loss" in r]


def test_training_matches_the_torch_loss(small_overrides, tmp_path, monkeypatch):
    # Small default chunks, so the model's loss walks several: 4 x 64 = 256 rows of a
    # vocabulary of 512 in chunks of 100, 100 and 56 rows.
    monkeypatch.setattr(chunked_loss, "DEFAULT_CHUNK_ELEMENTS", 100 * 512)
    assert chunked_loss.default_chunk_rows(256, 512) == 100
    ref = _train_losses(small_overrides, tmp_path / "torch")
    chunked = _train_losses([*small_overrides, "impl.loss=chunked"], tmp_path / "chunked")
    assert len(ref) == len(chunked) == STEPS
    torch.testing.assert_close(torch.tensor(chunked), torch.tensor(ref), atol=1e-4, rtol=1e-5)
    assert ref[-1] < ref[0]  # it trained, so equal curves mean something
