"""Layout x attention: rejected when the config is built or, device-dependent, before training."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from gocram.config import build_config, load_config
from gocram.core.errors import ConfigError, GocramError
from gocram.data.batching.batches import LAYOUTS, Batch
from gocram.data.batching.windows import RandomWindows
from gocram.plan import needs_document_mask as layout_needs_document_mask
from gocram.train.trainer import Trainer
from tests.conftest import run_gocram

DOCS_LAYOUT = "test_documents"


class DocumentWindows(RandomWindows):
    """Random windows cut into documents at fixed places, positions restarting per document.

    A stand-in for the data pipeline's packed layout, so the model side is tested on its own.
    """

    document_mask = True
    cuts = (0, 9, 10, 30)  # document starts inside each row; one document is a single token

    def next_batch(self) -> Batch:
        batch = super().next_batch()
        B, T = batch.x.shape
        starts = np.zeros(T, dtype=np.int64)
        starts[[c for c in self.cuts if c < T]] = 1
        ids = torch.from_numpy(np.cumsum(starts) - 1).expand(B, T)  # (B, T)
        first = torch.tensor([c for c in self.cuts if c < T])[ids]  # (B, T) its document's start
        positions = torch.arange(T).expand(B, T) - first  # (B, T)
        return Batch(x=batch.x, y=batch.y, positions=positions, document_ids=ids)


if DOCS_LAYOUT not in LAYOUTS:
    LAYOUTS.register(DOCS_LAYOUT)(DocumentWindows)


def test_random_windows_need_no_document_mask():
    assert RandomWindows.document_mask is False
    assert layout_needs_document_mask("random") is False
    assert layout_needs_document_mask(DOCS_LAYOUT) is True


def test_a_layout_needing_masks_with_plain_sdpa_is_rejected_at_build_time():
    with pytest.raises(ConfigError) as err:
        build_config({"data": {"layout": DOCS_LAYOUT}, "impl": {"attention": "sdpa"}})
    message = str(err.value)
    assert f"data.layout='{DOCS_LAYOUT}'" in message and "impl.attention='sdpa'" in message
    assert "is_causal" in message and "'math'" in message  # the reason and the alternatives
    for name in ("math", "sdpa_flash", "sdpa_efficient", "flex", "flash_attn", "xformers"):
        build_config({"data": {"layout": DOCS_LAYOUT}, "impl": {"attention": name}})


def test_unknown_layout_or_attention_names_the_field():
    with pytest.raises(ConfigError, match="data.layout: unknown data layout 'randm'"):
        build_config({"data": {"layout": "randm"}})
    with pytest.raises(ConfigError, match="impl.attention: unknown attention backend 'flsh_attn'"):
        build_config({"impl": {"attention": "flsh_attn"}})


def test_cli_reports_the_rejection_as_one_line(tmp_path, small_overrides):
    done = run_gocram("train", "--config", "tiny", "--out", str(tmp_path / "x"), *small_overrides,
                      "impl.attention=sdpa", "data.layout=nonesuch")
    assert done.returncode == 2
    assert "gocram: error: data.layout: unknown data layout 'nonesuch'" in done.stderr


@pytest.mark.parametrize(("attention", "expected"), [
    ("flex", "no backward on CPU"),
    ("flash_attn", "flash-attn"),
    ("xformers", "xformers"),
    ("sdpa_efficient", "cannot run sdpa_efficient on cpu"),
])
def test_device_dependent_reasons_stop_the_trainer_before_training(
        tmp_path, small_overrides, attention, expected):
    if torch.cuda.is_available():
        pytest.skip("these reasons are CPU's; the GPU check covers CUDA")
    run = load_config("tiny", small_overrides + [f"data.layout={DOCS_LAYOUT}",
                                                 f"impl.attention={attention}"])
    with pytest.raises(GocramError, match=f"impl.attention='{attention}'.*{expected}"):
        Trainer(run, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_trainer_passes_dropout_to_the_check(tmp_path, small_overrides):
    run = load_config("tiny", small_overrides + ["impl.attention=sdpa_flash", "model.dropout=0.1",
                                                 "impl.device=cpu"])
    with pytest.raises(GocramError, match="dropout"):
        Trainer(run, tmp_path / "run")


@pytest.mark.parametrize("attention", ["math", "sdpa_flash"])
def test_training_on_document_rows(tmp_path, small_overrides, attention):
    run = load_config("tiny", small_overrides + [
        f"data.layout={DOCS_LAYOUT}", f"impl.attention={attention}", "model.position=rope",
        "model.n_layer=3", "model.token_drop_rate=0.5", "train.clock=steps", "train.max_steps=4",
        "impl.device=cpu"])
    trainer = Trainer(run, tmp_path / "run")
    calls = []

    class Spy(type(trainer.model.blocks[0].attn.backend)):
        def __call__(self, q, k, v, **kw):
            calls.append(kw["document_ids"])
            return super().__call__(q, k, v, **kw)

    for block in trainer.model.blocks:
        block.attn.backend = Spy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = trainer.run()
    assert result["status"] == "ok" and math.isfinite(result["val_bpb"])
    trained = [ids for ids in calls if ids is not None]
    assert len(trained) == 4 * 3  # every layer of every step saw the documents
    assert trained[0].shape == (4, 64)  # the first layer: every token
    assert trained[1].shape[1] < 64  # a middle layer under token dropping: the kept ones
