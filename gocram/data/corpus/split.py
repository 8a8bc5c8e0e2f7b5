"""Train/val split by Go package: files of one package never land on both sides."""

from __future__ import annotations

import hashlib

from gocram.data.corpus.docs import Doc


def unit_hash(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a split key."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_package(docs: list[Doc], val_frac: float, salt: str) -> tuple[list[Doc], list[Doc]]:
    """(train, val): a package goes to val when its hash falls below val_frac."""
    train, val = [], []
    for doc in docs:
        (val if unit_hash(doc.package_key, salt) < val_frac else train).append(doc)
    return train, val
