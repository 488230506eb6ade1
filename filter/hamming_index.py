"""Multi-index hashing: of the rows added so far, which can be within T bits of a query.

Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing" (CVPR 2012).
Take m disjoint chunks of a signature's bits. Two signatures that differ in at most T bits differ
in at most ``T // m`` bits on some chunk (pigeonhole: otherwise the chunks alone would differ in
at least ``m * (T // m + 1) > T`` bits). So file every added row under each chunk's value, and
look a query's chunk up under itself and under every flip of at most ``T // m`` of its bits:
every row within T bits turns up, along with some that are not, which the caller measures.

With m = T // 2 + 1 chunks the radius is at most 1: w + 1 lookups per chunk of w bits. The
filter's 5 pHashes of 64 bits within a mean of 6 bits (T = 30) give 16 chunks; of 50,000
uniformly random rows filed under 19-bit chunk values, a lookup meets ~0.1 of them, so a query
costs 16 x 20 lookups and ~30 candidates instead of 50,000 comparisons.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations

import numpy as np

MIN_CHUNK_BITS = 8  # narrower chunks prune too little: ``chunk_plan`` says compare every pair
MAX_TABLE_BITS = 22  # a chunk's buckets: a table of 2^bits int32 row numbers (16 MB at most)


def chunk_plan(n_bits: int, max_bits: int) -> tuple[int, int] | None:
    """(chunks m, radius r) that find every pair within ``max_bits`` of ``n_bits``; None: all pairs.

    >>> chunk_plan(320, 30)  # 5 pHashes within a mean of 6 bits: 16 chunks, radius 1
    (16, 1)
    """
    chunks = max_bits // 2 + 1
    if n_bits // chunks < MIN_CHUNK_BITS:
        return None
    return chunks, max_bits // chunks


def chunk_keys(signatures: np.ndarray, chunks: int, width: int) -> np.ndarray:
    """(n, chunks) int64: the value of each chunk of each (n, k) uint64 signature.

    Chunk c holds bits c, c + chunks, c + 2 chunks, ..., the first ``width`` of them: strided, so
    that one chunk draws on every frame and on distant DCT frequencies (a pHash's neighbouring
    bits are correlated). Bits left out of every chunk keep the search complete, only less sharp.
    """
    weights = np.int64(1) << np.arange(width, dtype=np.int64)  # w
    keys = np.empty((len(signatures), chunks), dtype=np.int64)  # n x m
    for a in range(0, len(signatures), 4096):  # bounded scratch: 4096 x 64k bytes
        part = np.ascontiguousarray(signatures[a : a + 4096])
        bits = np.unpackbits(part.view(np.uint8), axis=1)  # rows x 64k
        for c in range(chunks):
            keys[a : a + 4096, c] = bits[:, c::chunks][:, :width].astype(np.int64) @ weights
    return keys


def flip_masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit mask with at most ``radius`` bits set, 0 first."""
    masks = [sum(1 << b for b in bits) for r in range(radius + 1) for bits in combinations(range(width), r)]
    return np.array(masks, dtype=np.int64)


class HammingIndex:
    """Rows of ``signatures`` added so far, to look up those within ``max_bits`` of a query.

    Each chunk's buckets are chains: ``heads[c][key]`` is the last row added with that key and
    ``next[row, c]`` the one before it (-1 ends a chain), so adding rows never copies the index.
    """

    def __init__(self, signatures: np.ndarray, max_bits: int) -> None:
        n, k = signatures.shape
        self.plan = chunk_plan(64 * k, max_bits)
        self.added: list[np.ndarray] = []
        chunks, self.radius = self.plan or (0, 0)
        # ~8 buckets per row: a lookup meets ~1/8 of a row that is no match (at most 2^22 buckets)
        width = min(64 * k // max(chunks, 1), max(n.bit_length() + 3, 10), MAX_TABLE_BITS)
        self.keys = chunk_keys(signatures, chunks, width)  # n x m
        self.masks = flip_masks(width, self.radius)
        self.heads = np.full((chunks, 1 << width if chunks else 0), -1, dtype=np.int32)  # m x 2^w
        self.next = np.full((n, chunks), -1, dtype=np.int32)  # n x m

    def add(self, rows: np.ndarray) -> None:
        """File ``rows`` (ascending, none added before) under each of their chunk values."""
        if not len(rows):
            return
        self.added.append(rows)
        for c, head in enumerate(self.heads):
            order = np.argsort(self.keys[rows, c], kind="stable")  # equal keys stay in row order
            r, key = rows[order], self.keys[rows[order], c]
            first = np.r_[True, key[1:] != key[:-1]]  # first of its key in this batch
            self.next[r, c] = np.where(first, head[key], np.roll(r, 1))
            last = np.r_[first[1:], True]  # last of its key in this batch
            head[key[last]] = r[last]

    def candidates(self, query: np.ndarray, cap: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(added row, query row) pairs, among them every pair within ``max_bits``, each pair once
        (from the first chunk that brings it up). A slice holds one step along the chains of every
        lookup of every query, or ``cap`` pairs of the all-pairs fallback."""
        if self.plan is None:
            yield from all_pairs(np.concatenate([np.zeros(0, dtype=np.int64), *self.added]), query, cap)
            return
        for c, head in enumerate(self.heads):
            at = head[(self.keys[query, c][:, None] ^ self.masks[None, :]).ravel()]  # queries x masks
            q = np.repeat(query, len(self.masks))
            while len(at := at[(live := at >= 0)]):  # one step along every chain at once
                q = q[live]
                seen = np.bitwise_count(self.keys[at, :c] ^ self.keys[q, :c]) <= self.radius  # pairs x c
                new = ~seen.any(axis=1)
                yield at[new], q[new]
                at = self.next[at, c]


def all_pairs(rows: np.ndarray, query: np.ndarray, cap: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (row, query row) pair, about ``cap`` at a time: the fallback of ``chunk_plan``."""
    step = max(1, cap // max(len(rows), 1))
    for a in range(0, len(query), step):
        q = query[a : a + step]
        yield np.tile(rows, len(q)), np.repeat(q, len(rows))
