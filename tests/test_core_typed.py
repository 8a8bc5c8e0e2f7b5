"""One set of typing rules for every config: the run's sections and the data build's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from gocram.config import load_config
from gocram.core.errors import ConfigError
from gocram.core.typed import build_dataclass, coerce
from gocram.data.corpus.options import build_options


@dataclass(frozen=True, kw_only=True)
class Inner:
    rate: float = 0.5


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = "x"
    kind: Literal["a", "b"] = "a"
    size: int | None = None
    names: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)


def test_values_are_widened_never_narrowed():
    assert coerce(3, float, "f") == 3.0 and isinstance(coerce(3, float, "f"), float)
    assert coerce("1e-3", float, "f") == 1e-3  # YAML 1.1 reads it as a string
    assert coerce(1.19, str, "s") == "1.19"  # a version YAML read as a number
    assert coerce("go", tuple[str, ...], "t") == ("go",)
    assert coerce(None, int | None, "n") is None
    with pytest.raises(ConfigError, match="n: expected int, got True"):
        coerce(True, int, "n")
    with pytest.raises(ConfigError, match=r"k: must be one of \['a', 'b'\], got 'c'"):
        coerce("c", Literal["a", "b"], "k")
    with pytest.raises(ConfigError, match="f: expected float, got 'fast'"):
        coerce("fast", float, "f")


def test_nested_sections_and_unknown_keys_name_the_field():
    built = build_dataclass(Outer, {"size": 3, "inner": {"rate": 1}}, "", noun="setting")
    assert built.size == 3 and built.inner.rate == 1.0
    with pytest.raises(ConfigError, match=r"unknown setting 'inner.rte' \(did you mean 'inner.rate'\?\)"):
        build_dataclass(Outer, {"inner": {"rte": 1}}, "", noun="setting")
    with pytest.raises(ConfigError, match="inner: expected a mapping"):
        build_dataclass(Outer, {"inner": 3}, "", noun="setting")


def test_both_builders_read_a_value_alike():
    """A float written as an int is a float in a run config and in a build config alike."""
    assert load_config("tiny", ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config("tiny", ["train.lrr=1"])
    assert isinstance(build_options({}, ["filters.max_avg_line_length=80"]).filters.max_avg_line_length,
                      float)
    with pytest.raises(ConfigError, match="unknown build setting 'near_dedup.treshold'"):
        build_options({}, ["near_dedup.treshold=0.8"])
