"""String-keyed registries: name (and implementation) -> builder.

A registry entry is a *meaning* (what is computed: `layernorm`, `gelu`, `cross_entropy`, a data
layout, an engine) with one or more *implementations* (how: `torch`, `triton`, ...). Entries are
registered by a lazy `'package.module:attribute'` path, imported on first use, so importing a
registry never imports its builders: optional packages (Triton, flash-attn, DeepSpeed) become a
reason at plan time instead of an ImportError at start-up, and the registry modules stay leaves of
the import graph.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from gocram.core.errors import ConfigError

DEFAULT_IMPL = "torch"  # the plain-torch reference every other implementation is tested against


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """(name, impl) -> builder, by lazy 'module:attr' path or by an object given directly."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, dict[str, Callable[..., Any] | str]] = {}

    def add(self, name: str, target: Callable[..., Any] | str, *, impl: str = DEFAULT_IMPL) -> None:
        """Register `target` ('module:attr', imported on first use, or the builder itself)."""
        impls = self._entries.setdefault(name, {})
        if impl in impls:
            raise ValueError(f"{self.kind} {name!r} (impl {impl!r}) is registered twice")
        impls[impl] = target

    def register(self, name: str, *, impl: str = DEFAULT_IMPL):
        """Decorator form of `add`, for builders defined beside their registry."""
        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, builder, impl=impl)
            return builder

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def impls(self, name: str) -> list[str]:
        return sorted(self._entries.get(name, {}))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def check(self, name: str, impl: str = DEFAULT_IMPL) -> str | None:
        """Why (name, impl) cannot be built, without importing it; None if it is registered."""
        if name not in self._entries:
            return f"unknown {self.kind} {name!r}{suggest(name, self.names())}; choose one of {self.names()}"
        if impl not in self._entries[name]:
            return (f"{self.kind} {name!r} has no {impl!r} implementation; "
                    f"choose one of {self.impls(name)}")
        return None

    def get(self, name: str, impl: str = DEFAULT_IMPL) -> Callable[..., Any]:
        reason = self.check(name, impl)
        if reason:
            raise ConfigError(reason)
        target = self._entries[name][impl]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            self._entries[name][impl] = target
        return target

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The default implementation of `name`, built with the given arguments."""
        return self.get(name)(*args, **kwargs)
