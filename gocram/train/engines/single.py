"""The default engine: one process, one device (base.Engine unchanged)."""

from __future__ import annotations

from gocram.train.engines.base import Engine


class SingleEngine(Engine):
    pass
