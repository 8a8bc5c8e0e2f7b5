"""Exact and near-duplicate detection, as BigCode's near-dedup for The Stack / StarCoder.

Exact: a hash of the content with trailing whitespace stripped from every line.
Near: MinHash signatures (datasketch's permutations) of the set of n-grams of identifier/number
tokens (each n-gram hashed to 32 bits in numpy, `shingle_hashes`; the plain-Python definition is
`shingle_hashes_reference`),
banded as datasketch's MinHashLSH would band them for the Jaccard threshold; files sharing a band
bucket whose estimated Jaccard reaches the threshold are joined into clusters (union-find) and
one file per cluster is kept: the first in input order, so a rerun keeps the same files.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np
from datasketch import MinHash, MinHashLSH

SCHEME = "affine32"  # datasketch's 32-bit hashing: signatures are (num_perm,) uint32
NON_ALNUM = re.compile(r"[^A-Za-z_0-9]+")


def normalized_hash(text: str) -> str:
    """Exact-dedup key: content with trailing whitespace stripped from every line."""
    norm = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


_MASK64 = (1 << 64) - 1
_MULT = 0x9E3779B97F4A7C15  # odd: combining token hashes into a shingle hash


def tokens_of(text: str) -> list[str]:
    return [t for t in NON_ALNUM.split(text) if t]


def shingle_hashes_reference(text: str, n: int) -> set[int]:
    """The plain-Python definition: a 32-bit hash per distinct n-gram of identifier/number tokens
    (BigCode's near-dedup shingles); fewer than n tokens make one shingle of them all."""
    tokens = tokens_of(text)
    if not tokens:
        return set()
    token_hashes = [zlib.crc32(t.encode()) for t in tokens]
    width = min(n, len(token_hashes))
    out = set()
    for i in range(len(token_hashes) - width + 1):
        h = 0
        for k in range(width):
            h = (h + token_hashes[i + k] * pow(_MULT, k, 1 << 64)) & _MASK64
        out.add((h ^ (h >> 32)) & 0xFFFFFFFF)
    return out


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """shingle_hashes_reference, vectorised: sorted distinct uint32 hashes."""
    tokens = tokens_of(text)
    if not tokens:
        return np.zeros(0, dtype=np.uint32)
    th = np.fromiter(map(zlib.crc32, map(str.encode, tokens)), dtype=np.uint64, count=len(tokens))
    width = min(n, len(th))
    count = len(th) - width + 1
    h = np.zeros(count, dtype=np.uint64)
    for k in range(width):  # uint64 arithmetic wraps mod 2^64, as the reference masks
        h += th[k:k + count] * np.uint64(pow(_MULT, k, 1 << 64))
    return np.unique(((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32))


class Signer:
    """MinHash signatures with one fixed set of permutations (built once, reused per file)."""

    def __init__(self, num_perm: int, ngram: int, seed: int = 1):
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self._template = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)

    def minhash(self) -> MinHash:
        # The shingles arrive already hashed to 32 bits: datasketch only permutes them.
        return MinHash(num_perm=self.num_perm, seed=self.seed, scheme=self._template.scheme,
                       permutations=self._template.permutations, hashfunc=int)

    def signature(self, text: str) -> np.ndarray:
        """(num_perm,) uint32: minimum permuted shingle hash per permutation."""
        m = self.minhash()
        m.update_batch(shingle_hashes(text, self.ngram))
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


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for this threshold."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def similarity(signatures: np.ndarray, i: int, j: int) -> float:
    """Estimated Jaccard similarity: the share of permutations whose minimum agrees."""
    return float(np.count_nonzero(signatures[i] == signatures[j])) / signatures.shape[1]


def near_duplicate_clusters(signatures: np.ndarray, *, threshold: float) -> np.ndarray:
    """Cluster root per row of (N, num_perm) signatures; row i is kept iff root[i] == i.

    LSH banding: rows whose signatures agree on a whole band share a bucket. Within a bucket each
    row is compared with the bucket's representatives so far and joins the first one it is
    similar to (estimated Jaccard >= threshold), else becomes a representative itself, so a
    cluster of k near-copies costs O(k) comparisons, not O(k^2).
    """
    n, num_perm = signatures.shape
    uf = UnionFind(n)
    if n < 2:
        return np.arange(n)
    bands, rows = lsh_bands(threshold, num_perm)
    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows])  # (N, r)
        _, bucket = np.unique(block, axis=0, return_inverse=True)
        order = np.argsort(bucket.ravel(), kind="stable")  # rows by bucket, then by index
        cuts = np.flatnonzero(np.diff(bucket.ravel()[order])) + 1
        for members in np.split(order, cuts):
            if len(members) < 2:
                continue
            reps: list[int] = []
            for m in members.tolist():
                for rep in reps:
                    if uf.find(rep) == uf.find(m) or similarity(signatures, rep, m) >= threshold:
                        uf.union(rep, m)
                        break
                else:
                    reps.append(m)
    return np.array([uf.find(i) for i in range(n)])


def near_duplicate_clusters_reference(signatures: np.ndarray, *, threshold: float) -> np.ndarray:
    """Every pair compared (O(N^2)): what the banded version approximates, for tests."""
    n = len(signatures)
    uf = UnionFind(n)
    for i in range(n):
        for j in range(i + 1, n):
            if similarity(signatures, i, j) >= threshold:
                uf.union(i, j)
    return np.array([uf.find(i) for i in range(n)])
