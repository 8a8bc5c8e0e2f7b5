"""The size for the budget: the size, batch and LR toggles write what a size sweep needs, and the
report plots final bpb against parameters only when the cells differ in size."""

from __future__ import annotations

import json

import pytest

from gocram.ablations.report import write_reports
from gocram.ablations.toggles import HEAD_SIZE, apply_toggles
from gocram.config import load_config
from gocram.core.errors import ConfigError
from tests.test_report import _row


def test_size_sets_depth_width_and_heads_of_one_size():
    base = load_config("tiny")
    cfg = apply_toggles(base, ("size=6x384",))
    assert (cfg.model.n_layer, cfg.model.d_model) == (6, 384)
    assert cfg.model.d_model // cfg.model.n_head == HEAD_SIZE
    narrow = apply_toggles(base, ("size=2X192",))
    assert (narrow.model.n_layer, narrow.model.n_head) == (2, 192 // HEAD_SIZE)


@pytest.mark.parametrize(("spec", "message"), [
    ("size=256", "write LAYERSxWIDTH"),
    ("size=4xwide", "write LAYERSxWIDTH"),
    (f"size=4x{HEAD_SIZE + 1}", "multiple of the head size"),
    ("batch_tokens=100", "multiple of model.seq_len"),
    ("context=300", "divides the base's micro-batch"),
    ("context=long", "divides the base's micro-batch"),
])
def test_bad_size_and_batch_values_name_the_problem(spec, message):
    with pytest.raises(ConfigError, match=message):
        apply_toggles(load_config("tiny"), (spec,))


def test_batch_tokens_keeps_the_micro_batch_where_it_divides_the_batch():
    base = load_config("tiny")
    sequence, micro = base.model.seq_len, base.train.micro_batch
    bigger = apply_toggles(base, (f"batch_tokens={2 * micro * sequence}",))
    assert (bigger.train.micro_batch, bigger.grad_accum) == (micro, 2)
    smaller = apply_toggles(base, (f"batch_tokens={micro // 2 * sequence}",))
    assert (smaller.train.micro_batch, smaller.grad_accum) == (micro // 2, 1)
    # 24 sequences are no multiple of tiny's micro-batch of 16: the largest that divides them, 12, twice
    assert micro == 16
    odd = apply_toggles(base, (f"batch_tokens={24 * sequence}",))
    assert (odd.train.batch_tokens, odd.train.micro_batch, odd.grad_accum) == (24 * sequence, 12, 2)


def test_context_moves_the_sequence_length_at_the_bases_tokens_per_step():
    base = load_config("tiny")
    step_tokens = base.train.micro_batch * base.model.seq_len * base.grad_accum
    for length in (2 * base.model.seq_len, base.model.seq_len // 2):
        cfg = apply_toggles(base, (f"context={length}",))
        assert cfg.model.seq_len == length
        assert cfg.train.micro_batch * cfg.model.seq_len * cfg.grad_accum == step_tokens
    with pytest.raises(ConfigError, match=r"both set train\.micro_batch"):
        apply_toggles(base, ("context=512", "batch_tokens=8192"))


def test_a_longer_context_trains_on_the_same_tokens_per_step(tmp_path, small_overrides):
    from gocram.train.trainer import train

    steps = ["train.clock=steps", "train.max_steps=6", "impl.log_every_steps=1"]
    base = load_config("tiny", [*small_overrides, *steps])
    cfg = apply_toggles(base, (f"context={2 * base.model.seq_len}",))
    train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    tokens = [r["tokens"] for r in records if "loss" in r]
    assert tokens == [(i + 1) * base.train.micro_batch * base.model.seq_len for i in range(6)]
    trained = [r["loss"] for r in records if "loss" in r]
    assert trained[-1] < trained[0]


def test_each_optimizer_groups_lr_has_its_own_toggle():
    base = load_config("tiny", ["train.optimizer=muon"])
    cfg = apply_toggles(base, ("lr=0.001", "matrix_lr=0.04"))
    assert (cfg.train.lr, cfg.train.matrix_lr) == (0.001, 0.04)


def _sized(cell, seed, bpb, n_params, toggles=()):
    return {**_row(cell, seed, 1000, bpb, toggles=toggles), "n_params": n_params}


def test_bpb_vs_params_is_written_only_when_the_cells_differ_in_size(tmp_path):
    sweep = [_sized("baseline", s, 2.5 + 0.01 * s, 4_000_000) for s in range(2)]
    sweep += [_sized("size=6x384", s, 2.3, 12_000_000, ["size=6x384"]) for s in range(2)]
    written = write_reports(sweep, tmp_path / "sweep", "m")
    plot = tmp_path / "sweep" / "m" / "dev" / "bpb_vs_params.png"
    assert plot in written and plot.stat().st_size > 0

    one_size = [_sized("baseline", 0, 2.5, 4_000_000), _sized("lr=0.004", 0, 2.4, 4_000_000, ["lr=0.004"])]
    written = write_reports(one_size, tmp_path / "one", "m")
    assert not any(p.name == "bpb_vs_params.png" for p in written)
    assert not (tmp_path / "one" / "m" / "dev" / "bpb_vs_params.png").exists()


def test_two_toggles_writing_one_field_are_rejected_not_silently_overwritten():
    # both split the batch: engine over processes, batch_tokens over micro-batches
    with pytest.raises(ConfigError, match=r"both set train\.(micro_batch|batch_tokens)"):
        apply_toggles(load_config("tiny"), ("engine=ddp", "batch_tokens=8192"))
