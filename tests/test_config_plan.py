"""The meaning / implementation split, ranges on every numeric field, and the one plan."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gocram.ablations.toggles import TOGGLES, apply_toggles, parse_spec
from gocram.config import (
    SECTIONS,
    build_config,
    config_from_dict,
    load_config,
)
from gocram.core.errors import ConfigError
from gocram.plan import Env, plan
from gocram.train.schedule import ScheduleShape, lr_multiplier

CPU = Env("cpu", "test cpu", triton_interpret=False, native_bf16=False)


@pytest.mark.parametrize("override, message", [
    ("train.batch_tokens=-256", "train.batch_tokens must be >= 1"),
    ("impl.log_every_steps=0", "impl.log_every_steps must be >= 1"),
    ("impl.eval_micro_batch=0", "impl.eval_micro_batch must be in [1, 65536]"),
    ("train.budget_s=.nan", "train.budget_s must be a finite number"),
    ("train.budget_s=.inf", "train.budget_s must be a finite number"),
    ("train.lr=-0.1", "train.lr must be in (0, 10]"),
    ("train.beta2=1.5", "train.beta2 must be in [0, 1)"),
    ("model.seq_len=1000000000", "model.seq_len must be in [2, 131072]"),
    ("train.muon_momentum=1.0", "train.muon_momentum must be in [0, 1)"),
    ("health.rollback_lr_factor=0", "health.rollback_lr_factor must be in (0, 1]"),
])
def test_every_numeric_field_is_range_checked(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert message in str(err.value)


def test_moved_keys_name_their_new_place():
    with pytest.raises(ConfigError, match="'train.compile' is now 'impl.compile'"):
        load_config("tiny", ["train.compile=true"])
    with pytest.raises(ConfigError, match="'model.attention' is now 'impl.attention'"):
        load_config("tiny", ["model.attention=math"])


def test_a_saved_config_of_the_old_layout_is_migrated():
    cfg = load_config("tiny")
    old = cfg.to_dict()
    old["model"]["attention"] = old["impl"].pop("attention")
    old["train"]["compile"] = old["impl"].pop("compile")
    old["eval"]["every_s"] = old["impl"].pop("eval_every_s")
    old["model"]["norm"] = "triton_layernorm"
    migrated = config_from_dict(old)
    assert migrated.impl.attention == cfg.impl.attention
    assert migrated.impl.eval_every_s == cfg.impl.eval_every_s
    assert (migrated.model.norm, migrated.impl.norm) == ("layernorm", "triton")


def test_hashes_split_meaning_from_implementation_and_ignore_cadences():
    base = load_config("tiny")
    cadence = load_config("tiny", ["impl.log_every_steps=3", "impl.ckpt_every_s=5", "impl.eval_every_s=7"])
    backend = load_config("tiny", ["impl.attention=math"])
    meaning = load_config("tiny", ["train.lr=0.001"])
    assert cadence.hash() == base.hash() and cadence.meaning_hash() == base.meaning_hash()
    assert backend.meaning_hash() == base.meaning_hash() and backend.impl_hash() != base.impl_hash()
    assert backend.hash() != base.hash()
    assert meaning.meaning_hash() != base.meaning_hash() and meaning.impl_hash() == base.impl_hash()


def test_toggle_kind_follows_the_section_it_writes():
    for name, toggle in TOGGLES.items():
        sections = {key.partition(".")[0] for key in toggle.writes}
        if toggle.exact_because:
            assert toggle.kind == "exact", name
        elif sections == {"impl"}:
            assert toggle.kind == "exact", name
        else:
            assert toggle.kind == "approximate", name
    assert parse_spec("compile")[0].kind == "exact"
    assert parse_spec("optimizer=muon")[0].kind == "approximate"


def test_a_cell_is_validated_once_so_toggle_order_does_not_matter():
    base = load_config("baseline")
    a = apply_toggles(base, ("attention=flex", "layout=packed"))
    b = apply_toggles(base, ("layout=packed", "attention=flex"))
    assert a == b
    for specs in (("attention=sdpa", "layout=packed"), ("layout=packed", "attention=sdpa")):
        with pytest.raises(ConfigError, match="needs a document mask"):
            apply_toggles(base, specs)


def test_two_toggles_of_one_group_are_rejected():
    with pytest.raises(ConfigError, match="both set attention"):
        apply_toggles(load_config("baseline"), ("attention=sdpa", "attention=math"))


def test_the_plan_answers_for_the_trainer_and_the_harness():
    cfg = load_config("baseline", ["impl.norm=triton"])
    triton_env = Env("cpu", "test cpu", triton_interpret=True, native_bf16=False)
    decided = plan(cfg, triton_env)
    if not decided.reasons:  # the kernels ran interpreted: the trainer may run it, the harness not
        assert "no speed path" in decided.unsupported
    assert plan(load_config("tiny"), CPU).precision == "fp32"
    assert plan(load_config("tiny"), dataclasses.replace(CPU, native_bf16=True)).precision == "bf16"
    assert plan(load_config("tiny"), CPU).unsupported is None


def test_muon_is_rejected_with_sharding_engines_at_build_time():
    with pytest.raises(ConfigError, match="train.optimizer='muon' with impl.engine='fsdp'"):
        load_config("tiny", ["train.optimizer=muon", "impl.engine=fsdp"])
    load_config("tiny", ["train.optimizer=muon", "impl.engine=ddp"])


# A config that builds never fails later for a reason the config could have caught: every number
# the run derives from it before training (batch shape, LR schedule, model size) is finite.
NUMERIC = {
    (section, f.name): f for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
    if f.type in ("int", "float", "int | None", "float | None")
}
values = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0, 1, 0.5, -1, 2, 1e30]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(NUMERIC)), values, min_size=1, max_size=3))
def test_a_config_that_builds_is_usable(changes):
    raw = load_config("tiny").to_dict()
    for (section, name), value in changes.items():
        raw[section][name] = value
    try:
        cfg = build_config(raw)
    except ConfigError:
        return
    assert cfg.grad_accum >= 1
    tc = cfg.train
    shape = ScheduleShape(warmup_frac=tc.warmup_frac, min_ratio=tc.min_lr_ratio, decay_frac=tc.decay_frac)
    for frac in (0.0, 0.01, 0.5, 0.99, 1.0):
        assert math.isfinite(tc.lr * lr_multiplier(tc.schedule, frac, shape))
    assert cfg.model.head_size >= 1 and cfg.model.padded_vocab_size >= cfg.model.vocab_size
    assert math.isfinite(cfg.train.budget_s) and cfg.train.budget_s > 0
    assert plan(cfg, CPU).precision in ("fp32", "bf16", "fp16")
    assert torch.finfo(plan(cfg, CPU).dtype).bits in (16, 32)
