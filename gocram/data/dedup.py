"""Exact and near-duplicate detection, as BigCode's near-dedup for The Stack / StarCoder.

Exact: a hash of the content with trailing whitespace stripped from every line.
Near: MinHash signatures (datasketch) of the set of n-grams of identifier/number tokens,
banded into an LSH index tuned to a Jaccard threshold; candidate pairs whose estimated Jaccard
reaches the threshold are joined into clusters (union-find) and one file per cluster is kept:
the first in input order, so a rerun keeps the same files.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

SCHEME = "affine32"  # datasketch's 32-bit hashing: signatures are (num_perm,) uint32
NON_ALNUM = re.compile(r"[^A-Za-z_0-9]+")


def normalized_hash(text: str) -> str:
    """Exact-dedup key: content with trailing whitespace stripped from every line."""
    norm = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def shingles(text: str, n: int) -> set[bytes]:
    """n consecutive identifier/number tokens, joined: BigCode's near-dedup shingles."""
    tokens = [t for t in NON_ALNUM.split(text) if t]
    if len(tokens) < n:
        return {" ".join(tokens).encode()} if tokens else set()
    return {" ".join(tokens[i:i + n]).encode() for i in range(len(tokens) - n + 1)}


class Signer:
    """MinHash signatures with one fixed set of permutations (built once, reused per file)."""

    def __init__(self, num_perm: int, ngram: int, seed: int = 1):
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self._template = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)

    def signature(self, text: str) -> np.ndarray:
        """(num_perm,) uint32: minimum hash per permutation."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=self._template.scheme,
                    permutations=self._template.permutations)
        m.update_batch(shingles(text, self.ngram))
        return m.hashvalues.astype(np.uint32, copy=False)  # affine32: already 32-bit


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller index is the root: the first file of a cluster is kept
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_clusters(signatures: np.ndarray, *, threshold: float, seed: int = 1) -> np.ndarray:
    """Cluster root per row of (N, num_perm) signatures; row i is kept iff root[i] == i."""
    n, num_perm = signatures.shape
    roots = np.arange(n)
    if n < 2:
        return roots
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = [LeanMinHash(seed=seed, hashvalues=signatures[i], scheme=SCHEME) for i in range(n)]
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m, check_duplication=False)
    uf = UnionFind(n)
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and np.mean(signatures[i] == signatures[j]) >= threshold:
                uf.union(i, j)
    return np.array([uf.find(i) for i in range(n)])
