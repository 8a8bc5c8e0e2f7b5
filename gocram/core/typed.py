"""Keyword-only config dataclasses built from YAML-shaped values, with one set of typing rules.

Every config of the project (the run's sections in gocram/config.py, the data build's settings in
gocram/data/corpus/options.py) is built here, so a value means the same thing wherever it is
written. Ranges and cross-field checks stay with each dataclass (its `__post_init__`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

from gocram.core.errors import ConfigError


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """`value` as `annotation` expects it, or a ConfigError naming `where`.

    Widened, never narrowed: an int where a float is expected; a string a float parses (YAML 1.1
    reads '1e-3', without a dot, as a string); a YAML scalar where text is expected, read as its
    text (YAML reads a version like 1.19 as a number); one item where a tuple is expected. A bool
    is never an int.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {annotation}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        inner = typing.get_args(annotation)[0]
        return tuple(coerce(item, inner, where) for item in items)
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if annotation is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any], prefix: str, *, noun: str) -> Any:
    """cls(**values) with every value coerced to its field's type; nested dataclass fields are
    built from nested mappings. An unknown key raises "unknown NOUN 'PREFIXkey'" with the
    closest known key as a hint."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {noun} '{where}'{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping")
            kwargs[key] = build_dataclass(annotation, value, f"{where}.", noun=noun)
        else:
            kwargs[key] = coerce(value, annotation, where)
    return cls(**kwargs)
